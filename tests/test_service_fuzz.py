"""Fuzz the service's OpenAPI schema with schemathesis: no generated request may get a 5xx,
every answer has a documented status code and content type.

Bounded (``max_examples`` per operation, positive and negative generation) so that CI
stays fast; ``CARBONSCALING_FUZZ_EXAMPLES`` raises the bound for a longer run.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance  # noqa: E402

from carbonscaling.service import create_app  # noqa: E402

EXAMPLES = int(os.environ.get("CARBONSCALING_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
# A Pareto front is 2 x points estimates (seconds each): fewer examples, a longer timeout.
fronts = schema.include(path_regex="^/api/front")


@schema.exclude(path_regex="^/api/front").parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case):
    case.call_and_validate(checks=CHECKS)


@fronts.parametrize()
@settings(max_examples=max(3, EXAMPLES // 8), deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
def test_no_server_errors_fronts(case):
    case.call_and_validate(checks=CHECKS, timeout=300)
