"""The step-time model: one training step of a layout, assembled from kernel and link times.

:func:`evaluate` takes a model, a system, a :class:`LayoutGrid` and options, and
returns a :class:`StepResult` whose fields are arrays (one entry per layout):
the step time and its exposed parts (compute, TP/PP/DP/EP communication, bubble,
optimizer, overlap slowdown) and per-device memory. Every formula is in the
small helpers below; docs/performance.md walks through them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..hardware import System
from ..scaling import ModelSpec
from . import kernels as K
from .comm import all_to_all_time, p2p_time, ring_group
from .constants import PerfConstants, default_constants
from .layout import LayoutGrid, TrainingOptions
from .memory import local_shards, memory_per_device


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

    def take(self, idx) -> StepResult:
        return StepResult(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def _layer_times(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants, moe: bool):
    """Per-microbatch (forward, backward, recompute-extra, tp_comm, ep_comm) of one layer on one device."""
    dev = system.device
    s, h, hd = model.seq_len, model.d_model, model.head_dim
    tp = g.tp.astype(float)
    tokens = g.mb * s
    prec, ib = o.gemm_precision, o.gemm_input_bytes
    sp_div = np.where(o.sequence_parallel & (g.tp > 1), tp, 1.0)

    # Attention projections. KV heads are replicated when TP exceeds their count (GQA).
    q_out = model.n_heads * hd / tp
    kv_out = 2.0 * np.maximum(model.n_kv_heads / tp, 1.0) * hd
    qkv_f, qkv_b = K.linear_fwd_bwd_time(tokens, q_out + kv_out, h, 1, dev, c, prec, ib)
    o_f, o_b = K.linear_fwd_bwd_time(tokens, h, model.n_heads * hd / tp, 1, dev, c, prec, ib)
    heads_batch = g.mb * model.n_heads / tp
    if o.flash_attention:
        at_f, at_b = K.flash_attention_time(heads_batch, s, hd, dev, c)
        at_selective = 0.0 * at_f  # FlashAttention recomputes scores inside its backward already
    else:
        at_f, at_b = K.unfused_attention_time(heads_batch, s, hd, dev, c)
        at_selective = at_f
    gate = 2.0 if model.ffn_gated else 1.0
    ffn_bytes = c.elementwise_fwd_bytes_ffn_gated if model.ffn_gated else c.elementwise_fwd_bytes_ffn

    if not moe:
        up_f, up_b = K.linear_fwd_bwd_time(tokens, gate * model.d_ff / tp, h, 1, dev, c, prec, ib)
        dn_f, dn_b = K.linear_fwd_bwd_time(tokens, h, model.d_ff / tp, 1, dev, c, prec, ib)
        ffn_f, ffn_b = up_f + dn_f, up_b + dn_b
        ffn_width = model.d_ff
        ep_comm = 0.0 * tp
    else:
        k, cf, de = model.top_k, o.capacity_factor, model.d_expert
        ep = g.ep.astype(float)
        local_experts = model.n_experts / ep
        tok_e = tokens * k * cf * ep / model.n_experts  # tokens each local expert receives
        r_f, r_b = K.linear_fwd_bwd_time(tokens / sp_div, model.n_experts, h, 1, dev, c, prec, ib)
        up_f, up_b = K.linear_fwd_bwd_time(tok_e, gate * de / tp, h, local_experts, dev, c, prec, ib)
        dn_f, dn_b = K.linear_fwd_bwd_time(tok_e, h, de / tp, local_experts, dev, c, prec, ib)
        ffn_f, ffn_b = r_f + up_f + dn_f, r_b + up_b + dn_b
        if model.n_shared_experts:
            ws = model.n_shared_experts * de
            su_f, su_b = K.linear_fwd_bwd_time(tokens, gate * ws / tp, h, 1, dev, c, prec, ib)
            sd_f, sd_b = K.linear_fwd_bwd_time(tokens, h, ws / tp, 1, dev, c, prec, ib)
            ffn_f, ffn_b = ffn_f + su_f + sd_f, ffn_b + su_b + sd_b
        ffn_width = (k * cf + model.n_shared_experts) * de
        payload = tokens * k * cf * h * o.activation_bytes / tp
        n_a2a = 4.0 + 2.0 * (g.rc == 2)
        ep_comm = n_a2a * all_to_all_time(payload, g.ep, g.tp, system, c)

    elem_f = K.memory_bound_time(tokens * (c.elementwise_fwd_bytes_hidden * h / sp_div + ffn_bytes * ffn_width / tp), dev, c)
    elem_b = c.elementwise_bwd_to_fwd * elem_f
    fwd = qkv_f + o_f + at_f + ffn_f + elem_f
    bwd = qkv_b + o_b + at_b + ffn_b + elem_b
    recompute = np.where(g.rc == 2, fwd, np.where(g.rc == 1, at_selective, 0.0))

    # Per layer 2 forward + 2 backward all-reduce equivalents (+2 when recomputed): half after
    # attention, half after the FFN. In an MoE layer the FFN half gathers/scatters the routed
    # copies of each token (top-k x capacity factor), as Megatron's token dispatcher does with TP.
    n_half = 2.0 + 1.0 * (g.rc == 2)
    tp_group = ring_group(g.tp, 1, system, c)
    ffn_copies = model.top_k * o.capacity_factor if moe else 1.0
    tp_comm = n_half * (tp_group.time("all_reduce", tokens * h * o.activation_bytes)
                        + tp_group.time("all_reduce", tokens * h * o.activation_bytes * ffn_copies))
    return fwd, bwd, recompute, tp_comm, ep_comm


def _per_layer(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants):
    """Per-layer times, averaged over dense and MoE layers.

    They depend only on (TP, microbatch, EP, recompute), which a search grid repeats
    thousands of times: compute each distinct combination once and index back.
    """
    codes = [np.unique(col, return_inverse=True)[1] for col in (g.tp, g.mb, g.ep, g.rc)]
    key = np.ravel_multi_index(codes, [int(cd.max()) + 1 for cd in codes])
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    sub = g.take(first)
    frac_moe = model.n_moe_layers / model.n_layers
    parts = [_layer_times(model, system, sub, o, c, moe=False)]
    if frac_moe > 0:
        parts.append(_layer_times(model, system, sub, o, c, moe=True))
    weights = [1.0 - frac_moe, frac_moe]
    avg = [sum(w * np.broadcast_to(p[i], uniq.shape) for w, p in zip(weights, parts)) for i in range(5)]
    return tuple(a[inverse] for a in avg)


def _stage_layers(n_layers: int, pp: np.ndarray):
    """Layers on the first, last and heaviest middle stage (extra layers go to middle stages first)."""
    lo, r = n_layers // pp, n_layers % pp
    mids = np.maximum(pp - 2, 0)
    first = lo + (r - np.minimum(r, mids) >= 1)
    mid = lo + ((r > 0) & (mids > 0))
    first = np.where(pp == 1, n_layers, first)
    return first, lo, np.where(mids > 0, mid, 0)


def evaluate(model: ModelSpec, system: System, g: LayoutGrid, opts: TrainingOptions | None = None,
             consts: PerfConstants | None = None) -> StepResult:
    """Step time, its breakdown and memory per device for every layout in ``g``."""
    o = opts or TrainingOptions()
    c = consts or default_constants()
    dev = system.device
    s, h, V = model.seq_len, model.d_model, model.vocab
    tp = g.tp.astype(float)
    m = g.micro.astype(float)
    tokens = g.mb * s

    fwd, bwd, rec, tpc, epc = _per_layer(model, system, g, o, c)
    # Overlapped collectives hide under the layer's own compute (Megatron TP overlap, DeepSeek's
    # DualPipe for the expert all-to-all); whatever exceeds it stays exposed.
    window = fwd + bwd + rec
    tp_exposed = np.maximum(0.0, tpc - window) if o.overlap_tp_comm else tpc
    ep_window = np.maximum(0.0, window - (tpc - tp_exposed))
    ep_exposed = np.maximum(0.0, epc - ep_window) if o.overlap_ep_comm else epc
    layer_time = fwd + bwd + rec + tp_exposed + ep_exposed

    # End stages: embedding lookup on the first, logits + cross-entropy on the last.
    emb = K.memory_bound_time(c.embedding_bytes_per_token_hidden * tokens * h, dev, c)
    lg_f, lg_b = K.linear_fwd_bwd_time(tokens, V / tp, h, 1, dev, c, o.gemm_precision, o.gemm_input_bytes)
    head = lg_f + lg_b + K.memory_bound_time(c.cross_entropy_passes * tokens * V / tp * c.logits_bytes, dev, c)

    act_bytes_pp = tokens * h * o.activation_bytes / tp  # scatter/gather: each TP rank sends its slice
    stride_pp = g.tp * g.ep * g.dp
    p2p = np.where(g.pp > 1, 2.0 * g.v * p2p_time(act_bytes_pp, stride_pp, g.pp, system, c), 0.0)

    n_first, n_last, n_mid = _stage_layers(model.n_layers, g.pp)
    t_first = n_first * layer_time + emb + p2p + np.where(g.pp == 1, head, 0.0)
    t_last = np.where(g.pp > 1, n_last * layer_time + head + p2p, 0.0)
    t_mid = n_mid * layer_time + p2p
    t_max = np.maximum(np.maximum(t_first, t_last), np.where(n_mid > 0, t_mid, 0.0))
    t_sum = model.n_layers * layer_time + emb + head + g.pp * p2p
    # Interleaved 1F1B: (m + (p - 1)/v) stage-times for m >= p. With fewer microbatches than
    # stages, one microbatch's trip through all p*v chunks (plus the others' offsets) binds.
    pipeline = np.maximum(m * t_max + (t_sum - t_max) / g.v, t_sum + (m - 1) * t_max / g.v)
    bubble = pipeline - m * t_sum / g.pp  # time beyond perfectly balanced, always-busy stages

    # Data-parallel / ZeRO communication of the heaviest (first) stage.
    mem = memory_per_device(model, system, g, o, c, n_first, n_last)
    p_dense, p_exp = mem.params_dense, mem.params_expert
    gb = c.grad_reduce_bytes_fp16 if o.precision == "fp16" else c.grad_reduce_bytes_bf16
    wb = o.activation_bytes
    n_d, st_d = g.dp * g.ep, g.tp
    n_e, st_e = g.dp, g.tp * g.ep

    groups = (ring_group(n_d, st_d, system, c), ring_group(n_e, st_e, system, c))

    def coll(kind, nbytes_d, nbytes_e, pair=groups):
        return pair[0].time(kind, nbytes_d) + pair[1].time(kind, nbytes_e)

    ar = coll("all_reduce", p_dense * gb, p_exp * gb)
    rs_ag = coll("reduce_scatter", p_dense * gb, p_exp * gb) + coll("all_gather", p_dense * wb, p_exp * wb)
    # ZeRO-3: gather the weights for forward and backward and reduce-scatter gradients, every microbatch.
    z3_mb = 2.0 * coll("all_gather", p_dense * wb, p_exp * wb) + coll("reduce_scatter", p_dense * gb, p_exp * gb)
    # Hierarchical ZeRO-3 (flexible sharding, LinS / ZeRO++ hpZ): the per-microbatch collectives
    # stay inside the scale-up domain; once per step the local gradient shard is reduce-scattered
    # across domains and the updated weights gathered back.
    loc_d, loc_e = local_shards(g, system)
    local = (ring_group(loc_d, st_d, system, c), ring_group(loc_e, st_e, system, c))
    cross = (ring_group(n_d / loc_d, st_d * loc_d, system, c), ring_group(n_e / loc_e, st_e * loc_e, system, c))
    z4_mb = 2.0 * coll("all_gather", p_dense * wb, p_exp * wb, local) + coll(
        "reduce_scatter", p_dense * gb, p_exp * gb, local)
    z4_step = coll("reduce_scatter", p_dense / loc_d * gb, p_exp / loc_e * gb, cross) + coll(
        "all_gather", p_dense / loc_d * wb, p_exp / loc_e * wb, cross)

    per_mb = np.where(g.zero == 3, z3_mb, np.where(g.zero == 4, z4_mb, 0.0))  # prefetched under compute
    per_step = np.where(g.zero == 0, ar, np.where(g.zero <= 2, rs_ag, np.where(g.zero == 4, z4_step, 0.0)))
    stage_bwd = n_first * (bwd + rec)
    if o.overlap_grad_reduce:  # hidden under the last microbatch's backward, but for the last bucket
        last_bucket = per_step * np.minimum(1.0, c.grad_bucket_params / np.maximum(p_dense + p_exp, 1.0))
        step_exposed = np.maximum(last_bucket, per_step - stage_bwd)
    else:
        step_exposed = per_step
    mb_exposed = m * np.maximum(0.0, per_mb - t_first)
    dp_exposed = step_exposed + mb_exposed
    overlapped = (per_step - step_exposed) + m * np.minimum(per_mb, t_first)
    overlapped = overlapped + m * n_first * ((tpc - tp_exposed) + (epc - ep_exposed))
    slowdown = c.overlap_compute_slowdown * overlapped

    opt_params = mem.optimizer_params
    optimizer = K.memory_bound_time(c.adam_bytes_per_param_step * opt_params, dev, c)

    step = pipeline + dp_exposed + optimizer + slowdown
    share = m / g.pp  # the balanced part of the pipeline, m * t_sum / pp, split by cause
    return StepResult(
        step_time_s=step,
        compute_s=share * (model.n_layers * window + emb + head),
        bubble_s=bubble,
        tp_comm_s=share * model.n_layers * tp_exposed + 0.0 * step,
        pp_comm_s=m * p2p,
        ep_comm_s=share * model.n_layers * ep_exposed + 0.0 * step,
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
        fits=mem.total <= dev.hbm_gb * 2**30,  # vendors' HBM "GB" are GiB (an H100 80GB exposes 81,559 MiB)
    )
