"""The step-time model: one training step of a layout, assembled from kernel and link times.

:func:`evaluate` takes a model, a system, a :class:`LayoutGrid` and options, and returns
a :class:`StepResult` whose fields are arrays (one entry per layout): the step time and
its exposed parts (compute, TP/CP/PP/DP/EP communication, bubble, optimizer, overlap
slowdown) and per-device memory. It wires four models, each a small function below:
the layer (:func:`layer_times`), the pipeline stages and schedule (:func:`stage_times`,
:func:`.pipeline.pipeline_time`), the data-parallel / ZeRO / FSDP collectives
(:func:`data_parallel_time`) and the optimizer step. docs/performance.md walks through them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..formats import recipe_value
from ..hardware import System
from ..scaling import ModelSpec
from . import kernels as K
from . import moe as moe_kernels
from .comm import p2p_time, ring_group
from .ep_overlap import combined_1f1b_layer_time, ep_overlap_ramp_time, ep_overlap_slowdown
from .groups import group_rows
from .host import host_layer_excess
from .constants import PerfConstants, default_constants
from .layout import LayoutGrid, TrainingOptions
from .moe import dispatch_time, permute_time
from .memory import Memory, activation_bytes_per_layer, data_parallel_groups, local_shards, memory_per_device
from .offload import offload_times
from .pipeline import pipeline_time, stage_layers


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


@dataclass(frozen=True)
class LayerTimes:
    """One layer, one microbatch, one device: without full recompute (``*0``) and the extra
    a fully recomputed layer costs (``extra``), with exposed and overlapped communication."""

    time0: np.ndarray        # forward + backward + exposed TP/EP/CP communication
    extra: np.ndarray        # added when the layer is recomputed (forward again + its collectives)
    bwd0: np.ndarray         # backward compute (the window gradient reduction hides under)
    bwd_extra: np.ndarray
    compute0: np.ndarray     # compute only (for the breakdown)
    compute_extra: np.ndarray
    tp0: np.ndarray          # exposed TP, EP and CP communication without recompute
    ep0: np.ndarray
    cp0: np.ndarray
    tp_extra: np.ndarray     # ... and what a recomputed layer adds to each
    ep_extra: np.ndarray
    cp_extra: np.ndarray
    overlapped0: np.ndarray  # communication hidden under compute (slows it down a little)
    overlapped_extra: np.ndarray
    ep_hidden0: np.ndarray   # the EP all-to-alls overlap hid (unpaired microbatches expose them, evaluate)
    host0: np.ndarray = 0.0  # host launch time beyond the GPU's (no CUDA graphs; perf/host.py), in time0
    host_extra: np.ndarray = 0.0


def _attention(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants):
    """Projections and attention core: (fwd, bwd, selective-recompute extra) per microbatch."""
    dev = system.device
    s, h = model.seq_len, model.d_model
    tp = g.tp.astype(float)
    tokens = g.mb * s / g.cp
    prec, ib = o.gemm_precision, o.gemm_input_bytes
    nh = model.n_heads / tp
    if model.is_mla:
        # Megatron-Core MLA: the down projections are replicated over TP, the up projections split.
        lat = model.kv_lora_rank + model.qk_rope_head_dim
        parts = [(h, lat), (model.kv_lora_rank, nh * (model.head_dim + model.value_head_dim)),
                 (nh * model.value_head_dim, h)]
        parts += ([(h, model.q_lora_rank), (model.q_lora_rank, nh * model.qk_head_dim)] if model.q_lora_rank
                  else [(h, nh * model.qk_head_dim)])
    else:
        kv = 2.0 * np.maximum(model.n_kv_heads / tp, 1.0) * model.head_dim  # KV heads replicate past their count
        parts = [(h, nh * model.head_dim + kv), (nh * model.head_dim, h)]
    f = b = 0.0
    for n_in, n_out in parts:  # the projections reading d_model read the norm's output (LayerNormLinear)
        pf, pb = K.linear_fwd_bwd_time(tokens, n_out, n_in, 1, dev, c, prec, ib, norm_fused=n_in == h)
        f, b = f + pf, b + pb
    heads_batch = g.mb * nh
    hd = (model.qk_head_dim + model.value_head_dim) / 2.0
    if o.flash_attention:
        at_f, at_b = K.flash_attention_time(heads_batch, s, hd, dev, c)
        if model.window_size is not None:  # windowed layers skip the score blocks outside the band
            share = model.windowed_layer_share
            keep = 1.0 - share * (1.0 - K.sliding_window_work_fraction(s, model.window_size))
            at_f, at_b = at_f * keep, at_b * keep
        selective = 0.0 * at_f  # FlashAttention recomputes scores inside its backward already
    else:
        at_f, at_b = K.unfused_attention_time(heads_batch, s, hd, dev, c)
        selective = at_f
    # Context parallelism: causal load balancing (2 CP chunks per rank, paired) splits the work evenly.
    return f, b, at_f / g.cp, at_b / g.cp, selective / g.cp


def _ffn(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants, moe: bool):
    """FFN (dense, or router + local experts + shared experts): (fwd, bwd, width per token)."""
    tokens = g.mb * model.seq_len / g.cp
    tp = g.tp.astype(float)
    if not moe:
        f, b = _mlp(model, system, o, c, tokens, model.d_ff, tp)
        return f, b, model.d_ff / tp
    k, cf = model.top_k, o.capacity_factor
    sp = np.where(o.sequence_parallel & (g.tp > 1), tp, 1.0)
    # The router stays BF16 in today's recipes (formats.yaml recipe.bf16_gemms); v1 ran it in the GEMM format.
    r_prec, r_ib = (o.gemm_precision, o.gemm_input_bytes) if o.legacy else ("bf16", 2.0)
    r_f, r_b = K.linear_fwd_bwd_time(tokens / sp, model.n_experts, model.d_model, 1, system.device, c, r_prec, r_ib)
    e_f, e_bd, e_bw = _routed_experts(model, system, g, o, c)
    # the MoE input's gradient summed over its consumers, the shared experts' output add (perf/moe.py)
    a_f, a_b = (0.0, 0.0) if o.legacy else moe_kernels.input_output_add_time(
        tokens / sp, model.d_model, model.n_shared_experts > 0, system.device, c)
    f, b = r_f + e_f + a_f, r_b + e_bd + e_bw + a_b
    if model.n_shared_experts:
        s_f, s_b = _mlp(model, system, o, c, tokens, model.n_shared_experts * model.shared_expert_width, tp)
        f, b = f + s_f, b + s_b
    return f, b, (k * cf * model.d_expert + model.n_shared_experts * model.shared_expert_width) / tp


def _mlp(model: ModelSpec, system: System, o: TrainingOptions, c: PerfConstants, tok, width, shards, batch=1):
    """Up and down projections of ``batch`` FFNs of ``width``: (fwd, bwd) seconds. Dense and shared
    FFNs read the norm's output (LayerNormLinear); routed experts do not."""
    gate = 2.0 if model.ffn_gated else 1.0
    dev, h, prec, ib = system.device, model.d_model, o.gemm_precision, o.gemm_input_bytes
    up_f, up_b = K.linear_fwd_bwd_time(tok, gate * width / shards, h, batch, dev, c, prec, ib,
                                       norm_fused=np.asarray(batch) == 1)
    dn_f, dn_b = K.linear_fwd_bwd_time(tok, h, width / shards, batch, dev, c, prec, ib)
    return up_f + dn_f, up_b + dn_b


