"""Reproduce the papers' experiments from declarative scenarios (docs/experiments.md).

* :mod:`.scenario` - the scenario schema, YAML loading/validation, the shipped scenarios;
* :mod:`.runner` - points, deduplicated searches in a process pool, deadline policy;
* :mod:`.accounting` - carbon of each point (re-accounting shared searches);
* :mod:`.fit` - the power law ``loss = k CO^-alpha``;
* :mod:`.claims` - the papers' claims as checks with tolerances;
* :mod:`.figures`, :mod:`.report`, :mod:`.paper` - figures, report.md/.html, the pipeline.

Nothing here is imported by the CLI at start-up; pandas is not used, matplotlib only in
:mod:`.figures` (inside its functions).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"Scenario": ".scenario", "load_scenario": ".scenario", "shipped_scenarios": ".scenario",
            "run_scenarios": ".runner", "fit_power_law": ".fit", "PowerLawFit": ".fit", "run": ".paper",
            "evaluate_claims": ".claims"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
