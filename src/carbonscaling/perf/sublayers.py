"""One layer's sublayers on one device: the compute of its mixer and its FFN.

The pieces :func:`.layer.layer_times` assembles, each ``(forward, backward, ...)`` seconds per
microbatch for every layout of a :class:`.layout.LayoutGrid`: the attention projections and core
(:func:`_attention`), the dense FFN or the MoE layer -- router, routed experts as Megatron-Core's
grouped GEMMs waiting for the busiest EP rank, shared experts -- (:func:`_ffn`,
:func:`_routed_experts`) and a Mamba-2 mixer (:func:`_mamba`, :mod:`.ssm`). Collectives, recompute
and overlap are the layer's (:mod:`.layer`). docs/performance.md ("One step") walks through them.
"""

from __future__ import annotations

import numpy as np

from ..formats import number_format
from ..hardware import System
from ..scaling import ModelSpec
from . import kernels as K
from . import moe as moe_kernels
from .constants import PerfConstants
from .layout import LayoutGrid, TrainingOptions
from .moe_dispatch import permute_time


def _attention(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants):
    """Projections and attention core: (fwd, bwd, selective-recompute extra) per microbatch."""
    dev = system.device
    s, h = model.seq_len, model.d_model
    tp = g.tp.astype(float)
    tokens = g.tokens(s)
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
        at_prec = o.attention_precision
        at_f, at_b = K.flash_attention_time(heads_batch, s, hd, dev, c, at_prec)
        if model.window_size is not None:  # windowed layers skip the score blocks outside the band
            share = model.windowed_layer_share
            keep = 1.0 - share * (1.0 - K.sliding_window_work_fraction(s, model.window_size))
            at_f, at_b = at_f * keep, at_b * keep
        if at_prec != "bf16":  # FP8 attention: its operands cast, its output and output gradient converted
            x_f, x_b = fp8_attention_cast_time(model, tokens, tp, dev, c)
            at_f, at_b = at_f + x_f, at_b + x_b
        selective = 0.0 * at_f  # FlashAttention recomputes scores inside its backward already
    else:
        at_f, at_b = K.unfused_attention_time(heads_batch, s, hd, dev, c)
        selective = at_f
    # Context parallelism: causal load balancing (2 CP chunks per rank, paired) splits the work evenly.
    return f, b, at_f / g.cp, at_b / g.cp, selective / g.cp


def fp8_attention_cast_time(model: ModelSpec, tokens, tp, dev, c: PerfConstants):
    """``(t_forward, t_backward)`` of the casts around an FP8 attention core (``fp8_attention``).

    Transformer Engine's FP8 ``DotProductAttention`` quantizes Q, K and V (per-tensor current
    scaling: an amax read, then the cast) before cuDNN's FP8 fused attention and converts its FP8
    output back to BF16 for the output projection (without ``fp8_multi_head_attention``, which
    the recipes leave off); the backward quantizes the output gradient. Per rank: Q and the
    output have the rank's ``n_heads / TP`` heads, K and V its KV heads (MLA: one per query head).

    Parameters
    ----------
    model : ModelSpec
        Heads and head dimensions.
    tokens : float or ndarray
        Tokens of a microbatch on this rank (after CP).
    tp : float or ndarray
        Tensor-parallel size.
    dev : Device
        HBM bandwidth.
    c : PerfConstants
        ``hbm_efficiency``.

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds per layer and microbatch (HBM-bound: :func:`.kernels.quantize_time` of format
        ``fp8``; the output's conversion reads its FP8 and writes its BF16 bytes, ``data/formats.yaml``).

    References
    ----------
    Megatron-Core ``TransformerConfig.fp8_dot_product_attention`` (sets Transformer Engine's
    recipe ``fp8_dpa``; ``fp8_multi_head_attention`` sets ``fp8_mha``); Transformer Engine
    ``DotProductAttention`` (cuDNN FP8 fused attention).
    """
    nh = model.n_heads / tp
    kv = np.maximum(model.n_kv_heads / tp, 1.0)
    qkv = tokens * (nh * model.qk_head_dim + kv * (model.qk_head_dim + model.value_head_dim))
    out = tokens * nh * model.value_head_dim
    convert_b = number_format("fp8").element_bytes + number_format("bf16").element_bytes  # FP8 read, BF16 written
    fwd = K.quantize_time(qkv, "fp8", dev, c) + K.memory_bound_time(convert_b * out, dev, c)
    return fwd, K.quantize_time(out, "fp8", dev, c)


