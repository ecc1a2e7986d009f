"""Stage 3b: the parallelism search (v1 Algorithm 1 with v2's ZeRO stages).

The answer is the smallest device count ``N`` at which some layout meets the
deadline, and the fastest layout at that ``N``. Equivalently, it is the minimum
of ``N`` over all layouts that fit in memory and meet the deadline, which is how
the production search finds it: it never visits device counts that do not
factorize, walks windows of ``N`` upward from Algorithm 1's ``N_ideal``, and
evaluates every layout of a window at once with the vectorized step model. The
plain Algorithm 1 (increment ``N`` by one) lives in the tests and must agree.

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
stops paying.
"""

from __future__ import annotations

import itertools
import math
import numbers
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .errors import InfeasibleError, InputError
from .hardware import System
from .perf.groups import group_rows
from .perf.constants import PerfConstants, default_constants
from .perf.layout import RECOMPUTE_MODES, RL_ALL, RL_AUTO, Layout, LayoutGrid, TrainingOptions
from .perf.pipeline import MAX_INTERLEAVE, interleave_options, stage_split
from .perf.step import StepResult, evaluate, memory_fit, stage_bounds
from .scaling import ModelSpec

MICROBATCHES = (1, 2, 4, 8)
ZERO_STAGES = (0, 1, 2, 3)
# Megatron convention: ZeRO-0/1 move as many or more bytes than ZeRO-2 (all-reduce 2 x 4 B vs
# reduce-scatter 4 B + all-gather 2 B per parameter) and keep more memory, so the search
# skips them (they can be pinned).
ZERO_STAGES_MEGATRON = (2, 3)
MAX_TP = 64
MIN_CP_TOKENS = 1024  # the search tries CP only while each rank keeps >= this many tokens of a sequence
MAX_CP = 16
PINNABLE = ("devices", "tp", "pp", "dp", "cp", "ep", "etp", "zero", "fsdp", "microbatch", "vp", "interleave",
            "recompute", "recompute_layers", "global_batch")


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


# ---- pinned parts ----------------------------------------------------------------------
def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _whole(key, val, lo, hi) -> int:
    if isinstance(val, bool) or not isinstance(val, (int, np.integer)) and not (
            isinstance(val, float) and math.isfinite(val) and val.is_integer()):
        raise InputError(key, f"must be a whole number, got {val!r}")
    val = int(val)
    if not lo <= val <= hi:
        raise InputError(key, f"must be in [{lo}, {hi}], got {val}")
    return val


def _check_pinned(pinned: dict, model: ModelSpec, o: TrainingOptions | None = None) -> dict:
    """Pinned layout parts, validated against the model and Megatron-Core's rules."""
    o = o or TrainingOptions()
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
        lo = 0 if key in ("zero", "fsdp", "recompute_layers") else 1
        hi = 4 if key == "zero" else 10**9
        key = "vp" if key == "interleave" else key
        out[key] = _whole(key, val, lo, hi)
    _check_model_rules(out, model, o)
    return out


def _check_model_rules(p: dict, model: ModelSpec, o: TrainingOptions) -> None:
    if "tp" in p and model.n_heads % p["tp"]:
        raise InputError("tp", f"must divide n_heads ({model.n_heads}), got {p['tp']}")
    if "pp" in p and p["pp"] > model.n_layers:
        raise InputError("pp", f"must be <= n_layers ({model.n_layers}), got {p['pp']}")
    if "ep" in p and (p["ep"] > model.n_experts or model.n_experts % p["ep"]):
        raise InputError("ep", f"must divide n_experts ({model.n_experts}), got {p['ep']}")
    if p.get("cp", 1) > 1:
        if o.legacy:
            raise InputError("cp", "context parallelism needs ep_convention='megatron'")
        if model.seq_len % (2 * p["cp"]):
            raise InputError("cp", f"2 x cp must divide seq_len ({model.seq_len}) for causal load balancing, "
                                   f"got cp={p['cp']}")
    if "etp" in p and o.legacy and p["etp"] != p.get("tp", p["etp"]):
        raise InputError("etp", "expert tensor parallelism other than TP needs ep_convention='megatron'")
    if p.get("recompute_layers") and p.setdefault("recompute", "full") != "full":
        raise InputError("recompute_layers", f"needs recompute='full', got recompute={p['recompute']!r}")
    if p.get("fsdp"):
        if p.setdefault("zero", 3) != 3:
            raise InputError("fsdp", f"FSDP shards like ZeRO-3; got zero={p['zero']}")
        if "dp" in p and p["dp"] % p["fsdp"]:
            raise InputError("fsdp", f"must divide dp ({p['dp']}), got {p['fsdp']}")
    if p.get("vp", 1) > 1:
        pp = p.get("pp")
        if pp == 1:
            raise InputError("vp", "interleaving needs pp > 1")
        if pp is None:
            if p["vp"] > model.n_layers // 2:
                raise InputError("vp", f"must be <= n_layers / 2 ({model.n_layers // 2}), got {p['vp']}")
        elif o.legacy and p["vp"] > model.n_layers // pp:
            raise InputError("vp", f"must be <= layers per stage ({model.n_layers // pp}), got {p['vp']}")
        elif not o.legacy and stage_split(model.n_layers, pp, p["vp"]) is None:
            raise InputError("vp", f"Megatron cannot split {model.n_layers} layers over pp {pp} x vp {p['vp']} "
                                   "(even, embedding/loss-accounted, or uneven first/last stages)")


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


