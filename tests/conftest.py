"""Hypothesis profiles. ``.ci/run`` selects ``ci`` (HYPOTHESIS_PROFILE=ci): the same examples on
every CI run, so a submission's result does not depend on the draw; the marked slow fuzz run
(``pytest -m slow``) and local runs keep drawing new examples."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
