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
import numbers
from dataclasses import dataclass, replace
from typing import Callable

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
        lo, hi = (0, 4) if key == "zero" else (1, 10**9)
        if not lo <= val <= hi:
            raise InputError(key, f"must be in [{lo}, {hi}], got {val}")
        out[key] = val
    if "tp" in out and model.n_heads % out["tp"]:
        raise InputError("tp", f"must divide n_heads ({model.n_heads}), got {out['tp']}")
    if "pp" in out and out["pp"] > model.n_layers:
        raise InputError("pp", f"must be <= n_layers ({model.n_layers}), got {out['pp']}")
    if "ep" in out and (out["ep"] > model.n_experts or model.n_experts % out["ep"]):
        raise InputError("ep", f"must divide n_experts ({model.n_experts}), got {out['ep']}")
    if "interleave" in out and out["interleave"] > 1:
        pp = out.get("pp")
        if pp == 1:
            raise InputError("interleave", "needs pp > 1")
        if out["interleave"] > model.n_layers // (pp or 2):
            raise InputError("interleave", f"must be <= layers per stage ({model.n_layers // (pp or 2)}), "
                                           f"got {out['interleave']}")
    return out


PIPELINE_SPLITS = ("uneven", "even")


def pipeline_options(n_layers: int, split: str = "uneven") -> list[int]:
    """Pipeline depths the search tries.

    ``even`` is v1 Algorithm 1's rule (PP divides the layers). ``uneven`` (default) adds,
    for every possible stage depth ``q``, the fewest stages that reach it,
    ``ceil(L / q)``, as Megatron-LM's uneven first/last stages and Llama 3's 126 layers on
    16 stages do; without it the layer count's divisors (409 is prime) make the answer jump.
    """
    even = _divisors(n_layers)
    if split == "even":
        return even
    return sorted(set(even) | {-(-n_layers // q) for q in range(1, n_layers + 1)})


def interleave_options(n_layers: int, pp: int) -> list[int]:
    """Virtual stages per device: divisors (up to 8) of the layers per stage; a few for uneven stages."""
    if pp == 1:
        return [1]
    per, rem = divmod(n_layers, pp)
    if rem:
        return list(UNEVEN_INTERLEAVES)
    return [v for v in range(1, MAX_INTERLEAVE + 1) if per % v == 0]


def inner_combos(model: ModelSpec, pinned: dict, options: TrainingOptions | None = None,
                 pipeline_split: str = "uneven") -> dict[str, np.ndarray]:
    """Every (ep, tp, pp, v, mb, zero, rc) the rules allow, as arrays (dp comes later).

    ZeRO stage 4 (hierarchical ZeRO-3) is offered only with flexible sharding.
    """
    o = options or TrainingOptions()
    ep = [pinned["ep"]] if "ep" in pinned else [model.n_experts if model.is_moe else 1]
    tps = [pinned["tp"]] if "tp" in pinned else [d for d in _divisors(model.n_heads) if d <= MAX_TP]
    pps = [pinned["pp"]] if "pp" in pinned else pipeline_options(model.n_layers, pipeline_split)
    mbs = [pinned["microbatch"]] if "microbatch" in pinned else list(MICROBATCHES)
    zs = [pinned["zero"]] if "zero" in pinned else list(ZERO_STAGES) + ([4] if o.flexible_sharding else [])
    # With FlashAttention, selective recompute is what the kernel already does: same time and memory as none.
    rcs = ([RECOMPUTE_MODES.index(pinned["recompute"])] if "recompute" in pinned
           else [0, 2] if o.flash_attention else [0, 1, 2])
    rows = []
    for e, t, p in itertools.product(ep, tps, pps):
        vs = [pinned["interleave"]] if "interleave" in pinned else interleave_options(model.n_layers, p)
        vs = [v for v in vs if v == 1 or p > 1]
        for v in vs:
            for mb, z, rc in itertools.product(mbs, zs, rcs):
                rows.append((e, t, p, v, mb, z, rc))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 7)
    return dict(zip(("ep", "tp", "pp", "v", "mb", "zero", "rc"), arr.T))


def grid_for_devices(combos: dict[str, np.ndarray], n_lo: int, n_hi: int, batch: int, pinned: dict,
                     with_index: bool = False):
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
    grid = _combo_grid(pick, dp, batch, pinned)
    return (grid, idx) if with_index else grid


def ideal_devices(model: ModelSpec, system: System, deadline_s: float, options: TrainingOptions | None = None) -> int:
    """Algorithm 1's start: ``N_ideal = C / (T * peak)``, at the peak of the precision GEMMs run in."""
    precision = (options or TrainingOptions()).gemm_precision
    return max(1, int(model.train_flops / (deadline_s * system.device.peak_flops(precision))))


def durations(model: ModelSpec, res: StepResult) -> np.ndarray:
    steps = model.train_tokens / (res.global_batch_sequences * model.seq_len)
    return steps * res.step_time_s


def model_flops_utilization(model: ModelSpec, system: System, devices, duration_s, precision: str = "bf16"):
    """MFU against the dense peak of the precision the GEMMs run in (so it stays <= 1 with FP8)."""
    return model.model_flops / (np.asarray(duration_s) * devices * system.device.peak_flops(precision))


# ---- the search ----------------------------------------------------------------------
def _combo_grid(combos: dict[str, np.ndarray], dp: np.ndarray, batch: int, pinned: dict) -> LayoutGrid:
    """Layouts from inner combinations and DPs; the global batch is the pinned one, or the
    critical batch rounded down to whole microbatches per data-parallel rank."""
    per_rank = dp * combos["ep"] * combos["mb"]
    gb = np.full_like(dp, batch) if "global_batch" in pinned else (batch // per_rank) * per_rank
    return LayoutGrid(tp=combos["tp"], pp=combos["pp"], dp=dp, ep=combos["ep"], zero=combos["zero"],
                      mb=combos["mb"], v=combos["v"], rc=combos["rc"], batch=gb)


def _prune(model, system, o, c, combos, batch, pins, deadline_s):
    """Drop inner combinations that cannot work at any DP, and bound the rest.

    Memory only falls as DP grows (ZeRO shards shrink, fewer microbatches are in flight),
    so a combination that does not fit at its largest DP never fits. Stage times do not
    depend on DP except through pipeline sends, which are cheapest at DP = 1; a step takes
    at least ``m t_max + (S - t_max) / v`` and there are at least ``tokens / B`` steps, so
    ``tokens / B x (t_max + (S - t_max) / v)`` bounds every DP's duration from below.
    Returns the kept combinations, their ``(t_max, S)`` and the smallest bound of all.
    """
    dp_max = batch // (combos["ep"] * combos["mb"])
    if "dp" in pins:
        dp_max = np.where(dp_max >= pins["dp"], pins["dp"], 0)
    valid = dp_max >= 1
    combos = {k: v[valid] for k, v in combos.items()}
    dp_max = dp_max[valid]
    if len(dp_max) == 0:
        return combos, None, None, math.inf, False
    fits = evaluate(model, system, _combo_grid(combos, dp_max, batch, pins), o, c).fits
    dp_lo = np.full_like(dp_max, pins.get("dp", 1))
    probe = evaluate(model, system, _combo_grid(combos, dp_lo, batch, pins), o, c)
    t_max, t_sum = probe.stage_max_s, probe.stage_sum_s
    min_steps = model.train_tokens / (batch * model.seq_len)
    bound = min_steps * (t_max + (t_sum - t_max) / combos["v"])
    best_bound = float(bound[fits].min()) if fits.any() else math.inf
    keep = fits if "devices" in pins else fits & (bound <= deadline_s)
    return ({k: v[keep] for k, v in combos.items()}, t_max[keep], t_sum[keep], best_bound, bool(fits.any()))


def search(model: ModelSpec, system: System, *, deadline_days: float = 90.0, options: TrainingOptions | None = None,
           pinned: dict | None = None, objective: str = "fastest", pipeline_split: str = "uneven",
           carbon_score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
           consts: PerfConstants | None = None) -> SearchResult:
    """Minimal device count meeting the deadline and its fastest layout (or the least-carbon one).

    With ``devices`` pinned, the deadline is not a constraint: the fastest layout at
    that count is returned and ``meets_deadline`` says whether it made it.
    ``carbon_score(devices, duration_s, mfu, step=StepResult)`` ranks layouts for ``objective="carbon"``.
    """
    if not (isinstance(deadline_days, numbers.Real) and not isinstance(deadline_days, bool)
            and math.isfinite(deadline_days) and 0 < deadline_days <= 36500):
        raise InputError("deadline_days", f"must be in (0, 36500], got {deadline_days!r}")
    if objective not in ("fastest", "carbon"):
        raise InputError("objective", f"must be 'fastest' or 'carbon', got {objective!r}")
    if objective == "carbon" and carbon_score is None:
        raise InputError("objective", "'carbon' needs a carbon_score (estimate() provides one)")
    if pipeline_split not in PIPELINE_SPLITS:
        raise InputError("pipeline_split", f"must be one of {', '.join(PIPELINE_SPLITS)}, got {pipeline_split!r}")
    o = options or TrainingOptions()
    c = consts or default_constants()
    pins = _check_pinned(pinned or {}, model)
    batch = pins.get("global_batch", model.batch_sequences)
    deadline_s = float(deadline_days) * 86400.0
    if pins.get("zero") == 4 and not o.flexible_sharding:
        raise InputError("zero", "stage 4 (hierarchical ZeRO-3) needs flexible sharding")
    per_rank = pins.get("dp", 1) * pins.get("ep", 1) * pins.get("microbatch", 1)
    if per_rank > batch:
        raise InputError("global_batch" if "global_batch" in pins else "dp",
                         f"dp x ep x microbatch ({per_rank}) exceeds the global batch of {batch} sequences")
    all_combos = inner_combos(model, pins, o, pipeline_split)
    combos, t_max, t_sum, best_bound, any_fit = _prune(model, system, o, c, all_combos, batch, pins, deadline_s)
    if not any_fit:
        where = f" at {pins['devices']} devices" if "devices" in pins else ""
        raise InfeasibleError(
            f"{model.name} does not fit in {system.device.hbm_gb:g} GB per device under any allowed layout{where} "
            f"(up to TP={MAX_TP}, PP={model.n_layers}, ZeRO-3, full recompute)", "memory")
    if len(combos["tp"]) == 0:
        raise _deadline_error(deadline_days, batch, best_bound / 86400, None, bound_only=True)

    base = combos["ep"] * combos["tp"] * combos["pp"]
    if "devices" in pins:
        n_lo, n_stop = pins["devices"], pins["devices"] + 1
    else:
        n_lo = ideal_devices(model, system, deadline_s, o)
        dp_cap = pins["dp"] if "dp" in pins else np.maximum(1, batch // (combos["ep"] * combos["mb"]))
        n_stop = int((base * dp_cap).max()) + 1
    evaluated, best_seen, any_layout = 0, (math.inf, 0), False
    min_steps = model.train_tokens / model.seq_len
    while n_lo < n_stop:
        n_hi = min(n_stop, max(int(n_lo * 1.5), n_lo + 64))
        grid, which = grid_for_devices(combos, n_lo, n_hi, batch, pins, with_index=True)
        n_lo = n_hi
        if len(grid) == 0:
            continue
        any_layout = True
        m = grid.micro
        tm, ts = t_max[which], t_sum[which]
        bound = min_steps / grid.batch * (m * tm + (ts - tm) / grid.v)
        if "devices" not in pins:
            grid = grid.take(bound <= deadline_s)
            if len(grid) == 0:
                continue
        res = _evaluate_chunked(model, system, grid, o, c)
        evaluated += len(grid)
        dur = durations(model, res)
        ok = res.fits
        if ok.any():
            i = int(np.argmin(np.where(ok, dur, np.inf)))
            if dur[i] < best_seen[0]:
                best_seen = (float(dur[i]), int(grid.devices[i]))
        good = ok if "devices" in pins else ok & (dur <= deadline_s)
        if not good.any():
            continue
        n_star = int(grid.devices[good].min())
        if "devices" in pins:  # nothing was pruned: this grid is every layout at that count
            return _result(model, system, o, grid, res, dur, np.flatnonzero(ok), deadline_s, evaluated, objective)
        if objective == "carbon":
            return _least_carbon(model, system, o, c, combos, batch, pins, n_star, deadline_s, carbon_score,
                                 evaluated, all_combos)
        return _at_devices(model, system, o, c, all_combos, batch, pins, n_star, deadline_s, evaluated, objective)
    if "devices" in pins and not any_layout:
        fixed = ", ".join(f"{k}={pins[k]}" for k in ("tp", "pp", "dp", "ep", "microbatch") if k in pins)
        raise InfeasibleError(
            f"no allowed layout has exactly {pins['devices']} devices (devices = TP x PP x DP x EP"
            f"{'; pinned ' + fixed if fixed else ''}; at most {batch} sequences per step)", "layout")
    if "devices" in pins:
        raise InfeasibleError(f"no allowed layout fits in memory at {pins['devices']} devices", "memory")
    if not any_layout and best_seen[1] == 0:
        ideal = ideal_devices(model, system, deadline_s, o)
        if ideal >= n_stop:
            raise InfeasibleError(
                f"no device count meets the {deadline_days:g}-day deadline: even at peak throughput it needs "
                f"{ideal:,} devices, more than the largest allowed layout ({n_stop - 1:,} devices; the critical "
                f"batch of {batch} sequences caps data parallelism)", "deadline",
                {"ideal_devices": ideal, "max_devices": n_stop - 1, "best_duration_days": best_bound / 86400})
    best_days = best_seen[0] / 86400 if best_seen[1] else None
    raise _deadline_error(deadline_days, batch, best_bound / 86400, best_seen[1] and (best_days, best_seen[1]))


CHUNK = 250_000  # layouts per evaluate call: bounds peak memory (~1 GB) on huge windows


def _evaluate_chunked(model, system, grid: LayoutGrid, o, c) -> StepResult:
    if len(grid) <= CHUNK:
        return evaluate(model, system, grid, o, c)
    parts = [evaluate(model, system, grid.take(slice(i, i + CHUNK)), o, c) for i in range(0, len(grid), CHUNK)]
    return StepResult(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in StepResult.__dataclass_fields__})


def _deadline_error(deadline_days, batch, bound_days, best, bound_only=False) -> InfeasibleError:
    """The deadline is the binding constraint: say how close the search got."""
    if best:
        days, devices = best
        text = f"the fastest layout found takes {days:.1f} days on {devices:,} devices"
        details = {"best_duration_days": days, "best_devices": devices, "lower_bound_days": bound_days}
    else:
        text = f"every layout needs at least {bound_days:.1f} days (one microbatch's trip through the pipeline per step)"
        details = {"best_duration_days": bound_days, "lower_bound_days": bound_days}
    return InfeasibleError(
        f"no device count meets the {deadline_days:g}-day deadline: {text} (the critical batch of {batch} "
        "sequences caps data parallelism)", "deadline", details)


def _at_devices(model, system, o, c, combos, batch, pins, n_star, deadline_s, evaluated, objective) -> SearchResult:
    """Every layout at exactly ``n_star`` devices: the fastest that fits, and the median of those that fit."""
    grid = grid_for_devices(combos, n_star, n_star + 1, batch, pins)
    res = evaluate(model, system, grid, o, c)
    dur = durations(model, res)
    ok = np.flatnonzero(res.fits)
    return _result(model, system, o, grid, res, dur, ok, deadline_s, evaluated + len(grid), objective)


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
        mfu=float(model_flops_utilization(model, system, devs[i], dur[i], o.gemm_precision)), deadline_s=deadline_s,
        median_layout=grid.layout(j), median_duration_s=float(dur[j]),
        median_mfu=float(model_flops_utilization(model, system, devs[j], dur[j], o.gemm_precision)),
        layouts_evaluated=evaluated, objective=objective,
    )


def _least_carbon(model, system, o, c, combos, batch, pins, n_star, deadline_s, carbon_score, evaluated,
                  all_combos) -> SearchResult:
    """Least-carbon layout meeting the deadline among device counts ``N* .. 2 N*``; median still at ``N*``."""
    grid = grid_for_devices(combos, n_star, 2 * n_star + 1, batch, pins)
    res = evaluate(model, system, grid, o, c)
    dur = durations(model, res)
    good = res.fits & (dur <= deadline_s)
    devs = grid.devices
    mfu = model_flops_utilization(model, system, devs, dur, o.gemm_precision)
    score = np.where(good, carbon_score(devs, dur, mfu, step=res), np.inf)
    best = _result(model, system, o, grid, res, dur, np.flatnonzero(good), deadline_s, evaluated + len(grid),
                   "carbon", score)
    at = _at_devices(model, system, o, c, all_combos, batch, pins, n_star, deadline_s, 0, "carbon")
    # The fastest layout is always a candidate: the carbon objective never returns more carbon than it.
    if carbon_score(np.array([at.devices]), np.array([at.duration_s]), np.array([at.mfu]), step=at.step)[0] \
            < float(np.min(score)):
        best = replace(at, layouts_evaluated=best.layouts_evaluated)
    return replace(best, median_layout=at.median_layout, median_duration_s=at.median_duration_s,
                   median_mfu=at.median_mfu, layouts_evaluated=best.layouts_evaluated + at.layouts_evaluated)