def _ffn(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants, moe: bool,
         experts=None):
    """FFN (dense, or router + local experts + shared experts): (fwd, bwd, width per token).
    ``experts``: :func:`_routed_experts` of this grid when the caller has it already."""
    tokens = g.tokens(model.seq_len)
    tp = g.tp.astype(float)
    if not moe:
        f, b = _mlp(model, system, o, c, tokens, model.d_ff, tp)
        return f, b, model.d_ff / tp
    k, cf = model.top_k, o.capacity_factor
    sp = g.sp_shards(o.sequence_parallel)
    # The router stays out of the GEMM format in today's recipes (formats.yaml recipe.bf16_gemms): BF16, or
    # FP32 logits and TF32 backward GEMMs with moe_router_dtype fp32 (perf/moe.py); v1 ran it in the GEMM format.
    r_prec, r_ib, r_dtype = (o.gemm_precision, o.gemm_input_bytes, None) if o.legacy \
        else ("bf16", number_format("bf16").element_bytes, model.moe_router_dtype)
    r_f, r_b = moe_kernels.router_time(tokens / sp, model.n_experts, model.d_model, r_dtype, system.device, c,
                                       r_prec, r_ib)
    e_f, e_bd, e_bw = experts if experts is not None else _routed_experts(model, system, g, o, c)
    # the MoE input's gradient summed over its consumers, the shared experts' output add (perf/moe.py)
    a_f, a_b = (0.0, 0.0) if o.legacy else moe_kernels.input_output_add_time(
        tokens / sp, model.d_model, model.n_shared_experts > 0, system.device, c)
    f, b = r_f + e_f + a_f, r_b + e_bd + e_bw + a_b
    if model.n_shared_experts:
        # an MoE layer's pre-MLP norm is a separate TENorm (its output also feeds the router and the
        # dispatcher), so the shared experts' FC1 casts its input itself in quantized formats
        s_f, s_b = _mlp(model, system, o, c, tokens, model.n_shared_experts * model.shared_expert_width, tp,
                        norm_fused=False)
        f, b = f + s_f, b + s_b
    return f, b, (k * cf * model.d_expert + model.n_shared_experts * model.shared_expert_width) / tp


def _mlp(model: ModelSpec, system: System, o: TrainingOptions, c: PerfConstants, tok, width, shards, batch=1,
         norm_fused=None):
    """Up and down projections of ``batch`` FFNs of ``width``: (fwd, bwd) seconds. A dense FFN reads
    the norm's output (LayerNormLinear, ``norm_fused`` default for ``batch == 1``); routed and shared
    experts do not (Megatron-Core's MoE layer spec: a separate ``TENorm``)."""
    gate = model.fc1_width_factor
    dev, h, prec, ib = system.device, model.d_model, o.gemm_precision, o.gemm_input_bytes
    fused = np.asarray(batch) == 1 if norm_fused is None else norm_fused
    up_f, up_b = K.linear_fwd_bwd_time(tok, gate * width / shards, h, batch, dev, c, prec, ib, norm_fused=fused)
    dn_f, dn_b = K.linear_fwd_bwd_time(tok, h, width / shards, batch, dev, c, prec, ib)
    return up_f + dn_f, up_b + dn_b


