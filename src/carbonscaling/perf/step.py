"""The step-time model: one training step of a layout, assembled from kernel and link times.

:func:`evaluate` takes a model, a system, a :class:`LayoutGrid` and options, and returns
a :class:`StepResult` whose fields are arrays (one entry per layout): the step time and
its exposed parts (compute, TP/CP/PP/DP/EP communication, bubble, optimizer, overlap
slowdown) and per-device memory. It wires four models, each a small function of its own:
the layer (:func:`.layer.layer_times`, its sublayers in :mod:`.sublayers`), the pipeline
stages and schedule (:func:`stage_times`, the embedding, output layer and MTP modules of
:mod:`.ends`, :func:`.pipeline.pipeline_time`, :func:`.pipeline.pipeline_send_time`), the data-parallel / ZeRO / FSDP collectives
(:func:`.data_parallel.data_parallel_time`) and the optimizer step. docs/performance.md
walks through them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..hardware import System
from ..scaling import ModelSpec
from . import kernels as K
from .activations import activation_bytes_per_layer
from .comm import p2p_time
from .constants import PerfConstants, default_constants
from .data_parallel import data_parallel_time
from .ends import ends_times, mtp_time  # noqa: F401  (mtp_time: re-exported)
from .ep_overlap import ep_overlap_ramp_time, ep_overlap_slowdown
from .layer import LayerTimes, per_layer
from .layout import LayoutGrid, TrainingOptions
from .memory import Memory, memory_per_device
from .offload import offload_times
from .pipeline import pipeline_send_time, pipeline_time, stage_plan
from .pipeline_cost import stage_cost_weights

# The layer model lived here until it grew (stop 16): its names stay importable from perf.step.
from .layer import (_block_parts, _collectives, _overlap_parts, _per_layer,  # noqa: F401
                    layer_times, selective_recompute_time)
from .sublayers import (_attention, _busiest_rank, _ffn, _mamba, _mlp, _routed_experts,  # noqa: F401
                        _unfused_expert_extras)


@dataclass(frozen=True)
class StepResult:
    step_time_s: np.ndarray
    compute_s: np.ndarray          # compute on the critical path (pipeline-steady part)
    bubble_s: np.ndarray           # pipeline fill/drain
    tp_comm_s: np.ndarray          # exposed tensor-parallel collectives (inside compute path)
    pp_comm_s: np.ndarray          # point-to-point sends between stages
    ep_comm_s: np.ndarray          # expert all-to-all
    dp_comm_s: np.ndarray          # exposed data-parallel / ZeRO communication
    optimizer_s: np.ndarray
    overlap_slowdown_s: np.ndarray
    global_batch_sequences: np.ndarray
    microbatches: np.ndarray
    stage_max_s: np.ndarray        # slowest stage, one microbatch forward + backward
    stage_sum_s: np.ndarray        # all stages, one microbatch forward + backward
    mem_weights_gb: np.ndarray
    mem_grads_gb: np.ndarray
    mem_optimizer_gb: np.ndarray
    mem_activations_gb: np.ndarray
    mem_total_gb: np.ndarray
    fits: np.ndarray
    cp_comm_s: np.ndarray = None   # exposed context-parallel K/V ring exchange
    recompute_layers: np.ndarray = None  # recomputed layers per (virtual) stage under full recompute
    host_s: np.ndarray = None      # GPU idle waiting for kernel launches (no CUDA graphs; perf/host.py)
    offload_s: np.ndarray = None   # GPU waiting for activation CPU-offloading copies (perf/offload.py)

    def take(self, idx) -> StepResult:
        """The results of the layouts at ``idx``.

        Parameters
        ----------
        idx : int array, bool mask or slice
            Numpy index (as for :meth:`LayoutGrid.take`).

        Returns
        -------
        StepResult
            Every field indexed.
        """
        return StepResult(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def stage_times(model, system, g, o, c, lt: LayerTimes, split, recomputed, offload=None, dense=None):
    """Per-microbatch (first, middle, last) stage times, their max and sum, and the pieces.

    The first stage also runs the embedding, the last the output layer, cross-entropy and
    any MTP modules; each stage sends activations to its neighbour forward and backward,
    per microbatch and virtual stage (``T h / TP`` bytes per rank, Megatron's
    scatter/gather), over NVLink only if the whole pipeline fits in one scale-up domain.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    system : System
        Device, scale-up domain and network.
    g : LayoutGrid
        The layouts (arrays).
    o : TrainingOptions
        Precision, overlap, attention and recompute options.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    lt : LayerTimes
        Per-layer times (:func:`.layer.per_layer`).
    split : tuple of ndarray
        Layers on the (first, middle, last) stage (:func:`.pipeline.stage_layers`).
    recomputed : tuple of ndarray
        Fully recomputed layers on those stages.
    offload : tuple of ndarray, optional
        The exposed and hidden activation CPU-offloading copies of one microbatch
        (``_offload_times``; computed here when omitted).
    dense : tuple of ndarray, optional
        The model's leading dense-FFN layers on those stages (:func:`.pipeline.stage_plan`);
        a stage's layers cost the dense/MoE average (``lt.time0``) moved by the dense layers it
        holds beyond its share (``lt.moe_minus_dense0`` each). Default: every stage its share.

    Returns
    -------
    t_first, t_max, t_sum, p2p, ends, r_total, p2p_hidden : ndarray
        Seconds for one microbatch (forward + backward): the first stage, the slowest stage,
        all stages in sequence, the first stage's exposed stage-boundary sends
        (:func:`.pipeline.pipeline_send_time`), the embedding + output layer + MTP; the recomputed
        layers summed over stages (count); and the first stage's sends and activation CPU-offloading
        copies hidden under compute (:mod:`.offload`; the exposed copies are in the first stage's time).
    """
    emb, head, mtp = ends_times(model, system.device, g, o, c, lt)
    tokens = g.tokens(model.seq_len)
    act_bytes = tokens * model.d_model * o.activation_bytes / g.tp.astype(float)
    send = np.where(g.pp > 1, p2p_time(act_bytes, g.tp * g.cp * g.dp, g.pp, system, c), 0.0)
    overlap = (g.v > 1) & (o.overlap_pp_comm and not o.legacy)
    n_first, n_mid, n_last = split
    r_first, r_mid, r_last = recomputed
    d_first, d_mid, d_last = dense if dense is not None else (None, None, None)
    L, lead = model.n_layers, min(model.first_dense_layers, model.n_layers)
    f_dense = model.n_dense_layers / L if not model.is_hybrid else 0.0
    f_rest = (model.n_dense_layers - lead) / max(L - lead, 1) if not model.is_hybrid else 0.0

    def stage(n, r, d=None):
        t = n * lt.time0 + r * lt.extra
        if d is None or not f_dense:
            return t
        # dense layers on this stage: its leading ones plus the interleaved share of the rest
        return t + (n * f_dense - (d + (n - d) * f_rest)) * lt.moe_minus_dense0

    off_exposed, off_hidden = _offload_times(model, system, g, o, lt) if offload is None else offload
    c_first = stage(n_first, r_first, d_first) + emb + np.where(g.pp == 1, head + mtp, 0.0) + off_exposed
    c_last = stage(n_last, r_last, d_last) + head + mtp
    c_mid = stage(n_mid, r_mid, d_mid)
    p_first, p_last, p_mid = (pipeline_send_time(send, cs, g.v, overlap) for cs in (c_first, c_last, c_mid))
    t_first = c_first + p_first
    t_last = np.where(g.pp > 1, c_last + p_last, 0.0)
    t_mid = np.where(n_mid > 0, c_mid + p_mid, 0.0)
    t_max = np.maximum(np.maximum(t_first, t_last), t_mid)
    n_middle = np.maximum(g.pp - 2, 0)
    r_total = r_first + np.where(g.pp > 1, r_last, 0) + n_middle * r_mid
    # (without overlap every stage sends alike: pp x the same time, summed in the same order as ever)
    p_sum = np.where(overlap, p_first + np.where(g.pp > 1, p_last, 0.0) + n_middle * p_mid, g.pp * p_first)
    t_sum = model.n_layers * lt.time0 + r_total * lt.extra + emb + head + mtp + p_sum + off_exposed
    return t_first, t_max, t_sum, p_first, emb + head + mtp, r_total, 2.0 * g.v * send - p_first + off_hidden


def _offload_times(model, system, g, o, lt):
    """Exposed and hidden activation CPU-offloading copies of one microbatch (:mod:`.offload`); the
    search runs offloading at PP 1 without recompute only (Megatron-Core), other layouts get none."""
    if not o.cpu_offload_layers or system.device.host_link_gb_s is None:
        return 0.0, 0.0
    full = activation_bytes_per_layer(model, g, o)[1]
    exposed, hidden = offload_times(full, system.device.host_link_gb_s, o.cpu_offload_layers, model.n_layers,
                                    lt.time0 - lt.bwd0, lt.bwd0)
    on = (g.pp == 1) & (g.rc == 0)
    return np.where(on, exposed, 0.0), np.where(on, hidden, 0.0)


def evaluate(model: ModelSpec, system: System, g: LayoutGrid, opts: TrainingOptions | None = None,
             consts: PerfConstants | None = None) -> StepResult:
    """Step time, its breakdown and memory per device for every layout in ``g``.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    system : System
        Device, scale-up domain and network.
    g : LayoutGrid
        The layouts to evaluate.
    opts : TrainingOptions, optional
        Training options (default: ``TrainingOptions()``).
    consts : PerfConstants, optional
        Performance constants (default: :func:`.constants.default_constants`).

    Returns
    -------
    StepResult
        Arrays, one entry per layout: ``step_time_s`` and its exposed parts in seconds
        (compute, bubble, TP/CP/PP/EP/DP communication, optimizer, overlap slowdown), memory
        per device in GB (1e9 bytes) and ``fits`` (total within the device's HBM, GiB).

    References
    ----------
    Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
    Megatron-LM", SC 2021; docs/performance.md walks through each term.
    """
    o = opts or TrainingOptions()
    c = consts or default_constants()
    m = g.micro.astype(float)
    lt, (n_first, n_mid, n_last), mem, recomputed, times, offload = _stages(model, system, g, o, c)
    t_first, t_max, t_sum, p2p, ends, r_total, p2p_hidden = times
    rl = mem.recompute_layers
    pipeline = pipeline_time(m, t_max, t_sum, g.v)
    bubble = pipeline - m * t_sum / g.pp  # time beyond perfectly balanced, always-busy stages

    stage_bwd = n_first * lt.bwd0 + recomputed[0] * lt.bwd_extra
    dp_exposed, overlapped = _dp_exposed(model, system, g, o, c, mem, t_first, stage_bwd)
    overlapped = overlapped + m * (n_first * lt.overlapped0 + recomputed[0] * lt.overlapped_extra + p2p_hidden)
    ramp, ep_slow, overlapped = _ep_overlap_cost(system, g, o, c, n_first, lt, overlapped)
    slowdown = c.overlap_compute_slowdown * overlapped + ep_slow
    optimizer = _optimizer_time(system, o, c, mem)
    step = pipeline + dp_exposed + optimizer + slowdown + ramp
    share = m / g.pp  # the balanced part of the pipeline, m * t_sum / pp, split by cause
    n_layers = model.n_layers
    return StepResult(
        step_time_s=step,
        compute_s=share * (n_layers * lt.compute0 + r_total * lt.compute_extra + ends),
        host_s=share * (n_layers * lt.host0 + r_total * lt.host_extra) + 0.0 * step,
        offload_s=share * offload[0] + 0.0 * step,
        bubble_s=bubble,
        tp_comm_s=share * (n_layers * lt.tp0 + r_total * lt.tp_extra),
        pp_comm_s=m * p2p,
        ep_comm_s=share * (n_layers * lt.ep0 + r_total * lt.ep_extra) + ramp,
        dp_comm_s=dp_exposed,
        optimizer_s=optimizer,
        overlap_slowdown_s=slowdown,
        global_batch_sequences=g.batch,
        microbatches=g.micro,
        stage_max_s=t_max,
        stage_sum_s=t_sum,
        mem_weights_gb=mem.weights / 1e9,
        mem_grads_gb=mem.grads / 1e9,
        mem_optimizer_gb=mem.optimizer / 1e9,
        mem_activations_gb=mem.activations / 1e9,
        mem_total_gb=mem.total / 1e9,
        fits=_fits(system, mem, n_first),
        cp_comm_s=share * (n_layers * lt.cp0 + r_total * lt.cp_extra),
        recompute_layers=rl,
    )


def _dp_exposed(model, system, g, o, c, mem: Memory, t_first, stage_bwd):
    """``(exposed, hidden)`` data-parallel communication of a step (:func:`.data_parallel.data_parallel_time`).

    The per-step gradient reduction hides under the last microbatch's backward (``stage_bwd``)
    but for its last bucket when ``overlap_grad_reduce``; per-microbatch collectives (ZeRO-3 /
    FSDP gathers) hide under the first stage's microbatch time ``t_first``.
    """
    m = g.micro.astype(float)
    per_step, per_mb = data_parallel_time(model, system, g, o, c, mem)
    if o.overlap_grad_reduce:  # hidden under the last microbatch's backward, but for the last bucket
        last_bucket = per_step * np.minimum(1.0, c.grad_bucket_params / np.maximum(mem.params_dense + mem.params_expert, 1.0))
        step_exposed = np.maximum(last_bucket, per_step - stage_bwd)
    else:
        step_exposed = per_step
    mb_exposed = m * np.maximum(0.0, per_mb - t_first)
    return step_exposed + mb_exposed, (per_step - step_exposed) + m * np.minimum(per_mb, t_first)


def _ep_overlap_cost(system, g, o, c, n_first, lt: LayerTimes, overlapped):
    """``(ramp, slowdown, overlapped)`` of Megatron-Core's EP overlap (:mod:`.ep_overlap`): the exposed
    warm-up and cool-down, the SMs the hidden all-to-alls take from the paired compute, and the
    communication hidden under compute less those all-to-alls (priced by the SM slowdown instead).
    The papers' convention (cs-v1) has none of these."""
    m = g.micro.astype(float)
    ramp = ep_overlap_ramp_time(g.pp, o.overlap_ep_comm and not o.legacy, n_first, lt.ep_hidden0)  # cs-v1: none
    ep_hidden = m * n_first * lt.ep_hidden0
    if not (o.overlap_ep_comm and not o.legacy):
        return ramp, 0.0, overlapped
    # The hidden all-to-all's kernels hold SMs the paired compute loses (perf/ep_overlap.py): DeepEP/HybridEP
    # their configured SMs, NCCL's all-to-all (alltoall dispatcher) one block per point-to-point channel
    sms = c.ep_comm_sms if o.moe_dispatcher == "flex" else c.nccl_p2p_channels
    ep_slow = ep_overlap_slowdown(np.maximum(0.0, ep_hidden - ramp), system.device.compute_units, sms)
    return ramp, ep_slow, overlapped - ep_hidden


def _optimizer_time(system: System, o: TrainingOptions, c: PerfConstants, mem: Memory):
    """The optimizer step (memory-bound Adam over this device's optimizer shard) and, in quantized
    recipes, the cast of the updated weights (and their transposed copies) once per step:
    Transformer Engine reuses them over the step's microbatches."""
    optimizer = K.memory_bound_time(c.adam_bytes_per_param_step * mem.optimizer_params, system.device, c)
    return optimizer + K.quantize_time(mem.params_dense + mem.params_expert, o.gemm_precision, system.device, c,
                                       weight=True)


def _fits(system: System, mem: Memory, n_first) -> np.ndarray:
    fits = (mem.total <= system.device.hbm_gb * 2**30) & (n_first >= 0)  # vendors' HBM "GB" are GiB
    host = system.device.host_dram_gb  # CPU offloading: the offloaded activations fit in host memory
    return fits if host is None else fits & (mem.host_activations <= host * 1e9)


def _stages(model, system, g, o, c, times: bool = True):
    """What :func:`evaluate` builds the step from: layer times, stage layer counts, memory,
    recomputed layers per stage, :func:`stage_times` and the exposed and hidden CPU-offloading
    copies it was given (``times=False``: memory only)."""
    n, dense = stage_plan(model.n_layers, g.pp, g.v, legacy=o.legacy, layout=o.pipeline_layout,
                          mtp_layers=model.mtp_layers, leading_dense=0 if o.legacy else model.first_dense_layers,
                          cost_weights=stage_cost_weights(model) if o.pipeline_balance == "cost" else None)
    mem = memory_per_device(model, system, g, o, c, n[0], n[2], n[1])
    if not times:
        return None, n, mem, None, None, None
    lt = per_layer(model, system, g, o, c)
    rl = mem.recompute_layers
    recomputed = tuple(np.where(g.rc == 2, np.minimum(k, g.v * rl), 0) for k in n)
    offload = _offload_times(model, system, g, o, lt)
    times = stage_times(model, system, g, o, c, lt, n, recomputed, offload, None if o.legacy else dense)
    return lt, n, mem, recomputed, times, offload


def memory_fit(model: ModelSpec, system: System, g: LayoutGrid, opts: TrainingOptions | None = None,
               consts: PerfConstants | None = None):
    """:func:`evaluate`'s ``fits`` and ``recompute_layers`` alone (the search's memory pruning).

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    system : System
        Device, scale-up domain and network.
    g : LayoutGrid
        The layouts.
    opts : TrainingOptions, optional
        Training options (default: ``TrainingOptions()``).
    consts : PerfConstants, optional
        Performance constants (default: :func:`.constants.default_constants`).

    Returns
    -------
    fits : numpy.ndarray
        Whether each layout fits in the device's HBM.
    recompute_layers : numpy.ndarray
        Recomputed layers per (virtual) stage under full recompute.
    """
    o, c = opts or TrainingOptions(), consts or default_constants()
    _, n, mem, _, _, _ = _stages(model, system, g, o, c, times=False)
    return _fits(system, mem, n[0]), mem.recompute_layers


def stage_bounds(model: ModelSpec, system: System, g: LayoutGrid, opts: TrainingOptions | None = None,
                 consts: PerfConstants | None = None):
    """:func:`evaluate`'s ``stage_max_s``, ``stage_sum_s`` and ``fits`` alone (the search's bounds).

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    system : System
        Device, scale-up domain and network.
    g : LayoutGrid
        The layouts.
    opts : TrainingOptions, optional
        Training options (default: ``TrainingOptions()``).
    consts : PerfConstants, optional
        Performance constants (default: :func:`.constants.default_constants`).

    Returns
    -------
    stage_max_s : numpy.ndarray
        Slowest stage, one microbatch forward and backward (s).
    stage_sum_s : numpy.ndarray
        All stages, one microbatch forward and backward (s).
    fits : numpy.ndarray
        Whether each layout fits in the device's HBM.
    """
    o, c = opts or TrainingOptions(), consts or default_constants()
    _, n, mem, _, times, _ = _stages(model, system, g, o, c)
    return times[1], times[2], _fits(system, mem, n[0])
