"""Stage 3b: the parallelism search (v1 Algorithm 1 with v2's ZeRO stages).

The answer is the smallest device count ``N`` at which some layout meets the
deadline, and the fastest layout at that ``N``. Equivalently, it is the minimum
of ``N`` over all layouts that fit in memory and meet the deadline, which is how
the production search finds it: it never visits device counts that do not
factorize, walks windows of ``N`` upward from Algorithm 1's ``N_ideal``, and
evaluates every layout of a window at once with the vectorized step model. The
plain Algorithm 1 (increment ``N`` by one) lives in the tests and must agree.

Layout rules (shared with the reference): ``EP = E`` for MoE models (v1), TP
divides the head count (so ``4 d^2 % TP == 0``) and is at most ``max_tp``, PP
divides the layer count, interleaving ``v`` divides the layers per stage,
microbatches of 1-8 sequences. The global batch is capped at the model's
critical batch: each data-parallel rank runs ``floor(B / (dp ep mb))``
whole microbatches (Epoch AI's distributed-training model caps it the same way),
so scale-out eventually stops paying.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import InfeasibleError, InputError
from .hardware import System
from .perf.constants import PerfConstants, default_constants
from .perf.layout import RECOMPUTE_MODES, Layout, LayoutGrid, TrainingOptions
from .perf.step import StepResult, evaluate
from .scaling import ModelSpec

MICROBATCHES = (1, 2, 4, 8)
MAX_INTERLEAVE = 8
UNEVEN_INTERLEAVES = (1, 2, 4)  # tried when a pinned PP does not divide the layers (Llama 3 ran 126 on 16)
ZERO_STAGES = (0, 1, 2, 3)
MAX_TP = 64
PINNABLE = ("devices", "tp", "pp", "dp", "ep", "zero", "microbatch", "interleave", "recompute", "global_batch")


@dataclass(frozen=True)
class SearchResult:
    model: ModelSpec
    system: System
    options: TrainingOptions
    layout: Layout
    step: StepResult                 # scalar fields (0-d arrays) for the chosen layout
    duration_s: float
    mfu: float
    deadline_s: float
    median_layout: Layout | None
    median_duration_s: float | None
    median_mfu: float | None
    layouts_evaluated: int
    objective: str = "fastest"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def devices(self) -> int:
        return self.layout.devices

    @property
    def meets_deadline(self) -> bool:
        return self.duration_s <= self.deadline_s * (1 + 1e-12)


# ---- candidate layouts -----------------------------------------------------------
def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _check_pinned(pinned: dict, model: ModelSpec) -> dict:
    out = {}
    for key, val in pinned.items():
        if val is None:
            continue
        if key not in PINNABLE:
            raise InputError(key, f"cannot be pinned (pinnable: {', '.join(PINNABLE)})")
        if key == "recompute":
            if val not in RECOMPUTE_MODES:
                raise InputError("recompute", f"must be one of {', '.join(RECOMPUTE_MODES)}, got {val!r}")
            out[key] = val
            continue
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) and not (
                isinstance(val, float) and math.isfinite(val) and val.is_integer()):
            raise InputError(key, f"must be a whole number, got {val!r}")
        val = int(val)
        lo, hi = (0, 3) if key == "zero" else (1, 10**9)
        if not lo <= val <= hi:
            raise InputError(key, f"must be in [{lo}, {hi}], got {val}")
        out[key] = val
    if "tp" in out and model.n_heads % out["tp"]:
        raise InputError("tp", f"must divide n_heads ({model.n_heads}), got {out['tp']}")
    if "pp" in out and out["pp"] > model.n_layers:
        raise InputError("pp", f"must be <= n_layers ({model.n_layers}), got {out['pp']}")
    if "ep" in out and (out["ep"] > model.n_experts or model.n_experts % out["ep"]):
        raise InputError("ep", f"must divide n_experts ({model.n_experts}), got {out['ep']}")
    if "interleave" in out and "pp" in out and out["interleave"] > 1 and out["pp"] == 1:
        raise InputError("interleave", "needs pp > 1")
    return out


def interleave_options(n_layers: int, pp: int) -> list[int]:
    """Virtual stages per device: divisors (up to 8) of the layers per stage; a few for uneven stages."""
    if pp == 1:
        return [1]
    per, rem = divmod(n_layers, pp)
    if rem:
        return list(UNEVEN_INTERLEAVES)
    return [v for v in range(1, MAX_INTERLEAVE + 1) if per % v == 0]


def inner_combos(model: ModelSpec, pinned: dict) -> dict[str, np.ndarray]:
    """Every (ep, tp, pp, v, mb, zero, rc) the rules allow, as arrays (dp comes later)."""
    ep = [pinned["ep"]] if "ep" in pinned else [model.n_experts if model.is_moe else 1]
    tps = [pinned["tp"]] if "tp" in pinned else [d for d in _divisors(model.n_heads) if d <= MAX_TP]
    pps = [pinned["pp"]] if "pp" in pinned else _divisors(model.n_layers)
    mbs = [pinned["microbatch"]] if "microbatch" in pinned else list(MICROBATCHES)
    zs = [pinned["zero"]] if "zero" in pinned else list(ZERO_STAGES)
    rcs = [RECOMPUTE_MODES.index(pinned["recompute"])] if "recompute" in pinned else [0, 1, 2]
    rows = []
    for e, t, p in itertools.product(ep, tps, pps):
        vs = [pinned["interleave"]] if "interleave" in pinned else interleave_options(model.n_layers, p)
        for v in vs:
            for mb, z, rc in itertools.product(mbs, zs, rcs):
                rows.append((e, t, p, v, mb, z, rc))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 7)
    return dict(zip(("ep", "tp", "pp", "v", "mb", "zero", "rc"), arr.T))


def grid_for_devices(combos: dict[str, np.ndarray], n_lo: int, n_hi: int, batch: int, pinned: dict) -> LayoutGrid:
    """All layouts with ``n_lo <= devices < n_hi`` (every dp that lands in the window)."""
    base = combos["ep"] * combos["tp"] * combos["pp"]
    dp_max = batch // (combos["ep"] * combos["mb"])  # at least one microbatch per rank
    if "dp" in pinned:
        dp_lo = np.full_like(base, pinned["dp"])
        dp_hi = np.where((dp_lo * base >= n_lo) & (dp_lo * base < n_hi), dp_lo, 0)
    else:
        dp_lo = np.maximum(1, -(-n_lo // base))
        dp_hi = np.minimum(dp_max, -(-n_hi // base) - 1)
    if "global_batch" not in pinned:
        dp_hi = np.minimum(dp_hi, dp_max)
    counts = np.maximum(dp_hi - dp_lo + 1, 0)
    total = int(counts.sum())
    idx = np.repeat(np.arange(len(base)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    dp = dp_lo[idx] + offsets
    pick = {k: v[idx] for k, v in combos.items()}
    per_rank = dp * pick["ep"] * pick["mb"]
    gbatch = np.full(total, batch, dtype=np.int64) if "global_batch" in pinned else (batch // per_rank) * per_rank
    return LayoutGrid(tp=pick["tp"], pp=pick["pp"], dp=dp, ep=pick["ep"], zero=pick["zero"], mb=pick["mb"],
                      v=pick["v"], rc=pick["rc"], batch=gbatch)


def ideal_devices(model: ModelSpec, system: System, deadline_s: float) -> int:
    """Algorithm 1's start: ``N_ideal = C / (T * peak)``."""
    return max(1, int(model.train_flops / (deadline_s * system.device.peak_flops())))