def _routed_experts(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants,
                    imbalance=None):
    """The routed experts of one MoE layer (Megatron-Core's ``mlp`` node): forward, backward data
    gradients (with the dispatcher's permutes and the per-expert overheads) and backward weight
    gradients (half of the grouped GEMMs' backward), seconds per microbatch.
    ``imbalance``: :func:`_busiest_rank` of this grid when the caller has it already (the layer's
    all-to-all waits for the same rank, :func:`.layer.layer_times`)."""
    dev, h = system.device, model.d_model
    tp = g.tp.astype(float)
    tokens = g.tokens(model.seq_len)
    prec, ib = o.gemm_precision, o.gemm_input_bytes
    gate = model.fc1_width_factor
    k, cf, E = model.top_k, o.capacity_factor, model.n_experts
    # Routed token copies each expert replica (an ETP group) receives, balanced routing.
    tok_e = moe_kernels.tokens_per_expert(tokens, k, E, g.ep, g.etp, g.tp, cf)
    if o.legacy:  # v1: the experts as one batched GEMM, balanced
        e_f, e_b = _mlp(model, system, o, c, tok_e, model.d_expert, g.etp.astype(float), E / g.ep)
        return e_f, 0.5 * e_b, 0.5 * e_b
    # grouped GEMM padded to the format's alignment, waiting for the busiest rank (perf/moe.py)
    imb = _busiest_rank(model, g, o, tok_e) if imbalance is None else imbalance
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
    r_b = moe_kernels.dglu_kernel_regression_time(0.5 * d_b, o.fused_mlp_dgrad_slowdown, o.moe_grouped_gemm)
    return u_f + d_f + p_f + x_f + g_f, wgrad + p_b + x_b + g_b + r_b, wgrad


def _busiest_rank(model: ModelSpec, g: LayoutGrid, o: TrainingOptions, tok_e=None):
    """Routed copies the busiest EP rank gets over the mean (perf/moe.py ``routing_imbalance``; 1 when even).
    ``tok_e``: :func:`.moe.tokens_per_expert` of this grid when the caller has it already."""
    if tok_e is None:
        tok_e = moe_kernels.tokens_per_expert(g.tokens(model.seq_len), model.top_k, model.n_experts, g.ep,
                                              g.etp, g.tp, o.capacity_factor)
    return moe_kernels.routing_imbalance(tok_e, model.n_experts / g.ep, g.ep, balanced=o.force_balanced_routing)


def _unfused_expert_extras(model: ModelSpec, dev, c: PerfConstants, o: TrainingOptions, rows, etp):
    """Eager passes Transformer Engine's per-expert grouped MLP (``moe_grouped_gemm = loop``) adds
    for a clamped GLU and for expert biases: ``(fwd, bwd)`` seconds for ``rows`` routed copies
    (busiest rank) per microbatch. A fused grouped-MLP kernel takes them inside (not charged)."""
    zero = 0.0 * rows
    if o.moe_grouped_gemm != "loop":
        return zero, zero
    # rows are the copies before the ETP all-gather: a rank clamps rows x ETP copies of width d_expert / ETP
    clamp = moe_kernels.clamped_glu_time(rows * model.d_expert, dev, c)
    bias = moe_kernels.expert_bias_time(rows * etp * model.d_model, dev, c)
    on_c, on_b = model.activation_func_clamp_value is not None, model.add_bias_linear
    return clamp[0] * on_c + bias[0] * on_b, clamp[1] * on_c + bias[1] * on_b


def _mamba(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions, c: PerfConstants):
    """A Mamba-2 mixer (perf.ssm): (fwd, bwd) per microbatch, heads split over TP."""
    from .ssm import mamba2_layer_times

    tokens = g.tokens(model.seq_len)
    return mamba2_layer_times(tokens, model.d_model, model.mamba_heads, model.mamba_head_dim, model.mamba_state,
                              model.mamba_groups, c.ssm_chunk, g.tp, system.device, c, o.gemm_precision,
                              o.gemm_input_bytes, batched=g.mb > 1)
