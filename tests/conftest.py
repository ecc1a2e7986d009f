"""Hypothesis profiles, and fixtures more than one test file shares (plain helpers: helpers.py).

``.ci/run`` selects the ``ci`` profile (HYPOTHESIS_PROFILE=ci): the same examples on every CI run,
so a submission's result does not depend on the draw; the marked slow fuzz run (``pytest -m slow``)
and local runs keep drawing new examples."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


@pytest.fixture(scope="session")
def validation_report():
    """``validate()`` over the shipped runs (~4 s), once per test process: the validation tests and
    the report-readability tests read it (none changes it)."""
    from carbonscaling.validation.harness import validate

    return validate()
