"""Goodput of a real training run: interruptions, restarts, checkpoints and evaluation.

Expected wall clock = steady-state wall clock / goodput, with the first-order effective
training time ratio (ETTR) of Kokolis et al. 2024 (arXiv 2410.21680) and Young's optimal
checkpoint interval (Young 1974)::

    lambda  = interruptions_per_device_day x N / 24          (interruptions per hour)
    tau     = sqrt(2 stall_h / lambda)                        (checkpoint interval, h)
    ETTR    = 1 - lambda (restart_h + tau / 2) - stall_h / tau
    goodput = ETTR x (1 - evaluation_fraction)

Defaults and their sources: ``data/goodput.yaml`` (cited failure rate of the Llama 3 405B
run; restart and checkpoint stall are flagged assumptions). Nothing is fitted. The
functions take numpy arrays too (the search's carbon objective uses them per layout).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ._data import load_yaml
from .errors import InfeasibleError

MIN_GOODPUT = 0.05  # below this a synchronous job makes (almost) no progress: an answer, not a number


@lru_cache(maxsize=None)
def goodput_defaults() -> dict[str, float]:
    """``{name: value}`` of ``goodput.yaml``."""
    return {k: float(v["value"]) for k, v in load_yaml("goodput.yaml").items()}


def goodput_terms(n_devices, *, interruptions_per_device_day: float, restart_minutes: float,
                  checkpoint_minutes: float, evaluation_fraction: float) -> dict[str, Any]:
    """Goodput and where the lost wall clock goes, each as a share of expected wall clock.

    Returns ``goodput`` and the shares ``restart``, ``rework`` (work redone since the last
    checkpoint), ``checkpoint`` (save stalls) and ``evaluation``; they sum to ``1 - goodput``.
    Also ``mttf_h`` and ``checkpoint_interval_h``.
    """
    n = np.asarray(n_devices, dtype=float)
    lam = interruptions_per_device_day * n / 24.0
    stall = checkpoint_minutes / 60.0
    restart = restart_minutes / 60.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(lam > 0, np.sqrt(2.0 * stall / np.where(lam > 0, lam, 1.0)), np.inf)
        ckpt = np.where(stall > 0, stall / tau, 0.0)
        rework = np.where(np.isfinite(tau), lam * tau / 2.0, 0.0)
    lost_restart = lam * restart
    ettr = 1.0 - lost_restart - rework - ckpt
    good = ettr * (1.0 - evaluation_fraction)
    return {"goodput": good, "restart": lost_restart, "rework": rework, "checkpoint": ckpt,
            "evaluation": ettr * evaluation_fraction,
            "mttf_h": np.where(lam > 0, 1.0 / np.where(lam > 0, lam, 1.0), np.inf), "checkpoint_interval_h": tau}


def check_goodput(goodput: float, n_devices: int, mttf_h: float) -> None:
    """Raise :class:`InfeasibleError` when interruptions leave (almost) no progress."""
    if not goodput >= MIN_GOODPUT:
        raise InfeasibleError(
            f"on {n_devices:,} devices the job is interrupted every {mttf_h * 60:.1f} min on average; the "
            f"expected goodput {max(goodput, 0.0):.3f} is below {MIN_GOODPUT} (restart and checkpoint costs "
            "exceed the time between interruptions): fewer devices or a lower interruption rate", "goodput",
            {"goodput": float(goodput), "mttf_h": float(mttf_h)})


def expected_goodput(n_devices: int, **overrides: float) -> float:
    """Goodput of a synchronous job on ``n_devices`` with ``goodput.yaml``'s defaults (or overrides)."""
    d = goodput_defaults()
    kw = {k: float(overrides.get(k, d[k])) for k in
          ("interruptions_per_device_day", "restart_minutes", "checkpoint_minutes", "evaluation_fraction")}
    return float(goodput_terms(n_devices, **kw)["goodput"])