def _routed_experts(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants):
    """The routed experts of one MoE layer (Megatron-Core's ``mlp`` node): forward, backward data
    gradients (with the dispatcher's permutes and the per-expert overheads) and backward weight
    gradients (half of the grouped GEMMs' backward), seconds per microbatch."""
    dev, h = system.device, model.d_model
    tp = g.tp.astype(float)
    tokens = g.mb * model.seq_len / g.cp
    prec, ib = o.gemm_precision, o.gemm_input_bytes
    gate = 2.0 if model.ffn_gated else 1.0
    k, cf, E = model.top_k, o.capacity_factor, model.n_experts
    # Routed token copies each expert replica (an ETP group) receives, balanced routing.
    tok_e = tokens * k * cf * g.ep * g.etp / (E * tp)
    if o.legacy:  # v1: the experts as one batched GEMM, balanced
        e_f, e_b = _mlp(model, system, o, c, tok_e, model.d_expert, g.etp.astype(float), E / g.ep)
        return e_f, 0.5 * e_b, 0.5 * e_b
    # grouped GEMM padded to the format's alignment, waiting for the busiest rank (perf/moe.py)
    imb = _busiest_rank(model, g, o)
    etp = g.etp.astype(float)
    u_f, u_b = moe_kernels.grouped_linear_fwd_bwd_time(tok_e, gate * model.d_expert / etp, h, E / g.ep, dev, c,
                                                       prec, ib, imbalance=imb)
    d_f, d_b = moe_kernels.grouped_linear_fwd_bwd_time(tok_e, h, model.d_expert / etp, E / g.ep, dev, c, prec,
                                                       ib, imbalance=imb)
    p_f, p_b = permute_time(tokens, k, h, g.tp, dev, c, cf)  # the dispatcher's token copies
    # Transformer Engine's grouped GEMM loops over the local experts; a fused grouped MLP does not.
    x_f, x_b = moe_kernels.expert_overhead_time(E / g.ep * (o.moe_grouped_gemm == "loop"), c)
    g_f, g_b = _unfused_expert_extras(model, dev, c, o, tokens * k * cf * imb / tp, etp)
    wgrad = 0.5 * (u_b + d_b)  # a GEMM's backward: data and weight gradients, equal work
    return u_f + d_f + p_f + x_f + g_f, wgrad + p_b + x_b + g_b, wgrad


