"""Selective activation recompute: the forward work its modules repeat in a layer's backward.

Megatron-Core's ``recompute_granularity = "selective"`` with ``recompute_modules``; what the
recomputed modules keep out of memory is :func:`.activations.selective_freed_bytes`, the time
they cost is :func:`selective_recompute_time` (added per layer by :func:`.layer.layer_times`).
"""

from __future__ import annotations

from ..hardware import System
from ..scaling import ModelSpec
from . import kernels as K
from . import moe as moe_kernels
from .moe_dispatch import routed_elements
from .constants import PerfConstants
from .layout import LayoutGrid, TrainingOptions


def selective_recompute_time(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions,
                             c: PerfConstants, mixer: str | None, ffn: str | None, ffn_fwd):
    """Forward work selective recompute's modules repeat in one layer's backward (s per microbatch).

    Megatron-Core ``recompute_modules`` (TransformerConfig): ``layernorm`` reruns the two norms
    (read and write ``d_model`` per token each, memory-bound), ``mla_up_proj`` MLA's query and
    key/value up projections (their GEMMs; the RoPE applied to them is elementwise and small),
    ``moe_act`` the experts' activation (read the FC1 output, write the FC2 input), ``mlp`` /
    ``moe`` the whole dense FFN / MoE forward (the MoE's dispatch and combine too, charged by
    :func:`.layer.layer_times`), ``shared_experts`` the shared experts' forward. The TP collectives inside
    a recomputed dense FFN are not repeated here (a simplification: the recipes described run TP 1
    or 2). ``core_attn`` is :func:`.sublayers._attention`'s ``selective`` term.

    Parameters
    ----------
    model, system, g, o, c
        As for :func:`.layer.layer_times`.
    mixer, ffn : str or None
        The layer's parts (:func:`.layer._block_parts`).
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
    tokens = g.tokens(model.seq_len)
    e = o.activation_bytes
    sp = g.sp_shards(o.sequence_parallel)
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
        gate = model.fc1_width_factor
        if "moe_act" in mods:
            units = routed_elements(tokens, model.top_k, model.d_expert, tp, o.capacity_factor)
            out = out + K.memory_bound_time(units * (gate + 1.0) * e, dev, c)
            if model.activation_func_clamp_value is not None and o.moe_grouped_gemm == "loop":
                out = out + moe_kernels.clamped_glu_time(units, dev, c)[0]
        if "shared_experts" in mods and model.n_shared_experts:
            width = model.n_shared_experts * model.shared_expert_width / tp
            up = K.linear_fwd_bwd_time(tokens, gate * width, h, 1, dev, c, o.gemm_precision, o.gemm_input_bytes)
            dn = K.linear_fwd_bwd_time(tokens, h, width, 1, dev, c, o.gemm_precision, o.gemm_input_bytes)
            out = out + up[0] + dn[0]
    return out