def durations(model: ModelSpec, res: StepResult) -> np.ndarray:
    steps = model.train_tokens / (res.global_batch_sequences * model.seq_len)
    return steps * res.step_time_s


def model_flops_utilization(model: ModelSpec, system: System, devices, duration_s):
    return model.model_flops / (np.asarray(duration_s) * devices * system.device.peak_flops())


# ---- the search ----------------------------------------------------------------------
def search(model: ModelSpec, system: System, *, deadline_days: float = 90.0, options: TrainingOptions | None = None,
           pinned: dict | None = None, objective: str = "fastest",
           carbon_score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
           consts: PerfConstants | None = None) -> SearchResult:
    """Minimal device count meeting the deadline and its fastest layout (or the least-carbon one).

    With ``devices`` pinned, the deadline is not a constraint: the fastest layout at
    that count is returned and ``meets_deadline`` says whether it made it.
    ``carbon_score(devices, duration_s, mfu)`` ranks layouts for ``objective="carbon"``.
    """
    if not (isinstance(deadline_days, (int, float)) and math.isfinite(deadline_days) and 0 < deadline_days <= 36500):
        raise InputError("deadline_days", f"must be in (0, 36500], got {deadline_days!r}")
    if objective not in ("fastest", "carbon"):
        raise InputError("objective", f"must be 'fastest' or 'carbon', got {objective!r}")
    o = options or TrainingOptions()
    c = consts or default_constants()
    pins = _check_pinned(pinned or {}, model)
    batch = pins.get("global_batch", model.batch_sequences)
    deadline_s = deadline_days * 86400.0
    combos = inner_combos(model, pins)
    if len(combos["tp"]) == 0:
        raise InfeasibleError("no layout satisfies the divisibility rules for this model", "layout")

    if "devices" in pins:
        n_lo, n_stop = pins["devices"], pins["devices"] + 1
    else:
        n_lo = ideal_devices(model, system, deadline_s)
        n_stop = int((combos["ep"] * combos["tp"] * combos["pp"] * np.maximum(1, batch // (combos["ep"] * combos["mb"]))).max()) + 1
        if "dp" in pins:
            n_stop = int((combos["ep"] * combos["tp"] * combos["pp"]).max() * pins["dp"]) + 1
    evaluated, best_seen, any_fit = 0, (math.inf, 0), False
    while n_lo < n_stop:
        n_hi = min(n_stop, max(int(n_lo * 1.5), n_lo + 64))
        grid = grid_for_devices(combos, n_lo, n_hi, batch, pins)
        n_lo = n_hi
        if len(grid) == 0:
            continue
        grid = grid.take(grid.batch >= grid.dp * grid.ep * grid.mb)
        res = evaluate(model, system, grid, o, c)
        evaluated += len(grid)
        dur = durations(model, res)
        ok = res.fits
        any_fit |= bool(ok.any())
        if ok.any():
            i = int(np.argmin(np.where(ok, dur, np.inf)))
            if dur[i] < best_seen[0]:
                best_seen = (float(dur[i]), int(grid.devices[i]))
        good = ok if "devices" in pins else ok & (dur <= deadline_s)
        if not good.any():
            continue
        devs = grid.devices
        n_star = int(devs[good].min())
        if objective == "carbon" and carbon_score is not None and "devices" not in pins:
            return _least_carbon(model, system, o, c, combos, batch, pins, n_star, deadline_s, carbon_score, evaluated)
        at = np.flatnonzero(good & (devs == n_star))
        pool = np.flatnonzero(ok & (devs == n_star))  # every layout that fits: the median is over these
        return _result(model, system, o, grid, res, dur, at, deadline_s, evaluated, objective, pool=pool)
    if evaluated == 0 and "devices" in pins:
        fixed = ", ".join(f"{k}={pins[k]}" for k in ("tp", "pp", "dp", "ep", "microbatch") if k in pins)
        raise InfeasibleError(
            f"no allowed layout has exactly {pins['devices']} devices (devices = TP x PP x DP x EP"
            f"{'; pinned ' + fixed if fixed else ''}; at most {batch} sequences per step)", "layout")
    if evaluated == 0:
        raise InfeasibleError(
            f"no device count meets the {deadline_days:g}-day deadline: even at peak throughput it needs "
            f"{ideal_devices(model, system, deadline_s):,} devices, more than the largest allowed layout "
            f"({n_stop - 1:,} devices; the critical batch of {batch} sequences caps data parallelism)",
            "deadline", {"ideal_devices": ideal_devices(model, system, deadline_s), "max_devices": n_stop - 1})
    if not any_fit:
        raise InfeasibleError(
            f"{model.name} does not fit in {system.device.hbm_gb:g} GB per device under any allowed layout "
            f"(up to TP={MAX_TP}, PP={model.n_layers}, ZeRO-3, full recompute)", "memory")
    if "devices" in pins:
        raise InfeasibleError(f"no allowed layout fits at {pins['devices']} devices", "memory")
    best_days = best_seen[0] / 86400
    raise InfeasibleError(
        f"no device count meets the {deadline_days:g}-day deadline: the fastest layout found takes "
        f"{best_days:.1f} days on {best_seen[1]} devices (the critical batch of {batch} sequences caps "
        "data parallelism)", "deadline", {"best_duration_days": best_days, "best_devices": best_seen[1]})


def _result(model, system, o, grid, res, dur, at, deadline_s, evaluated, objective, score=None,
            pool=None) -> SearchResult:
    key = dur[at] if score is None else score[at]
    i = int(at[np.argmin(key)])
    pool = at if pool is None else pool
    order = pool[np.argsort(dur[pool], kind="stable")]
    j = int(order[(len(order) - 1) // 2])
    devs = grid.devices
    return SearchResult(
        model=model, system=system, options=o,
        layout=grid.layout(i), step=res.take(i), duration_s=float(dur[i]),
        mfu=float(model_flops_utilization(model, system, devs[i], dur[i])), deadline_s=deadline_s,
        median_layout=grid.layout(j), median_duration_s=float(dur[j]),
        median_mfu=float(model_flops_utilization(model, system, devs[j], dur[j])),
        layouts_evaluated=evaluated, objective=objective,
    )


def _least_carbon(model, system, o, c, combos, batch, pins, n_star, deadline_s, carbon_score, evaluated):
    """Least-carbon layout meeting the deadline among device counts ``N* .. 2 N*``."""
    grid = grid_for_devices(combos, n_star, 2 * n_star + 1, batch, pins)
    grid = grid.take(grid.batch >= grid.dp * grid.ep * grid.mb)
    res = evaluate(model, system, grid, o, c)
    dur = durations(model, res)
    good = res.fits & (dur <= deadline_s)
    devs = grid.devices
    mfu = model_flops_utilization(model, system, devs, dur)
    score = np.where(good, carbon_score(devs, dur, mfu), np.inf)
    at = np.flatnonzero(good)
    return _result(model, system, o, grid, res, dur, at, deadline_s, evaluated + len(grid), "carbon", score)