def _busiest_rank(model: ModelSpec, g: LayoutGrid, o: TrainingOptions):
    """Routed copies the busiest EP rank gets over the mean (perf/moe.py ``routing_imbalance``; 1 when even)."""
    tok_e = moe_kernels.tokens_per_expert(g.mb * model.seq_len / g.cp, model.top_k, model.n_experts, g.ep, g.etp,
                                          g.tp, o.capacity_factor)
    return moe_kernels.routing_imbalance(tok_e, model.n_experts / g.ep, g.ep, balanced=o.force_balanced_routing)


def _unfused_expert_extras(model: ModelSpec, dev, c: PerfConstants, o: TrainingOptions, rows, etp):
    """Eager passes Transformer Engine's per-expert grouped MLP (``moe_grouped_gemm = loop``) adds
    for a clamped GLU and for expert biases: ``(fwd, bwd)`` seconds for ``rows`` routed copies
    (busiest rank) per microbatch. A fused grouped-MLP kernel takes them inside (not charged)."""
    zero = 0.0 * rows
    if o.moe_grouped_gemm != "loop":
        return zero, zero
    clamp = moe_kernels.clamped_glu_time(rows * model.d_expert / etp, dev, c)
    bias = moe_kernels.expert_bias_time(rows * etp * model.d_model, dev, c)
    on_c, on_b = model.activation_func_clamp_value is not None, model.add_bias_linear
    return clamp[0] * on_c + bias[0] * on_b, clamp[1] * on_c + bias[1] * on_b


def _collectives(model, system, g, o, c, moe: bool, mixer: bool = True, ffn: bool = True):
    """Per layer and microbatch, without recompute: TP all-reduce pairs, EP all-to-alls, CP sends.

    TP: 2 forward + 2 backward all-reduce equivalents, half after attention, half after the
    FFN (in MoE layers the expert half runs in the ETP group on the routed copies, as
    Megatron's token dispatcher does). EP: dispatch and combine, forward and backward.
    CP: the K/V ring, ``CP - 1`` sends of a K/V block forward and K/V plus their gradients backward.
    """
    s, h = model.seq_len, model.d_model
    tokens = g.mb * s / g.cp
    act = tokens * h * o.activation_bytes
    tp_attn = ring_group(g.tp, 1, system, c).time("all_reduce", act)
    if moe:
        copies = model.top_k * o.capacity_factor
        tp_ffn = ring_group(g.etp, 1, system, c).time("all_reduce", act * copies * g.etp / g.tp)
        # random routing: the all-to-all ends when the busiest rank has received its copies
        payload = tokens * copies * h * o.activation_bytes / g.tp * (1.0 if o.legacy else _busiest_rank(model, g, o))
        a2a = dispatch_time(payload, model.top_k, g.ep, g.etp, system, c,
                            dedup=o.moe_dispatcher == "flex" and not o.legacy, n_experts=model.n_experts)
    else:
        tp_ffn, a2a = tp_attn, 0.0 * tokens
    kv_heads = model.n_heads / g.tp if model.is_mla else np.maximum(model.n_kv_heads / g.tp, 1.0)
    kv_bytes = tokens * kv_heads * (model.qk_head_dim + model.value_head_dim) * o.activation_bytes
    send = np.where(g.cp > 1, p2p_time(kv_bytes, g.tp, g.cp, system, c), 0.0)
    if not (mixer and ffn):  # a hybrid stack's block has one sublayer (Mamba's out-projection reduces like attention's)
        return tp_attn * mixer + tp_ffn * ffn, a2a * ffn, send * mixer
    return tp_attn + tp_ffn, a2a, send


def _block_parts(model: ModelSpec, block: str | None, moe: bool):
    """(mixer, ffn) of a layer: ``attention``/``mamba``/None and ``dense``/``moe``/None.

    A transformer layer has both; a hybrid stack's block (Megatron ``hybrid_override_pattern``
    symbol ``M``, ``*``, ``E`` or ``-``) has one.
    """
    if block is None:
        return "attention", ("moe" if moe else "dense")
    return {"M": ("mamba", None), "*": ("attention", None), "E": (None, "moe"), "-": (None, "dense")}[block]


def _mamba(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants):
    """A Mamba-2 mixer (perf.ssm): (fwd, bwd) per microbatch, heads split over TP."""
    from .ssm import mamba2_layer_times

    tokens = g.mb * model.seq_len / g.cp
    return mamba2_layer_times(tokens, model.d_model, model.mamba_heads, model.mamba_head_dim, model.mamba_state,
                              model.mamba_groups, c.ssm_chunk, g.tp, system.device, c, o.gemm_precision,
                              o.gemm_input_bytes, batched=g.mb > 1)