def cp_options(model: ModelSpec) -> list[int]:
    """Context-parallel sizes the search tries: powers of two with ``2 CP | seq_len`` and at least
    :data:`MIN_CP_TOKENS` tokens of a sequence per rank."""
    out, cp = [1], 2
    while cp <= MAX_CP and model.seq_len % (2 * cp) == 0 and model.seq_len // cp >= MIN_CP_TOKENS:
        out.append(cp)
        cp *= 2
    return out


def _tp_options(model: ModelSpec, system: System | None, legacy: bool) -> list[int]:
    cap = MAX_TP if legacy or system is None else min(MAX_TP, max(8, system.scale_up_domain))
    return [d for d in _divisors(model.n_heads) if d <= cap]


def _expert_options(model: ModelSpec, pinned: dict, tp: int, legacy: bool) -> list[tuple[int, int]]:
    """(EP, ETP) pairs. v1 fixes EP = E. Megatron: EP divides E and is at least min(E, 8) (a
    smaller EP replicates experts inside a node: more memory for all-to-alls that stay on
    NVLink anyway); ETP = TP, or also 1 when EP is pinned (Megatron-Bridge MoE recipes run
    ETP 1 when EP x TP would exceed DP x CP x TP)."""
    if not model.is_moe:
        return [(pinned.get("ep", 1), pinned.get("etp", tp))]
    E = model.n_experts
    eps = [pinned["ep"]] if "ep" in pinned else ([E] if legacy else [d for d in _divisors(E) if d >= min(E, 8)])
    if "etp" in pinned:
        etps = [pinned["etp"]]
    else:
        etps = [tp, 1] if ("ep" in pinned and tp > 1 and not legacy) else [tp]
    return [(e, t) for e in eps for t in etps]


def _recompute_options(pinned: dict, o: TrainingOptions) -> list[tuple[int, int]]:
    """(rc, recompute layers): none and full (v1: all layers; Megatron: the fewest that fit)."""
    if "recompute" in pinned:
        rc = RECOMPUTE_MODES.index(pinned["recompute"])
        rl = pinned.get("recompute_layers", RL_ALL)
        return [(0, RL_ALL)] if rc == 2 and rl == 0 else [(rc, rl if rc == 2 else RL_ALL)]
    full = (2, RL_ALL if o.legacy else RL_AUTO)
    # With FlashAttention, selective recompute of core_attn alone is what the kernel already does (same
    # time and memory as none); other recompute_modules make it a choice of its own.
    plain = o.flash_attention and not o.selective_modules
    return [(0, RL_ALL), full] if plain else [(0, RL_ALL), (1, RL_ALL), full]


COMBO_FIELDS = ("ep", "etp", "tp", "cp", "pp", "v", "mb", "zero", "fsdp", "rc", "rl")


