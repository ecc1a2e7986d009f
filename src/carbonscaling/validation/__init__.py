"""Validation against published training runs (SPEC.md section 6; docs/validation.md).

* :mod:`.runs` - load ``data/published_runs.csv`` or a user CSV (:func:`load_runs`).
* :mod:`.ours` - our estimator as a predictor, layout pinned or searched.
* :mod:`.llmcarbon` - the LLMCarbon baseline ``llmc`` (SPEC 6.1).
* :mod:`.regression` - the ``reg`` baseline, leave-one-out (SPEC 6.2).
* :mod:`.accounting` - energy/carbon from device-hours in a run's own accounting.
* :mod:`.metrics` - MAPE, median APE, R^2 (log and linear), NaN-robust.
* :mod:`.harness` - :func:`evaluate` / :func:`validate` build a :class:`ValidationReport`.
* :mod:`.report`, :mod:`.figures` - comparison, carbon and calibration sections; files.
* :mod:`.calibration` - fitted constants, the Megatron throughput table, the refit.

Nothing here imports pandas or matplotlib at module level.
"""

from .harness import QUANTITIES, ValidationReport, default_predictors, evaluate, validate
from .llmcarbon import LLMCResult, llmc_predictor
from .llmcarbon import estimate as llmc_estimate
from .ours import ours_predictor
from .regression import LogLogFit, fit_loglog, reg_predictor
from .runs import REQUIRED_COLUMNS, PublishedRun, load_runs, runs_frame

__all__ = [
    "QUANTITIES", "REQUIRED_COLUMNS", "LLMCResult", "LogLogFit", "PublishedRun", "ValidationReport",
    "default_predictors", "evaluate", "fit_loglog", "llmc_estimate", "llmc_predictor", "load_runs",
    "ours_predictor", "reg_predictor", "runs_frame", "validate",
]
