"""The layout space of the search (stage 3b): which layout parts it tries, as arrays.

Inner combinations (every part but DP) from the model and the pins (:func:`inner_combos`), the
DPs a combination allows (:func:`dp_step`, :func:`dp_limit`), the layouts of a window of device
counts (:func:`grid_for_devices`), and Algorithm 1's start (:func:`ideal_devices`). The rules
are listed in :mod:`carbonscaling.search`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .hardware import System
from .perf.layout import RECOMPUTE_MODES, RL_ALL, RL_AUTO, LayoutGrid, TrainingOptions
from .perf.pipeline import interleave_options
from .perf.step import StepResult
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
# Megatron needs global batch = DP x microbatch x microbatches (whole microbatches per rank), so a
# searched layout rounds the requested batch down to a multiple of DP x mb. The search keeps that
# rounding within this share of the requested (critical or published) batch when any layout allows it
# (a convention, not a world constant: a recipe whose batch differs more is a different recipe);
# cs-v1 (the papers) and pinned DP / global batch keep the plain rounding (docs/performance.md).
BATCH_SHRINK_MAX = 0.10


def batch_floor(batch: int, pinned: dict, legacy: bool) -> int:
    """Smallest global batch (sequences) the search may round ``batch`` down to; 0: no floor
    (``ep_convention='cs-v1'``, or DP or the global batch pinned)."""
    if legacy or "dp" in pinned or "global_batch" in pinned:
        return 0
    return math.ceil(round((1.0 - BATCH_SHRINK_MAX) * batch, 6))


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


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
    if o.cpu_offload_layers:  # Megatron-Core refuses pipeline parallelism and recompute with CPU offloading
        pps = [1]
    mbs = [pinned["microbatch"]] if "microbatch" in pinned else list(MICROBATCHES)
    zs = [pinned["zero"]] if "zero" in pinned else (list(ZERO_STAGES if legacy else ZERO_STAGES_MEGATRON)
                                                    + ([4] if o.flexible_sharding else []))
    fs = [pinned.get("fsdp", 0)]
    rcs = [(0, RL_ALL)] if o.cpu_offload_layers else _recompute_options(pinned, o)
    # Megatron-Core's EP all-to-all overlap needs interleaving with pipelining (TransformerConfig asserts
    # virtual_pipeline_model_parallel_size with pipeline_model_parallel_size > 1; search.check_ep_overlap)
    no_vp1 = o.overlap_ep_comm and model.is_moe and not legacy
    vps = {p: [v for v in ([pinned["vp"]] if "vp" in pinned else interleave_options(model.n_layers, p, legacy))
               if (v == 1 or p > 1) and not (no_vp1 and p > 1 and v == 1)] for p in pps}
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
    dp = dp_lo[idx] + offsets * step[idx]
    if pinned.get("min_batch"):  # search.search's batch floor (BATCH_SHRINK_MAX), sized as _combo_grid sizes it
        per_rank = dp * combos["mb"][idx]
        keep = np.flatnonzero((batch // per_rank) * per_rank >= pinned["min_batch"])
        idx, dp = idx[keep], dp[keep]
    return idx, dp, had_rows


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


def model_flops_utilization(model: ModelSpec, system: System, devices, duration_s, precision: str = "bf16",
                            convention: str = "megatron"):
    """MFU against the dense peak of the precision the GEMMs run in (so it stays <= 1 with FP8),
    model FLOPs counted under ``convention`` (:func:`carbonscaling.mfu.model_flops`)."""
    from .mfu import model_flops

    return model_flops(model, convention) / (np.asarray(duration_s) * devices * system.device.peak_flops(precision))


# ---- the search ----------------------------------------------------------------------
def _combo_grid(combos: dict[str, np.ndarray], dp: np.ndarray, batch: int, pinned: dict) -> LayoutGrid:
    """Layouts from inner combinations and DPs; the global batch is the pinned one, or the
    critical batch rounded down to whole microbatches per data-parallel rank."""
    per_rank = dp * combos["mb"]
    gb = np.full_like(dp, batch) if "global_batch" in pinned else (batch // per_rank) * per_rank
    return LayoutGrid(tp=combos["tp"], pp=combos["pp"], dp=dp, cp=combos["cp"], ep=combos["ep"], etp=combos["etp"],
                      zero=combos["zero"], fsdp=combos["fsdp"], mb=combos["mb"], v=combos["v"], rc=combos["rc"],
                      rl=combos["rl"], batch=gb)