def inner_combos(model: ModelSpec, pinned: dict, options: TrainingOptions | None = None,
                 pipeline_split: str = "uneven", system: System | None = None) -> dict[str, np.ndarray]:
    """Every layout part but DP that the rules allow, as arrays.

    ZeRO stage 4 (hierarchical ZeRO-3) is offered only with flexible sharding; FSDP only pinned.
    """
    o = options or TrainingOptions()
    legacy = o.legacy
    tps = [pinned["tp"]] if "tp" in pinned else _tp_options(model, system, legacy)
    cps = [pinned["cp"]] if "cp" in pinned else ([1] if legacy else cp_options(model))
    pps = [pinned["pp"]] if "pp" in pinned else pipeline_options(model.n_layers, pipeline_split)
    mbs = [pinned["microbatch"]] if "microbatch" in pinned else list(MICROBATCHES)
    zs = [pinned["zero"]] if "zero" in pinned else (list(ZERO_STAGES if legacy else ZERO_STAGES_MEGATRON)
                                                    + ([4] if o.flexible_sharding else []))
    fs = [pinned.get("fsdp", 0)]
    rcs = _recompute_options(pinned, o)
    vps = {p: [v for v in ([pinned["vp"]] if "vp" in pinned else interleave_options(model.n_layers, p, legacy))
               if v == 1 or p > 1] for p in pps}
    experts = {t: _expert_options(model, pinned, t, legacy) for t in tps}
    # (EP, ETP, TP, CP, PP, VP) in loop order, each followed by every (mb, ZeRO, FSDP, recompute)
    outer = [(e, et, t, c, p, v) for t, c, p in itertools.product(tps, cps, pps)
             for (e, et), v in itertools.product(experts[t], vps[p])]
    inner = [(mb, z, f, rc, rl) for mb, z, f, (rc, rl) in itertools.product(mbs, zs, fs, rcs)]
    outer_a = np.array(outer, dtype=np.int64).reshape(-1, 6)
    inner_a = np.array(inner, dtype=np.int64).reshape(-1, 5)
    cols = [np.repeat(outer_a[:, i], len(inner_a)) for i in range(6)]
    cols += [np.tile(inner_a[:, i], len(outer_a)) for i in range(5)]
    return dict(zip(COMBO_FIELDS, cols))


def dp_step(combos: dict[str, np.ndarray]) -> np.ndarray:
    """DP must be a multiple of this: ETP x EP divides TP x CP x DP (and FSDP divides DP)."""
    ex = combos["etp"] * combos["ep"]
    step = ex // np.gcd(ex, combos["tp"] * combos["cp"])
    f = np.maximum(combos["fsdp"], 1)
    return step * f // np.gcd(step, f)