def selective_recompute_time(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions,
                             c: PerfConstants, mixer: str | None, ffn: str | None, ffn_fwd):
    """Forward work selective recompute's modules repeat in one layer's backward (s per microbatch).

    Megatron-Core ``recompute_modules`` (TransformerConfig): ``layernorm`` reruns the two norms
    (read and write ``d_model`` per token each, memory-bound), ``mla_up_proj`` MLA's query and
    key/value up projections (their GEMMs; the RoPE applied to them is elementwise and small),
    ``moe_act`` the experts' activation (read the FC1 output, write the FC2 input), ``mlp`` /
    ``moe`` the whole dense FFN / MoE forward (the MoE's dispatch and combine too, charged by
    :func:`layer_times`), ``shared_experts`` the shared experts' forward. The TP collectives inside
    a recomputed dense FFN are not repeated here (a simplification: the recipes described run TP 1
    or 2). ``core_attn`` is :func:`_attention`'s ``selective`` term.

    Parameters
    ----------
    model, system, g, o, c
        As for :func:`layer_times`.
    mixer, ffn : str or None
        The layer's parts (:func:`_block_parts`).
    ffn_fwd : ndarray
        The layer's FFN forward time (s), repeated by ``mlp`` / ``moe``.

    Returns
    -------
    ndarray
        Seconds per microbatch, for every layout of ``g``.
    """
    mods = o.selective_modules
    out = 0.0 * g.tp
    if not mods:
        return out
    dev, h = system.device, model.d_model
    tp = g.tp.astype(float)
    tokens = g.mb * model.seq_len / g.cp
    e = o.activation_bytes
    sp = np.where(o.sequence_parallel & (g.tp > 1), tp, 1.0)
    if "layernorm" in mods:
        norms = 2.0 if (mixer and ffn) else 1.0
        out = out + K.memory_bound_time(tokens * norms * 2.0 * e * h / sp, dev, c)
    if "mla_up_proj" in mods and mixer == "attention" and model.is_mla:
        nh = model.n_heads / tp
        ups = [(model.kv_lora_rank, nh * (model.head_dim + model.value_head_dim))]
        if model.q_lora_rank:
            ups.append((model.q_lora_rank, nh * model.qk_head_dim))
        for n_in, n_out in ups:
            out = out + K.linear_fwd_bwd_time(tokens, n_out, n_in, 1, dev, c, o.gemm_precision,
                                              o.gemm_input_bytes)[0]
    if ffn == "dense" and "mlp" in mods:
        out = out + ffn_fwd
    if ffn == "moe" and "moe" in mods:
        out = out + ffn_fwd
    elif ffn == "moe":
        gate = 2.0 if model.ffn_gated else 1.0
        if "moe_act" in mods:
            copies = model.top_k * o.capacity_factor
            out = out + K.memory_bound_time(tokens * copies * model.d_expert * (gate + 1.0) * e / tp, dev, c)
            if model.activation_func_clamp_value is not None and o.moe_grouped_gemm == "loop":
                out = out + moe_kernels.clamped_glu_time(tokens * copies * model.d_expert / tp, dev, c)[0]
        if "shared_experts" in mods and model.n_shared_experts:
            width = model.n_shared_experts * model.shared_expert_width / tp
            up = K.linear_fwd_bwd_time(tokens, gate * width, h, 1, dev, c, o.gemm_precision, o.gemm_input_bytes)
            dn = K.linear_fwd_bwd_time(tokens, h, width, 1, dev, c, o.gemm_precision, o.gemm_input_bytes)
            out = out + up[0] + dn[0]
    return out


