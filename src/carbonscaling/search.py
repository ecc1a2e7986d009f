"""Stage 3b: the parallelism search (v1 Algorithm 1 with v2's ZeRO stages).

The answer is the smallest device count ``N`` at which some layout meets the
deadline, and the fastest layout at that ``N``. Equivalently, it is the minimum
of ``N`` over all layouts that fit in memory and meet the deadline, which is how
the production search finds it: it never visits device counts that do not
factorize, walks windows of ``N`` upward from Algorithm 1's ``N_ideal``, and
evaluates a window's layouts in order of ``N``, many at once, with the vectorized step
model, skipping those a lower bound rules out (:mod:`.search_walk`; the layout space is
:mod:`.search_space`; pinned parts are checked by :mod:`.search_pins`). The plain Algorithm 1
(increment ``N`` by one) lives in the tests and must agree.

Layout rules. Megatron-Core (default): ``devices = TP x CP x PP x DP``; EP divides the
experts and ``ETP x EP`` divides ``TP x CP x DP`` (ETP = TP or 1); TP divides the head
count and stays within the scale-up domain; CP is a power of two with ``2 CP | seq_len``
and >= 1024 tokens per rank; PP any depth Megatron can split the layers over (even,
embedding/loss-accounted or uneven first/last stages, ``perf.pipeline``) with VP up to 8;
ZeRO-2/3; recompute none, or full on the fewest layers per stage that fit. CarbonScaling
v1 (``ep_convention='cs-v1'``, the reference of the tests): ``EP = E`` multiplies the
devices, PP divides the layers (or v1's uneven rule), CP = 1, all-or-nothing recompute,
ZeRO 0-3. Microbatches of 1-8 sequences. The global batch is capped at the model's
critical batch: each data-parallel rank runs ``floor(B / (DP mb))`` whole microbatches
(Epoch AI's distributed-training model caps it the same way), so scale-out eventually
stops paying; under the Megatron convention the search keeps that rounding within
``BATCH_SHRINK_MAX`` of ``B`` when some layout allows it (:func:`.search_space.batch_floor`).
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .errors import InfeasibleError, InputError
from .hardware import System
from .perf.constants import PerfConstants, default_constants
from .perf.groups import group_rows
from .perf.layout import RL_AUTO, Layout, TrainingOptions
from .perf.pipeline import MAX_INTERLEAVE  # noqa: F401 (search.MAX_INTERLEAVE)
from .perf.pipeline_cost import searched_layout
from .perf.step import StepResult, evaluate, memory_fit, stage_bounds
from .scaling import ModelSpec
from .search_space import (  # noqa: F401  (re-exported: the search's public layout-space API)
    COMBO_FIELDS, MAX_CP, MAX_TP, MICROBATCHES, MIN_CP_TOKENS, PIPELINE_SPLITS, ZERO_STAGES, ZERO_STAGES_MEGATRON,
    BATCH_SHRINK_MAX, _combo_grid, _divisors, _expert_options, _per_combo, _recompute_options, _tp_options,
    _window_rows, batch_floor, cp_options, dp_limit, dp_step, durations, grid_for_devices, ideal_devices, inner_combos, model_flops_utilization,
    pipeline_options)
from .search_walk import _Walk, _walk_windows  # noqa: F401
from .search_pins import (PINNABLE, _check_layout, _check_model_rules, _check_pinned,  # noqa: F401 - re-exported
                          _whole, check_ep_overlap, check_offload)



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
    def pipeline_layout(self) -> str | None:
        """Megatron-Core ``pipeline_model_parallel_layout`` of the chosen layout (:func:`.perf.pipeline_cost.searched_layout`):
        pinning it with the same PP reproduces the step."""
        return searched_layout(self.model, self.options, self.layout.pp, self.layout.vp)

    @property
    def meets_deadline(self) -> bool:
        return self.duration_s <= self.deadline_s * (1 + 1e-12)


@dataclass(frozen=True)
class _Candidates:
    """The deadline-independent part of pruning (see :func:`_prune`), cached across searches."""

    all_combos: dict          # every inner combination the rules allow
    combos: dict              # those with at least one valid DP
    fits: np.ndarray          # ... that fit in memory at their largest DP
    t_max: np.ndarray         # slowest stage and all stages, one microbatch, at the smallest DP
    t_sum: np.ndarray
    bound: np.ndarray         # lower bound of every DP's duration (s)
    dominated: np.ndarray     # recompute-to-fit combinations whose no-recompute twin always wins
    sizes_all: tuple = ()     # (TP CP PP, DP step, DP limit) of all_combos
    sizes: tuple = ()         # ... of combos


CANDIDATE_CACHE_SIZE = 8  # (model, system, options, pins) entries; a 405B model's is ~5 MB
_CANDIDATES: OrderedDict = OrderedDict()
_CANDIDATES_LOCK = threading.Lock()


def _candidates(model, system, o, c, pins, batch, pipeline_split) -> _Candidates:
    """:class:`_Candidates` of a request; repeated requests (other deadlines, regions, carbon
    settings, a pinned device count) reuse them. Arrays are read-only: they are shared."""
    key = (model, system.model_dump_json(), o, c, tuple(sorted((k, v) for k, v in pins.items() if k != "devices")),
           batch, pipeline_split)
    try:
        hash(key)
    except TypeError:  # e.g. constants built with a list field: no caching, same answer
        return _candidate_bounds(model, system, o, c, inner_combos(model, pins, o, pipeline_split, system), batch,
                                 pins)
    with _CANDIDATES_LOCK:  # the service answers requests on threads
        hit = _CANDIDATES.get(key)
        if hit is not None:
            _CANDIDATES.move_to_end(key)
            return hit
    all_combos = inner_combos(model, pins, o, pipeline_split, system)
    cand = _candidate_bounds(model, system, o, c, all_combos, batch, pins)
    for arr in (*cand.all_combos.values(), *cand.combos.values(), cand.fits, cand.t_max, cand.t_sum, cand.bound,
                cand.dominated, *cand.sizes_all, *cand.sizes):
        arr.flags.writeable = False
    with _CANDIDATES_LOCK:
        _CANDIDATES[key] = cand
        while len(_CANDIDATES) > CANDIDATE_CACHE_SIZE:
            _CANDIDATES.popitem(last=False)
    return cand


def _candidate_bounds(model, system, o, c, all_combos, batch, pins) -> _Candidates:
    """Memory fit at the largest DP, stage times at the smallest, and the duration bound."""
    sizes_all = _per_combo(all_combos, batch, pins)
    valid = sizes_all[2] >= 1
    combos = {k: v[valid] for k, v in all_combos.items()}
    sizes = tuple(x[valid] for x in sizes_all)
    dp_max = sizes[2]
    if len(dp_max) == 0:
        empty = np.zeros(0)
        return _Candidates(all_combos, combos, empty.astype(bool), empty, empty, empty, empty.astype(bool), sizes_all,
                           sizes)
    fits, fewest_rl = memory_fit(model, system, _combo_grid(combos, dp_max, batch, pins), o, c)
    dp_lo = np.full_like(dp_max, pins["dp"]) if "dp" in pins else sizes[1]
    fewest = {**combos, "rl": np.where(combos["rl"] == RL_AUTO, fewest_rl, combos["rl"])}
    # Stage times only where the combination fits (the others are dropped, and cannot fit at a smaller DP).
    at = np.flatnonzero(fits)
    t_max, t_sum, fits_lo = np.zeros(len(fits)), np.zeros(len(fits)), np.zeros(len(fits), bool)  # unused where unfit
    t_max[at], t_sum[at], fits_lo[at] = stage_bounds(
        model, system, _combo_grid({k: v[at] for k, v in fewest.items()}, dp_lo[at], batch, pins), o, c)
    min_steps = model.train_tokens / (batch * model.seq_len)
    bound = min_steps * (t_max + (t_sum - t_max) / combos["v"])
    return _Candidates(all_combos, combos, fits, t_max, t_sum, bound, _recompute_dominated(combos, fits_lo),
                       sizes_all, sizes)


def _prune(cand: _Candidates, pins, deadline_s):
    """Drop inner combinations that cannot work at any DP, and bound the rest.

    Memory only falls as DP grows (ZeRO shards shrink, fewer microbatches are in flight),
    so a combination that does not fit at its largest DP never fits, and the fewest
    recomputed layers it needs are fewest there. Stage times do not depend on DP except
    through pipeline sends, which are cheapest at the smallest DP; a step takes at least
    ``m t_max + (S - t_max) / v`` and there are at least ``tokens / B`` steps, so
    ``tokens / B x (t_max + (S - t_max) / v)``, with stage times at the smallest DP and the
    recompute of the largest, bounds every DP's duration from below.
    Returns the kept combinations, their ``(t_max, S)``, the smallest bound of all,
    whether anything fits, and the kept combinations' sizes (:func:`_per_combo`).
    """
    fits, bound = cand.fits, cand.bound
    if len(fits) == 0:
        return cand.combos, None, None, math.inf, False, cand.sizes
    best_bound = float(bound[fits].min()) if fits.any() else math.inf
    keep = fits if "devices" in pins else fits & (bound <= deadline_s)
    keep = keep & ~cand.dominated
    return ({k: v[keep] for k, v in cand.combos.items()}, cand.t_max[keep], cand.t_sum[keep], best_bound,
            bool(fits.any()), tuple(x[keep] for x in cand.sizes))


def _recompute_dominated(combos: dict[str, np.ndarray], fits_at_smallest_dp: np.ndarray) -> np.ndarray:
    """Combinations with recompute chosen to fit (``RL_AUTO``) whose no-recompute twin already
    fits at the smallest DP: the twin fits at every DP and is faster there, so they never win."""
    auto = (combos["rc"] == 2) & (combos["rl"] == RL_AUTO)
    if not auto.any():
        return auto
    _, key = group_rows(*(combos[k] for k in COMBO_FIELDS if k not in ("rc", "rl")))
    none_fits = np.zeros(int(key.max()) + 1, dtype=bool)
    np.logical_or.at(none_fits, key[(combos["rc"] == 0) & fits_at_smallest_dp], True)
    return auto & none_fits[key]


def _validate_request(deadline_days, objective, carbon_score, pipeline_split) -> None:
    if not (isinstance(deadline_days, numbers.Real) and not isinstance(deadline_days, bool)
            and math.isfinite(deadline_days) and 0 < deadline_days <= 36500):
        raise InputError("deadline_days", f"must be in (0, 36500], got {deadline_days!r}")
    if objective not in ("fastest", "carbon"):
        raise InputError("objective", f"must be 'fastest' or 'carbon', got {objective!r}")
    if objective == "carbon" and carbon_score is None:
        raise InputError("objective", "'carbon' needs a carbon_score (estimate() provides one)")
    if pipeline_split not in PIPELINE_SPLITS:
        raise InputError("pipeline_split", f"must be one of {', '.join(PIPELINE_SPLITS)}, got {pipeline_split!r}")


def _device_rule(o: TrainingOptions) -> str:
    return "TP x PP x DP (DP includes EP: v1's DP x EP)" if o.legacy else "TP x CP x PP x DP (EP inside DP x CP)"


def search(model: ModelSpec, system: System, *, deadline_days: float = 90.0, options: TrainingOptions | None = None,
           pinned: dict | None = None, objective: str = "fastest", pipeline_split: str = "uneven",
           carbon_score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
           consts: PerfConstants | None = None) -> SearchResult:
    """Minimal device count meeting the deadline and its fastest layout (or the least-carbon one).

    With ``devices`` pinned, the deadline is not a constraint: the fastest layout at
    that count is returned and ``meets_deadline`` says whether it made it.
    ``carbon_score(devices, duration_s, mfu, step=StepResult)`` ranks layouts for ``objective="carbon"``.
    """
    _validate_request(deadline_days, objective, carbon_score, pipeline_split)
    o = options or TrainingOptions()
    c = consts or default_constants()
    system.device.peak_flops(o.precision)  # the device runs the format (fp16 GEMMs are costed at the BF16 peak)
    pins = _check_pinned(pinned or {}, model, o)
    check_offload(pins, model, system, o)
    check_ep_overlap(pins, model, o)
    batch = pins.get("global_batch", model.batch_sequences)
    deadline_s = float(deadline_days) * 86400.0
    if pins.get("zero") == 4 and not o.flexible_sharding:
        raise InputError("zero", "stage 4 (hierarchical ZeRO-3) needs flexible sharding")
    per_rank = max(pins.get("dp", 1), pins.get("fsdp") or 1) * pins.get("microbatch", 1)
    if per_rank > batch:  # FSDP shards over data-parallel ranks: its group divides DP
        key = "dp" if pins.get("dp", 1) >= (pins.get("fsdp") or 1) else "fsdp"
        raise InputError("global_batch" if "global_batch" in pins else key,
                         f"{key} x microbatch ({per_rank}) exceeds the global batch of {batch} sequences")
    floor = batch_floor(batch, pins, o.legacy)
    if floor:
        try:
            return _search_pinned(model, system, o, c, {**pins, "min_batch": floor}, batch, deadline_days,
                                  objective, pipeline_split, carbon_score)
        except InfeasibleError:
            pass  # no layout keeps the batch within BATCH_SHRINK_MAX: round further (the answer shows the batch)
    return _search_pinned(model, system, o, c, pins, batch, deadline_days, objective, pipeline_split, carbon_score)


def _search_pinned(model, system, o, c, pins, batch, deadline_days, objective, pipeline_split,
                   carbon_score) -> SearchResult:
    """:func:`search` after its checks: candidates, the walk, the answer or the binding constraint."""
    deadline_s = float(deadline_days) * 86400.0
    cand = _candidates(model, system, o, c, pins, batch, pipeline_split)
    all_combos = cand.all_combos
    combos, t_max, t_sum, best_bound, any_fit, sizes = _prune(cand, pins, deadline_s)
    if not any_fit:
        where = f" at {pins['devices']} devices" if "devices" in pins else ""
        raise InfeasibleError(
            f"{model.name} does not fit in {system.device.hbm_gb:g} GB per device{_host_words(system, o)} under any "
            f"allowed layout{where} "
            f"({_memory_reach(model, system, o, pins)})", "memory")
    if len(combos["tp"]) == 0:
        raise _deadline_error(deadline_days, _batch_words(model, pins, batch), best_bound / 86400, None,
                              bound_only=True)
    walk = _walk_windows(model, system, o, c, combos, t_max, t_sum, batch, pins, deadline_s, sizes)
    if walk.found is not None:
        grid, res, dur, ok, n_star = walk.found
        if "devices" in pins:  # nothing was pruned: this grid is every layout at that count
            return _result(model, system, o, grid, res, dur, np.flatnonzero(ok), deadline_s, walk.evaluated, objective)
        if objective == "carbon":
            return _least_carbon(model, system, o, c, combos, batch, pins, n_star, deadline_s, carbon_score,
                                 walk.evaluated, all_combos, (sizes, cand.sizes_all))
        return _at_devices(model, system, o, c, all_combos, batch, pins, n_star, deadline_s, walk.evaluated,
                           objective, cand.sizes_all)
    raise _explain_no_layout(model, system, o, pins, batch, deadline_days, deadline_s, walk, best_bound)


def _explain_no_layout(model, system, o, pins, batch, deadline_days, deadline_s, walk: _Walk,
                       best_bound) -> InfeasibleError:
    """The binding constraint when the walk found nothing."""
    if "devices" in pins and not walk.any_layout:
        fixed = ", ".join(f"{k}={pins[k]}" for k in ("tp", "cp", "pp", "dp", "ep", "etp", "fsdp", "microbatch")
                          if k in pins)
        return InfeasibleError(
            f"no allowed layout has exactly {pins['devices']} devices (devices = {_device_rule(o)}"
            f"{'; pinned ' + fixed if fixed else ''}; at most {batch} sequences per step)", "layout")
    if "devices" in pins:
        return InfeasibleError(f"no allowed layout fits in memory{_host_words(system, o)} at {pins['devices']} devices "
                               f"({_memory_reach(model, system, o, pins)})", "memory")
    if not walk.any_layout and walk.best_seen[1] == 0:
        ideal = ideal_devices(model, system, deadline_s, o)
        if ideal >= walk.n_stop:
            return InfeasibleError(
                f"no device count meets the {deadline_days:g}-day deadline: even at peak throughput it needs "
                f"{ideal:,} devices, more than the largest allowed layout ({walk.n_stop - 1:,} devices; "
                f"{_batch_words(model, pins, batch)} caps data parallelism)", "deadline",
                {"ideal_devices": ideal, "max_devices": walk.n_stop - 1, "best_duration_days": best_bound / 86400})
    best_days = walk.best_seen[0] / 86400 if walk.best_seen[1] else None
    return _deadline_error(deadline_days, _batch_words(model, pins, batch), best_bound / 86400,
                           walk.best_seen[1] and (best_days, walk.best_seen[1]))



def _host_words(system: System, o: TrainingOptions) -> str:
    """With CPU offloading, host memory binds too (perf.step._fits, data/host_memory.yaml)."""
    host = system.device.host_dram_gb
    if not (o.cpu_offload_layers and host and system.device.host_link_gb_s):
        return ""
    return f" (and {o.cpu_offload_layers} offloaded layers' activations in {host:g} GB of host memory per GPU)"


def _memory_reach(model: ModelSpec, system: System, o: TrainingOptions, pins: dict) -> str:
    """What the memory search could try: the most sharding of each free part, and the pinned parts
    as pinned (a pinned ZeRO-0 must not read 'ZeRO-3')."""
    offload = bool(o.cpu_offload_layers)  # PP 1 and no recompute then (search_space.inner_combos)
    free = [f"TP={max(_tp_options(model, system, o.legacy))}" if "tp" not in pins else "",
            f"PP={model.n_layers}" if "pp" not in pins and not offload else "",
            "ZeRO-3" if "zero" not in pins else "", "full recompute" if "recompute" not in pins and not offload else "",
            "PP=1 and no recompute (CPU offloading)" if offload else ""]
    fixed = ", ".join(f"{k}={pins[k]}" for k in ("tp", "cp", "pp", "dp", "ep", "etp", "zero", "fsdp", "microbatch",
                                                   "recompute", "recompute_layers") if k in pins)
    free_text = ", ".join(f for f in free if f)
    return "; ".join(t for t in (f"up to {free_text}" if free_text else "", f"pinned {fixed}" if fixed else "") if t)


def _batch_words(model: ModelSpec, pins: dict, batch: int) -> str:
    """The batch that caps data parallelism, named as what it is: v1's critical batch unless a pin
    or the model (a published batch; presets carry their rule's critical batch) sets another."""
    critical = model.global_batch_tokens is None or model.preset is not None
    kind = "critical" if "global_batch" not in pins and critical else "global"
    return f"the {kind} batch of {batch} sequences"


def _deadline_error(deadline_days, batch_words, bound_days, best, bound_only=False) -> InfeasibleError:
    """The deadline is the binding constraint: say how close the search got."""
    if best:
        days, devices = best
        text = f"the fastest layout found takes {days:.1f} days on {devices:,} devices"
        details = {"best_duration_days": days, "best_devices": devices, "lower_bound_days": bound_days}
    else:
        text = f"every layout needs at least {bound_days:.1f} days (one microbatch's trip through the pipeline per step)"
        details = {"best_duration_days": bound_days, "lower_bound_days": bound_days}
    return InfeasibleError(
        f"no device count meets the {deadline_days:g}-day deadline: {text} ({batch_words} caps data parallelism)",
        "deadline", details)


def _at_devices(model, system, o, c, combos, batch, pins, n_star, deadline_s, evaluated, objective,
                sizes=None) -> SearchResult:
    """Every layout at exactly ``n_star`` devices: the fastest that fits, and the median of those that fit."""
    grid = grid_for_devices(combos, n_star, n_star + 1, batch, pins, per_combo=sizes)
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

    def mfu(k):
        return float(model_flops_utilization(model, system, devs[k], dur[k], o.gemm_precision, o.mfu_convention))

    return SearchResult(
        model=model, system=system, options=o,
        layout=grid.layout(i, res.recompute_layers[i]), step=res.take(i), duration_s=float(dur[i]),
        mfu=mfu(i), deadline_s=deadline_s,
        median_layout=grid.layout(j, res.recompute_layers[j]), median_duration_s=float(dur[j]), median_mfu=mfu(j),
        layouts_evaluated=evaluated, objective=objective,
    )


def _least_carbon(model, system, o, c, combos, batch, pins, n_star, deadline_s, carbon_score, evaluated,
                  all_combos, sizes=(None, None)) -> SearchResult:
    """Least-carbon layout meeting the deadline among device counts ``N* .. 2 N*``; median still at ``N*``."""
    grid = grid_for_devices(combos, n_star, 2 * n_star + 1, batch, pins, per_combo=sizes[0])
    res = evaluate(model, system, grid, o, c)
    dur = durations(model, res)
    good = res.fits & (dur <= deadline_s)
    devs = grid.devices
    mfu = model_flops_utilization(model, system, devs, dur, o.gemm_precision, o.mfu_convention)
    score = np.where(good, carbon_score(devs, dur, mfu, step=res), np.inf)
    best = _result(model, system, o, grid, res, dur, np.flatnonzero(good), deadline_s, evaluated + len(grid),
                   "carbon", score)
    at = _at_devices(model, system, o, c, all_combos, batch, pins, n_star, deadline_s, 0, "carbon", sizes[1])
    # The fastest layout is always a candidate: the carbon objective never returns more carbon than it.
    if carbon_score(np.array([at.devices]), np.array([at.duration_s]), np.array([at.mfu]), step=at.step)[0] \
            < float(np.min(score)):
        best = replace(at, layouts_evaluated=best.layouts_evaluated)
    return replace(best, median_layout=at.median_layout, median_duration_s=at.median_duration_s,
                   median_mfu=at.median_mfu, layouts_evaluated=best.layouts_evaluated + at.layouts_evaluated)