def dp_limit(combos: dict[str, np.ndarray], batch: int, pinned: dict, step: np.ndarray | None = None) -> np.ndarray:
    """Largest DP (a multiple of :func:`dp_step`, ``step`` if given) with a whole microbatch per rank; 0 if none."""
    step = dp_step(combos) if step is None else step
    if "dp" in pinned:
        d = pinned["dp"]
        return np.where((d % step == 0) & (d * combos["mb"] <= batch), d, 0)
    return (batch // combos["mb"]) // step * step


def grid_for_devices(combos: dict[str, np.ndarray], n_lo: int, n_hi: int, batch: int, pinned: dict,
                     with_index: bool = False, per_combo: tuple | None = None):
    """All layouts with ``n_lo <= devices < n_hi`` (every valid DP that lands in the window)."""
    idx, dp, _ = _window_rows(combos, n_lo, n_hi, batch, pinned, per_combo=per_combo)
    grid = _combo_grid({k: v[idx] for k, v in combos.items()}, dp, batch, pinned)
    return (grid, idx) if with_index else grid


def _window_rows(combos, n_lo, n_hi, batch, pinned, dp_floor=None, only=None, per_combo=None):
    """The layouts of a window as (combination index, DP) rows, in combination order, DP rising;
    DPs below ``dp_floor`` (per combination) and combinations outside ``only`` (a mask) left
    out; and whether the window had any row without those. ``per_combo``: the combinations'
    ``(TP CP PP, DP step, DP limit)`` when the caller has them."""
    base, step, dp_max = per_combo or _per_combo(combos, batch, pinned)
    if "dp" in pinned:
        dp_lo = np.full_like(base, pinned["dp"])
        dp_hi = np.where((dp_lo * base >= n_lo) & (dp_lo * base < n_hi), dp_max, 0)
    else:
        dp_lo = -(-np.maximum(1, -(-n_lo // base)) // step) * step
        dp_hi = np.minimum(dp_max, (-(-n_hi // base) - 1) // step * step)
    if "global_batch" in pinned and "dp" not in pinned:
        dp_hi = np.minimum(dp_hi, dp_max)
    counts = np.maximum((dp_hi - dp_lo) // step + 1, 0) * (dp_hi >= dp_lo) * (dp_hi > 0)
    had_rows = bool(counts.any())
    if (dp_floor is not None or only is not None) and had_rows:
        if only is not None:
            dp_hi = np.where(only, dp_hi, 0)
        if dp_floor is not None and "dp" in pinned:
            dp_hi = np.where(dp_lo >= dp_floor, dp_hi, 0)
        elif dp_floor is not None:
            dp_lo = np.maximum(dp_lo, -(-dp_floor // step) * step)
        counts = np.maximum((dp_hi - dp_lo) // step + 1, 0) * (dp_hi >= dp_lo) * (dp_hi > 0)
    total = int(counts.sum())
    idx = np.repeat(np.arange(len(base)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return idx, dp_lo[idx] + offsets * step[idx], had_rows


def _per_combo(combos, batch, pinned):
    """``(TP CP PP, DP step, DP limit)`` of each combination."""
    step = dp_step(combos)
    return combos["tp"] * combos["cp"] * combos["pp"], step, dp_limit(combos, batch, pinned, step)


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
    per_rank = dp * combos["mb"]
    gb = np.full_like(dp, batch) if "global_batch" in pinned else (batch // per_rank) * per_rank
    return LayoutGrid(tp=combos["tp"], pp=combos["pp"], dp=dp, cp=combos["cp"], ep=combos["ep"], etp=combos["etp"],
                      zero=combos["zero"], fsdp=combos["fsdp"], mb=combos["mb"], v=combos["v"], rc=combos["rc"],
                      rl=combos["rl"], batch=gb)


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
    pins = _check_pinned(pinned or {}, model, o)
    batch = pins.get("global_batch", model.batch_sequences)
    deadline_s = float(deadline_days) * 86400.0
    if pins.get("zero") == 4 and not o.flexible_sharding:
        raise InputError("zero", "stage 4 (hierarchical ZeRO-3) needs flexible sharding")
    per_rank = pins.get("dp", 1) * pins.get("microbatch", 1)
    if per_rank > batch:
        raise InputError("global_batch" if "global_batch" in pins else "dp",
                         f"dp x microbatch ({per_rank}) exceeds the global batch of {batch} sequences")
    cand = _candidates(model, system, o, c, pins, batch, pipeline_split)
    all_combos = cand.all_combos
    combos, t_max, t_sum, best_bound, any_fit, sizes = _prune(cand, pins, deadline_s)
    if not any_fit:
        where = f" at {pins['devices']} devices" if "devices" in pins else ""
        raise InfeasibleError(
            f"{model.name} does not fit in {system.device.hbm_gb:g} GB per device under any allowed layout{where} "
            f"(up to TP={max(_tp_options(model, system, o.legacy))}, PP={model.n_layers}, ZeRO-3, full recompute)",
            "memory")
    if len(combos["tp"]) == 0:
        raise _deadline_error(deadline_days, batch, best_bound / 86400, None, bound_only=True)
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


@dataclass
class _Walk:
    found: tuple | None = None
    evaluated: int = 0
    best_seen: tuple = (math.inf, 0)
    any_layout: bool = False
    n_stop: int = 0


NO_BEST = (math.inf, 0, 0, 0, 0)  # (duration, window, combination, DP, devices) of the fastest fitting layout
MARGIN = 1 - 1e-9  # bounds are compared after this factor: rounding never drops a layout that matters


def _windows(n_lo: int, n_stop: int):
    """Windows ``[n_lo, n_hi)`` of device counts, each 1.5x (at least 64 more) the last."""
    while n_lo < n_stop:
        n_hi = min(n_stop, max(int(n_lo * 1.5), n_lo + 64))
        yield n_lo, n_hi
        n_lo = n_hi


class _RowBounds:
    """Lower bounds of a window's layouts, from their combination's stage times (see _prune).

    ``loose``: ``tokens / B x (m t_max + (S - t_max) / v)``, the first branch of the
    pipeline time; it defines which layouts the search considers (and whose fastest a failed
    search reports). ``tight``: the whole pipeline time ``max(that, S + (m - 1) t_max / v)``;
    no layout is faster, so layouts above the deadline or above the fastest found so far are
    never evaluated.
    """

    def __init__(self, combos, t_max, t_sum, batch, pins, min_steps, deadline_s, per_combo):
        self.combos, self.t_max, self.t_sum, self.batch, self.pins = combos, t_max, t_sum, batch, pins
        self.min_steps, self.deadline_s = min_steps, deadline_s
        self.per_combo = per_combo
        # The loose bound is at least min_steps t_max / (DP mb): DPs under this floor are never built.
        self.floor = _dp_floor(min_steps * t_max / combos["mb"], deadline_s)
        # The tight bound is at least min_steps S / B (S + (m - 1) t_max / v >= S, and m DP mb <= B) ...
        self.least = min_steps * t_sum / batch * MARGIN
        # ... and at least min_steps (t_max / (DP mb) + (S - t_max) / (v B)).
        self.rest = min_steps * (t_sum - t_max) / (combos["v"] * batch)

    def rows(self, n_lo, n_hi, cap=math.inf):
        """``(combination index, DP, tight bound, any layout in the window)`` of the rows whose
        loose bound meets the deadline, leaving out combinations whose every row's tight bound
        exceeds ``cap``."""
        c, pins = self.combos, self.pins
        only, floor = None, self.floor
        if math.isfinite(cap):
            room = cap / MARGIN - self.rest
            only = (self.least <= cap) & (room > 0)
            floor = np.maximum(floor, _dp_floor(self.min_steps * self.t_max / c["mb"], np.where(only, room, 1.0)))
        idx, dp, had_rows = _window_rows(c, n_lo, n_hi, self.batch, pins, floor, only, self.per_combo)
        per_rank = dp * c["mb"][idx]  # sized as _combo_grid sizes it
        gb = np.full_like(dp, self.batch) if "global_batch" in pins else (self.batch // per_rank) * per_rank
        m = -(-gb // per_rank)
        tm, ts, v = self.t_max[idx], self.t_sum[idx], c["v"][idx]
        loose = self.min_steps / gb * (m * tm + (ts - tm) / v)
        keep = np.flatnonzero(loose <= self.deadline_s)
        gb, m, tm, ts, v = gb[keep], m[keep], tm[keep], ts[keep], v[keep]
        tight = self.min_steps / gb * np.maximum(m * tm + (ts - tm) / v, ts + (m - 1) * tm / v)
        return idx[keep], dp[keep], tight * MARGIN, had_rows


def _walk_windows(model, system, o, c, combos, t_max, t_sum, batch, pins, deadline_s, sizes=None) -> _Walk:
    """Windows of device counts upward from ``N_ideal``: the first one with a layout that fits
    and meets the deadline (any that fits, with ``devices`` pinned).

    Inside a window the layouts that may meet the deadline are evaluated in order of device
    count, in growing chunks, and the walk stops at the first chunk with a good layout: every
    layout with fewer devices has been evaluated by then. When none is good, the fastest
    fitting layout of all windows is found by branch and bound (:func:`_fastest_fitting`).
    """
    sizes = sizes or _per_combo(combos, batch, pins)
    if "devices" in pins:
        return _walk_pinned(model, system, o, c, combos, batch, pins, sizes)
    n_lo = ideal_devices(model, system, deadline_s, o)
    n_stop = int((sizes[0] * np.maximum(sizes[2], 1)).max()) + 1
    walk = _Walk(n_stop=n_stop)
    bounds = _RowBounds(combos, t_max, t_sum, batch, pins, model.train_tokens / model.seq_len, deadline_s, sizes)
    if EXHAUSTIVE_WALK:
        return _walk_exhaustive(model, system, o, c, bounds, n_lo, walk)
    best = NO_BEST
    for w, (lo, hi) in enumerate(_windows(n_lo, n_stop)):
        idx, dp, tight, had_rows = bounds.rows(lo, hi, deadline_s)
        walk.any_layout |= had_rows
        may = np.flatnonzero(tight <= deadline_s)
        if len(may):
            best = _walk_window(model, system, o, c, combos, idx[may], dp[may], w, batch, pins, deadline_s, walk,
                                best)
            if walk.found is not None:
                return walk
    best = _fastest_fitting(model, system, o, c, bounds, n_lo, n_stop, best, walk)
    walk.best_seen = (best[0], best[4])
    return walk


def _dp_floor(need, room) -> np.ndarray:
    """Smallest DP with ``need / DP <= room``, less a margin for rounding (never above the true one)."""
    return np.floor(np.minimum(need / room * MARGIN, 2.0**62)).astype(np.int64)


EXHAUSTIVE_WALK = False  # tests: evaluate every layout of every window (the reference the fast walk must equal)


def _walk_exhaustive(model, system, o, c, bounds: _RowBounds, n_lo, walk: _Walk) -> _Walk:
    """The walk without its shortcuts: every (loose-bound) layout of each window is evaluated;
    the first window with a good layout gives its fewest devices, else the fastest fitting."""
    combos, best = bounds.combos, NO_BEST
    for w, (lo, hi) in enumerate(_windows(n_lo, walk.n_stop)):
        idx, dp, _, had_rows = bounds.rows(lo, hi)
        walk.any_layout |= had_rows
        if len(idx) == 0:
            continue
        dur, ok = _evaluate_rows(model, system, o, c, combos, idx, dp, bounds.batch, bounds.pins)
        walk.evaluated += len(idx)
        devices = (combos["tp"] * combos["cp"] * combos["pp"])[idx] * dp
        good = ok & (dur <= bounds.deadline_s)
        if good.any():
            walk.found = (None, None, None, None, int(devices[good].min()))
            return walk
        best = _better(best, dur, ok, w, idx, dp, devices)
    walk.best_seen = (best[0], best[4])
    return walk


def _walk_pinned(model, system, o, c, combos, batch, pins, sizes) -> _Walk:
    """Every layout at the pinned device count (the deadline is not a constraint then)."""
    walk = _Walk(n_stop=pins["devices"] + 1)
    grid = grid_for_devices(combos, pins["devices"], pins["devices"] + 1, batch, pins, per_combo=sizes)
    if len(grid) == 0:
        return walk
    walk.any_layout = True
    res = _evaluate_chunked(model, system, grid, o, c)
    walk.evaluated += len(grid)
    dur, ok = durations(model, res), res.fits
    if ok.any():
        i = int(np.argmin(np.where(ok, dur, np.inf)))
        walk.best_seen = (float(dur[i]), int(grid.devices[i]))
        walk.found = (grid, res, dur, ok, int(grid.devices[i]))
    return walk


WALK_CHUNK = 2048  # first chunk of a window; each next one doubles (per-call overhead vs wasted work)


def _evaluate_rows(model, system, o, c, combos, idx, dp, batch, pins):
    """Durations and memory fit of the layouts (combination ``idx``, ``dp``)."""
    grid = _combo_grid({k: v[idx] for k, v in combos.items()}, dp, batch, pins)
    res = _evaluate_chunked(model, system, grid, o, c)
    return durations(model, res), res.fits


def _better(best: tuple, dur, ok, w, idx, dp, devices) -> tuple:
    """``best`` or the fastest fitting row, whichever is first in (duration, window, combination,
    DP) order: the order in which evaluating whole windows one after another would find them."""
    cand = np.flatnonzero(ok)
    if len(cand) == 0:
        return best
    w = np.broadcast_to(w, dur.shape)
    j = cand[np.lexsort((dp[cand], idx[cand], w[cand], dur[cand]))[0]]
    return min(best, (float(dur[j]), int(w[j]), int(idx[j]), int(dp[j]), int(devices[j])))


def _walk_window(model, system, o, c, combos, idx, dp, w, batch, pins, deadline_s, walk: _Walk, best) -> tuple:
    """Evaluate one window's layouts by device count until one fits and meets the deadline.

    Sets ``walk.found`` (only its device count is used) when one does; returns ``best``
    updated with the fastest fitting layout evaluated.
    """
    devices = (combos["tp"] * combos["cp"] * combos["pp"])[idx] * dp
    order = np.argsort(devices, kind="stable")
    start, size = 0, WALK_CHUNK
    while start < len(order):
        pos = order[start:start + size]
        start, size = start + len(pos), 2 * size
        dur, ok = _evaluate_rows(model, system, o, c, combos, idx[pos], dp[pos], batch, pins)
        walk.evaluated += len(pos)
        good = ok & (dur <= deadline_s)
        if good.any():
            walk.found = (None, None, None, None, int(devices[pos][good].min()))
            return best
        best = _better(best, dur, ok, w, idx[pos], dp[pos], devices[pos])
    return best


GROW = 1.5  # each pass of the branch and bound, while nothing fits yet, looks this much further


def _fastest_fitting(model, system, o, c, bounds: _RowBounds, n_lo, n_stop, best, walk: _Walk) -> tuple:
    """The fastest fitting layout among all windows' (loose-bound) layouts, when none meets the
    deadline: branch and bound over the tight bound, starting from the walk's ``best``.

    Layouts with a tight bound up to ``lo`` have been evaluated; each pass evaluates, in
    bound order, those up to ``cap`` until the next bound exceeds the best duration found,
    and stops once the best is below ``cap``. While nothing fits, ``cap`` grows geometrically
    up to a bound no layout exceeds.
    """
    combos, lo = bounds.combos, bounds.deadline_s
    tm, ts, mb, B = bounds.t_max, bounds.t_sum, combos["mb"], bounds.batch
    # No layout's pipeline time exceeds (m t_max + S) per step, m <= B + 1 microbatches of >= mb sequences.
    ceiling = float(np.max(bounds.min_steps * np.maximum((tm + ts) / mb, ((B + 1) * tm + ts) / B)))
    cap = best[0] if math.isfinite(best[0]) else lo * GROW
    while True:
        parts = []
        for w, (a, b) in enumerate(_windows(n_lo, n_stop)):
            idx, dp, tight, _ = bounds.rows(a, b, cap)
            sel = np.flatnonzero((tight > lo) & (tight <= cap))
            parts.append((np.full(len(sel), w), idx[sel], dp[sel], tight[sel]))
        w, idx, dp, tight = (np.concatenate(x) for x in zip(*parts))
        order = np.argsort(tight, kind="stable")
        start, size = 0, WALK_CHUNK
        while start < len(order) and tight[order[start]] <= best[0]:
            pos = order[start:start + size]
            start, size = start + len(pos), 2 * size
            dur, ok = _evaluate_rows(model, system, o, c, combos, idx[pos], dp[pos], bounds.batch, bounds.pins)
            walk.evaluated += len(pos)
            devices = (combos["tp"] * combos["cp"] * combos["pp"])[idx[pos]] * dp[pos]
            best = _better(best, dur, ok, w[pos], idx[pos], dp[pos], devices)
        if best[0] <= cap or cap >= ceiling:  # every layout that could be faster has been evaluated
            return best
        lo, cap = cap, (best[0] if math.isfinite(best[0]) else cap * GROW)


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
        return InfeasibleError(f"no allowed layout fits in memory at {pins['devices']} devices", "memory")
    if not walk.any_layout and walk.best_seen[1] == 0:
        ideal = ideal_devices(model, system, deadline_s, o)
        if ideal >= walk.n_stop:
            return InfeasibleError(
                f"no device count meets the {deadline_days:g}-day deadline: even at peak throughput it needs "
                f"{ideal:,} devices, more than the largest allowed layout ({walk.n_stop - 1:,} devices; the critical "
                f"batch of {batch} sequences caps data parallelism)", "deadline",
                {"ideal_devices": ideal, "max_devices": walk.n_stop - 1, "best_duration_days": best_bound / 86400})
    best_days = walk.best_seen[0] / 86400 if walk.best_seen[1] else None
    return _deadline_error(deadline_days, batch, best_bound / 86400,
                           walk.best_seen[1] and (best_days, walk.best_seen[1]))


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
    return SearchResult(
        model=model, system=system, options=o,
        layout=grid.layout(i, res.recompute_layers[i]), step=res.take(i), duration_s=float(dur[i]),
        mfu=float(model_flops_utilization(model, system, devs[i], dur[i], o.gemm_precision)), deadline_s=deadline_s,
        median_layout=grid.layout(j, res.recompute_layers[j]), median_duration_s=float(dur[j]),
        median_mfu=float(model_flops_utilization(model, system, devs[j], dur[j], o.gemm_precision)),
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
    mfu = model_flops_utilization(model, system, devs, dur, o.gemm_precision)
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