def layer_times(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants,
                moe: bool, block: str | None = None) -> LayerTimes:
    """One layer on one device: compute, and communication exposed after overlap.

    ``block``: one block of a hybrid stack (``M``, ``*``, ``E``, ``-``) instead of a full
    transformer layer; its norm and residual traffic is half a layer's.

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
    moe : bool
        The layer's FFN is a mixture of experts.
    block : str, optional
        Hybrid block kind (Megatron-Core's ``hybrid_override_pattern`` characters).

    Returns
    -------
    LayerTimes
        Seconds per microbatch: forward + backward with exposed TP/EP/CP collectives, and
        what a fully recomputed layer adds.

    References
    ----------
    Narayanan et al., SC 2021 (TP collectives per layer); Korthikanti et al. 2022 (sequence
    parallelism, selective recompute).
    """
    mixer, ffn = _block_parts(model, block, moe)
    zero = 0.0 * g.tp
    q_f, q_b, at_f, at_b, sel = _attention(model, system, g, o, c) if mixer == "attention" else (zero,) * 5
    if mixer == "mamba":
        q_f, q_b = _mamba(model, system, g, o, c)
    ff_f, ff_b, ffn_width = _ffn(model, system, g, o, c, ffn == "moe") if ffn else (zero, zero, 0.0)
    dev = system.device
    tokens = g.mb * model.seq_len / g.cp
    sp = np.where(o.sequence_parallel & (g.tp > 1), g.tp.astype(float), 1.0)
    ffn_bytes = c.elementwise_fwd_bytes_ffn_gated if model.ffn_gated else c.elementwise_fwd_bytes_ffn
    hidden_share = 1.0 if (mixer and ffn) else 0.5
    elem_f = K.memory_bound_time(tokens * (hidden_share * c.elementwise_fwd_bytes_hidden * model.d_model / sp
                                           + ffn_bytes * ffn_width), dev, c)
    fwd = q_f + at_f + ff_f + elem_f
    bwd = q_b + at_b + ff_b + c.elementwise_bwd_to_fwd * elem_f
    sel = sel * ("core_attn" in o.recompute_modules) + selective_recompute_time(model, system, g, o, c, mixer, ffn,
                                                                               ff_f)
    sel = np.where(g.rc == 1, sel, 0.0)
    moe_redo = np.where((g.rc == 1) & (ffn == "moe") & ("moe" in o.selective_modules), 2.0, 0.0)
    tp_pair, a2a, send = _collectives(model, system, g, o, c, ffn == "moe", bool(mixer), bool(ffn))
    # CP ring: each of the CP - 1 sends overlaps one block of attention (Megatron/TE p2p CP).
    steps = g.cp - 1.0
    cp_f = steps * np.maximum(0.0, send - at_f / np.maximum(steps, 1.0) * (steps > 0))
    cp_b = steps * np.maximum(0.0, 2.0 * send - at_b / np.maximum(steps, 1.0) * (steps > 0))
    cp_hidden_f, cp_hidden_b = steps * send - cp_f, 2.0 * steps * send - cp_b

    def exposed(compute, tpc, epc):
        # Overlapped TP collectives hide under the layer's own compute (Megatron TP overlap);
        # without EP overlap the all-to-alls are exposed.
        tp_x = np.maximum(0.0, tpc - compute) if o.overlap_tp_comm else tpc
        return tp_x, (tpc - tp_x)

    c0 = fwd + bwd + sel
    tp0, tp_hidden0 = exposed(c0, 2.0 * tp_pair, None)
    c1 = c0 + fwd
    tp1, tp_hidden1 = exposed(c1, 3.0 * tp_pair, None)
    a2a0 = (4.0 + moe_redo) * a2a  # a recomputed MoE dispatches again
    if o.overlap_ep_comm and ffn == "moe":
        # Megatron-Core pairs this layer's nodes with another microbatch's (perf/ep_overlap.py); a
        # recomputed MoE's dispatch and combine and a fully recomputed layer's run exposed
        # (recompute_model_chunk_schedule_plan: "The A2A communications issued here are exposed").
        parts = _overlap_parts(model, system, g, o, c, (fwd, bwd, sel), (ff_f, ff_b, q_b), elem_f,
                               ffn_bytes * ffn_width / (hidden_share * c.elementwise_fwd_bytes_hidden
                                                        * model.d_model / sp + ffn_bytes * ffn_width))
        ep0 = np.maximum(0.0, combined_1f1b_layer_time(*parts, a2a) - c0) + moe_redo * a2a
        ep1 = ep0 + 2.0 * a2a
    else:
        ep0, ep1 = a2a0, 6.0 * a2a
    cp0 = cp_f + cp_b
    time0 = c0 + tp0 + ep0 + cp0
    time1 = c1 + tp1 + ep1 + cp0 + cp_f
    host0, host_x = host_layer_excess(model, g, o, mixer, ffn, time0, time1)
    time0, time1 = time0 + host0, time1 + host0 + host_x
    ov0 = tp_hidden0 + (a2a0 - ep0)
    ov1 = tp_hidden1 + (a2a0 - ep0)
    return LayerTimes(time0=time0, extra=time1 - time0, bwd0=bwd, bwd_extra=fwd, compute0=c0,
                      compute_extra=fwd, tp0=tp0, ep0=ep0, cp0=cp0, tp_extra=tp1 - tp0, ep_extra=ep1 - ep0,
                      cp_extra=cp_f,
                      overlapped0=ov0 + cp_hidden_f + cp_hidden_b, overlapped_extra=ov1 - ov0 + cp_hidden_f,
                      ep_hidden0=a2a0 - ep0, host0=host0, host_extra=host_x)


def _overlap_parts(model, system, g, o, c, layer, ffn_parts, elem_f, elem_ffn_share):
    """One MoE layer's compute split into Megatron-Core's EP-overlap nodes (perf/ep_overlap.py):
    ``(attn_f, mlp_f, attn_b, attn_dw, mlp_b, mlp_dw)`` seconds per microbatch, summing to the
    layer's ``fwd + bwd + sel``. The ``mlp`` node is the routed experts with their activation's
    element-wise passes and the recompute of the MoE side (``selective_recompute_time`` without
    the mixer); everything else -- attention, norms, router, shared experts -- is the ``attn``
    node, whose GEMMs' weight gradients (half their backward) run after its data gradients.
    ``layer``: ``(fwd, bwd, sel)``; ``ffn_parts``: ``(ffn fwd, ffn bwd, attention projections' bwd)``;
    ``elem_ffn_share``: the FFN-width share of the layer's element-wise traffic ``elem_f``."""
    fwd, bwd, sel = layer
    ff_f, ff_b, q_b = ffn_parts
    e_f, e_bd, e_bw = _routed_experts(model, system, g, o, c)
    elem_mlp = elem_f * elem_ffn_share
    sel_mlp = np.where(g.rc == 1, selective_recompute_time(model, system, g, o, c, None, "moe", ff_f), 0.0)
    mlp_f = e_f + elem_mlp
    mlp_b = e_bd + c.elementwise_bwd_to_fwd * elem_mlp + sel_mlp
    attn_dw = 0.5 * (q_b + ff_b - e_bd - e_bw)  # projections, router and shared experts
    attn_f = fwd - mlp_f
    attn_b = bwd + sel - mlp_b - e_bw - attn_dw
    return attn_f, mlp_f, attn_b, attn_dw, mlp_b, e_bw


def per_layer(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants) -> LayerTimes:
    """:func:`layer_times` averaged over dense and MoE (or hybrid) layers, for every layout of ``g``.

    The share of layers a recipe keeps in BF16 (NVFP4: the first and last blocks,
    ``formats.yaml: recipe.bf16_layers_nvfp4``) is timed in BF16.

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

    Returns
    -------
    LayerTimes
        Seconds per layer and microbatch, one entry per layout.
    """
    share = recipe_value("bf16_layers_nvfp4") if o.gemm_precision == "nvfp4" else 0.0
    lt = _per_layer(model, system, g, o, c)
    if not share:
        return lt
    lb = _per_layer(model, system, g, o.model_copy(update={"precision": "bf16"}), c)
    return LayerTimes(**{f.name: (1.0 - share) * getattr(lt, f.name) + share * getattr(lb, f.name)
                         for f in fields(LayerTimes)})


def _per_layer(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants) -> LayerTimes:
    """:func:`layer_times` averaged over dense and MoE layers, for every layout of ``g``.

    Layer times depend only on (TP, CP, EP, ETP, microbatch, selective recompute), which a
    search grid repeats thousands of times: each distinct combination is computed once.
    """
    first, inverse = group_rows(g.tp, g.cp, g.ep, g.etp, g.mb, (g.rc == 1).astype(np.int64))
    sub = g.take(first)
    frac_moe = model.n_moe_layers / model.n_layers
    if model.is_hybrid:  # one block per layer: average over the pattern's block kinds
        parts = [(model.hybrid_pattern.count(b) / model.n_layers, layer_times(model, system, sub, o, c, b == "E", b))
                 for b in "M*E-" if b in model.hybrid_pattern]
    else:
        parts = [(1.0 - frac_moe, layer_times(model, system, sub, o, c, moe=False))]
        if frac_moe > 0:
            parts.append((frac_moe, layer_times(model, system, sub, o, c, moe=True)))
    out = {}
    for f in fields(LayerTimes):
        avg = sum(w * np.broadcast_to(getattr(p, f.name), first.shape) for w, p in parts)
        out[f.name] = avg[inverse]
    return LayerTimes(**out)


def stage_times(model, system, g, o, c, lt: LayerTimes, split, recomputed):
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
        Per-layer times (:func:`per_layer`).
    split : tuple of ndarray
        Layers on the (first, middle, last) stage (:func:`.pipeline.stage_layers`).
    recomputed : tuple of ndarray
        Fully recomputed layers on those stages.

    Returns
    -------
    t_first, t_max, t_sum, p2p, ends, r_total, p2p_hidden : ndarray
        Seconds for one microbatch (forward + backward): the first stage, the slowest stage,
        all stages in sequence, the first stage's exposed stage-boundary sends
        (:func:`pipeline_send_time`), the embedding + output layer + MTP; the recomputed
        layers summed over stages (count); and the first stage's sends and activation CPU-offloading
        copies hidden under compute (:mod:`.offload`; the exposed copies are in the first stage's time).
    """
    dev = system.device
    h, V = model.d_model, model.vocab
    tp = g.tp.astype(float)
    tokens = g.mb * model.seq_len / g.cp
    emb = K.memory_bound_time(c.embedding_bytes_per_token_hidden * tokens * h, dev, c)
    # The output layer stays BF16 in today's recipes (formats.yaml recipe.bf16_gemms); v1 ran it in the GEMM format.
    h_prec, h_ib = (o.gemm_precision, o.gemm_input_bytes) if o.legacy else ("bf16", 2.0)
    lg_f, lg_b = K.linear_fwd_bwd_time(tokens, V / tp, h, 1, dev, c, h_prec, h_ib)
    head = lg_f + lg_b + K.memory_bound_time(c.cross_entropy_passes * tokens * V / tp * c.logits_bytes, dev, c)
    mtp = model.mtp_layers * (lt.time0 + head)
    act_bytes = tokens * h * o.activation_bytes / tp
    send = np.where(g.pp > 1, p2p_time(act_bytes, g.tp * g.cp * g.dp, g.pp, system, c), 0.0)
    overlap = (g.v > 1) & (o.overlap_pp_comm and not o.legacy)
    n_first, n_mid, n_last = split
    r_first, r_mid, r_last = recomputed

    def stage(n, r):
        return n * lt.time0 + r * lt.extra

    off_exposed, off_hidden = _offload_times(model, system, g, o, lt)
    c_first = stage(n_first, r_first) + emb + np.where(g.pp == 1, head + mtp, 0.0) + off_exposed
    c_last = stage(n_last, r_last) + head + mtp
    c_mid = stage(n_mid, r_mid)
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


def pipeline_send_time(send, stage_compute, v, overlap):
    """Exposed seconds of one stage's pipeline sends per microbatch (forward and backward).

    Each of the ``v`` model chunks sends its output forward and its input gradient backward
    (``2 v`` sends of ``send`` seconds). Under interleaving Megatron-Core posts them
    asynchronously (``overlap_p2p_comm``, which Megatron-Bridge's ``CommOverlapConfig`` turns
    on whenever ``PP > 1`` and ``VP > 1``; with ``VP = 1`` it batches them instead,
    ``batch_p2p_comm``): a forward send overlaps the next backward chunk (about 2/3 of a
    chunk's compute), a backward send the next forward chunk (1/3), and only the excess is
    exposed.

    Parameters
    ----------
    send : float or ndarray
        Seconds of one send of a microbatch's boundary activations (:func:`.comm.p2p_time`).
    stage_compute : float or ndarray
        Seconds of the stage's forward + backward for one microbatch, all its chunks.
    v : float or ndarray
        Model chunks per device (VP).
    overlap : bool or ndarray
        Sends overlapped (interleaved schedule with ``overlap_p2p_comm``).

    Returns
    -------
    ndarray
        Exposed seconds per microbatch: ``2 v send`` without overlap, else
        ``v (max(0, send - 2 t/3) + max(0, send - t/3))`` with ``t`` one chunk's compute.

    References
    ----------
    Megatron-Core ``forward_backward_pipelining_with_interleaving``
    (``megatron/core/pipeline_parallel/schedules.py``, ``overlap_p2p_comm``); Megatron-Bridge
    ``src/megatron/bridge/training/comm_overlap.py`` (``_get_model_comm_overlap_cfgs``).
    """
    chunk = stage_compute / np.maximum(v, 1)
    hidden = v * (np.maximum(0.0, send - 2.0 * chunk / 3.0) + np.maximum(0.0, send - chunk / 3.0))
    return np.where(overlap, hidden, 2.0 * v * send)


def data_parallel_time(model, system, g, o, c, mem: Memory):
    """Data-parallel / ZeRO / FSDP communication of the first stage.

    Dense gradients reduce over ``DP x CP`` ranks, expert gradients over the expert
    data-parallel group. ZeRO-0 all-reduce; ZeRO-1/2 reduce-scatter + all-gather of the
    updated weights; ZeRO-3 / FSDP two all-gathers (forward, backward) and a
    reduce-scatter per microbatch, and with hybrid sharding an all-reduce of the gradient
    shard across the replicas once per step; hierarchical ZeRO-3 (flexible sharding,
    LinS / ZeRO++ hpZ) keeps the per-microbatch collectives inside the scale-up domain and
    reduce-scatters/gathers across domains once per step.

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
    mem : Memory
        Parameters on the first stage's device and the weight sharding groups.

    Returns
    -------
    per_step, per_microbatch : ndarray
        Seconds of collectives once per step and once per microbatch (before overlap).

    References
    ----------
    Rajbhandari et al., "ZeRO", SC 2020; Zhao et al., "PyTorch FSDP", VLDB 2023; Wang et al.,
    "ZeRO++", 2023.
    """
    p_d, p_e = mem.params_dense, mem.params_expert
    gb = o.gradient_bytes(c)
    wb = o.activation_bytes
    n_d, n_e = data_parallel_groups(g)
    st_d, st_e = g.tp, g.etp * g.ep

    def pair(nd, sd, ne, se):
        return ring_group(nd, sd, system, c), ring_group(ne, se, system, c)

    full = pair(n_d, st_d, n_e, st_e)

    def coll(kind, bytes_d, bytes_e, groups=full):
        return groups[0].time(kind, bytes_d) + groups[1].time(kind, bytes_e)

    ar = coll("all_reduce", p_d * gb, p_e * gb)
    rs_ag = coll("reduce_scatter", p_d * gb, p_e * gb) + coll("all_gather", p_d * wb, p_e * wb)
    w_d, w_e = mem.weight_shards
    zero = 0.0 * p_d
    z3_mb = hsdp_step = z4_step = zero
    if (g.zero >= 3).any():  # only grids with sharded weights pay for placing those groups
        shard = pair(w_d, st_d, w_e, st_e)
        z3_mb = 2.0 * coll("all_gather", p_d * wb, p_e * wb, shard) + coll("reduce_scatter", p_d * gb, p_e * gb,
                                                                           shard)
    if ((g.zero == 3) & (g.fsdp > 0)).any():
        replicas = pair(n_d // np.maximum(w_d, 1), st_d * w_d, n_e // np.maximum(w_e, 1), st_e * w_e)
        hsdp_step = coll("all_reduce", p_d / w_d * gb, p_e / w_e * gb, replicas)
    if (g.zero == 4).any():
        loc_d, loc_e = (np.maximum(x, 1) for x in local_shards(g, system))
        cross = pair(n_d / loc_d, st_d * loc_d, n_e / loc_e, st_e * loc_e)
        z4_step = coll("reduce_scatter", p_d / loc_d * gb, p_e / loc_e * gb, cross) + coll(
            "all_gather", p_d / loc_d * wb, p_e / loc_e * wb, cross)
    per_mb = np.where(g.zero >= 3, z3_mb, 0.0)  # prefetched under compute
    per_step = np.where(g.zero == 0, ar, np.where(g.zero <= 2, rs_ag, np.where(g.zero == 4, z4_step, hsdp_step)))
    return per_step, per_mb


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
    lt, (n_first, n_mid, n_last), mem, recomputed, times = _stages(model, system, g, o, c)
    t_first, t_max, t_sum, p2p, ends, r_total, p2p_hidden = times
    rl = mem.recompute_layers
    pipeline = pipeline_time(m, t_max, t_sum, g.v)
    bubble = pipeline - m * t_sum / g.pp  # time beyond perfectly balanced, always-busy stages

    per_step, per_mb = data_parallel_time(model, system, g, o, c, mem)
    stage_bwd = n_first * lt.bwd0 + recomputed[0] * lt.bwd_extra
    if o.overlap_grad_reduce:  # hidden under the last microbatch's backward, but for the last bucket
        last_bucket = per_step * np.minimum(1.0, c.grad_bucket_params / np.maximum(mem.params_dense + mem.params_expert, 1.0))
        step_exposed = np.maximum(last_bucket, per_step - stage_bwd)
    else:
        step_exposed = per_step
    mb_exposed = m * np.maximum(0.0, per_mb - t_first)
    dp_exposed = step_exposed + mb_exposed
    overlapped = (per_step - step_exposed) + m * np.minimum(per_mb, t_first)
    overlapped = overlapped + m * (n_first * lt.overlapped0 + recomputed[0] * lt.overlapped_extra + p2p_hidden)
    ramp = ep_overlap_ramp_time(g.pp, o.overlap_ep_comm, n_first, lt.ep_hidden0)
    ep_hidden = m * n_first * lt.ep_hidden0
    if o.overlap_ep_comm and o.moe_dispatcher == "flex" and not o.legacy:
        # DeepEP/HybridEP hold their SMs while hidden (perf/ep_overlap.py); NCCL's share stays in the global term
        ep_slow = ep_overlap_slowdown(np.maximum(0.0, ep_hidden - ramp), system.device.compute_units, c.ep_comm_sms)
        overlapped = overlapped - ep_hidden
    else:
        ep_slow = 0.0
    slowdown = c.overlap_compute_slowdown * overlapped + ep_slow

    optimizer = K.memory_bound_time(c.adam_bytes_per_param_step * mem.optimizer_params, system.device, c)
    # Quantized recipes cast the updated weights (and their transposed copies) once per step;
    # Transformer Engine reuses them over the step's microbatches.
    optimizer = optimizer + K.quantize_time(mem.params_dense + mem.params_expert, o.gemm_precision, system.device, c,
                                            weight=True)
    step = pipeline + dp_exposed + optimizer + slowdown + ramp
    share = m / g.pp  # the balanced part of the pipeline, m * t_sum / pp, split by cause
    n_layers = model.n_layers
    return StepResult(
        step_time_s=step,
        compute_s=share * (n_layers * lt.compute0 + r_total * lt.compute_extra + ends),
        host_s=share * (n_layers * lt.host0 + r_total * lt.host_extra) + 0.0 * step,
        offload_s=share * _offload_times(model, system, g, o, lt)[0] + 0.0 * step,
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


def _fits(system: System, mem: Memory, n_first) -> np.ndarray:
    return (mem.total <= system.device.hbm_gb * 2**30) & (n_first >= 0)  # vendors' HBM "GB" are GiB


def _stages(model, system, g, o, c, times: bool = True):
    """What :func:`evaluate` builds the step from: layer times, stage layer counts, memory,
    recomputed layers per stage and :func:`stage_times` (``times=False``: memory only)."""
    n = stage_layers(model.n_layers, g.pp, g.v, legacy=o.legacy)
    mem = memory_per_device(model, system, g, o, c, n[0], n[2], n[1])
    if not times:
        return None, n, mem, None, None
    lt = per_layer(model, system, g, o, c)
    rl = mem.recompute_layers
    recomputed = tuple(np.where(g.rc == 2, np.minimum(k, g.v * rl), 0) for k in n)
    return lt, n, mem, recomputed, stage_times(model, system, g, o, c, lt, n, recomputed)


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
    _, n, mem, _, _ = _stages(model, system, g, o, c, times=False)
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
    _, n, mem, _, times = _stages(model, system, g, o, c)
    return times[1], times[2], _fits(system, mem, n[0])
