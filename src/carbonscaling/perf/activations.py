"""Activations: the bytes one layer keeps for its backward pass, per device and microbatch.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models", Sec. 4 and Table 2), with every term sized by the architecture
instead of ``34 s b h``. Per token of a microbatch (``s b / CP`` tokens per rank), in
bytes, ``e`` the activation element size (2; 1 with QAT) and ``g`` the size of a saved
GEMM input (``e``; with a quantized format the bytes of its cast, which Transformer Engine
saves instead, e.g. 1 for FP8):

* replicated across TP unless sequence parallelism splits it: two norm inputs ``2 e h``,
  the two GEMM inputs after them (QKV and FC1 inputs) ``2 g h``, and the two dropout
  masks ``2 h`` only when dropout is on (modern LLMs train without);
* attention, split over TP: Q ``e n_h d_qk``, K and V ``e n_kv (d_qk + d_v)`` sized by
  the KV heads a rank holds (GQA; KV heads are replicated when TP exceeds their count)
  -- MLA decompresses per-head K/V for the kernel, so its K/V are ``n_h`` heads wide and
  its query/KV latents add ``(q_lora + kv_lora)(e + g) + e d_rope`` (replicated like the
  norms) -- and the attention output, the projection's input, ``g n_h d_v``;
* without FlashAttention the score tensors ``n_h s (e + [1 + e with dropout])`` (softmax
  output, dropout mask and output), gone with selective recompute;
* dense FFN: FC1 output ``e (1 + gated) d_ff`` and the activation (FC2 input) ``g d_ff``;
  MoE layers: each of ``top_k x capacity`` routed copies keeps its dispatched input ``g h``
  (gathered over ETP) and its expert FFN activations (a clamped GLU on the per-expert path
  also its clamped FC1 copy, ``e (1 + gated) d_expert``), shared experts as a dense FFN, and
  the fp32 router logits ``4 E``.

For MHA, BF16, dropout 0.1 and no FlashAttention this is Korthikanti's
``s b h (34 + 5 a s / h)``. Full recompute keeps only each layer's input (``e h``, split by
sequence parallelism) for the recomputed layers and needs one rebuilt layer at a time.
"""

from __future__ import annotations

import numpy as np

from ..formats import number_format
from ..scaling import ModelSpec
from .layout import LayoutGrid, TrainingOptions


def activation_bytes_per_layer(model: ModelSpec, g: LayoutGrid, o: TrainingOptions):
    """Bytes one layer keeps for one microbatch until its backward pass, per device.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    g : LayoutGrid
        The layouts (arrays).
    o : TrainingOptions
        Precision (saved GEMM-input size), FlashAttention, sequence parallelism, capacity
        factor, layout convention.

    Returns
    -------
    kept, full, layer_input : ndarray
        Bytes: what the layout's recompute mode keeps, what a layer keeps without
        recompute, and what a fully recomputed layer keeps (its input).

    References
    ----------
    Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models",
    2022, Sec. 4 and Table 2 (the module docstring gives each term).
    """
    s, h = model.seq_len, model.d_model
    tp = g.tp.astype(float)
    sp = g.sp_shards(o.sequence_parallel)
    tokens = g.tokens(s)
    e = o.activation_bytes
    fmt = number_format(o.gemm_precision)
    gi = fmt.stored_bytes if fmt.quantized and not fmt.cast_free else e  # Transformer Engine saves the quantized cast
    drop = model.dropout > 0
    replicated = 2 * e * h + 2 * gi * h + (2.0 * h if drop else 0.0)
    nh = model.n_heads / tp
    kv_heads = nh if model.is_mla else np.maximum(model.n_kv_heads / tp, 1.0)
    attn = e * (nh * model.qk_head_dim + kv_heads * (model.qk_head_dim + model.value_head_dim)) \
        + gi * nh * model.value_head_dim
    if model.is_mla:
        replicated = replicated + ((model.q_lora_rank or 0) + model.kv_lora_rank) * (e + gi) \
            + e * model.qk_rope_head_dim
    # Unfused attention keeps its score tensors (softmax output, dropout mask and output) in every
    # layer that is not recomputed, and in the one a full recompute is rebuilding (``full``).
    scores = 0.0 if o.flash_attention else model.n_heads * s / g.cp * (e + ((1.0 + e) if drop else 0.0)) / tp
    gate = model.fc1_width_factor
    dense_ffn = model.d_ff * (gate * e + gi) / tp
    # Each routed copy keeps its dispatched input, gathered over the ETP group (v1 counted
    # only the expert FFN activations: kept under the cs-v1 convention).
    dispatched = 0.0 if o.legacy else g.etp * h * gi
    # A clamped GLU on the per-expert path saves the clamped copy of FC1's output too (the eager
    # clamp/cat before the fused activation keep FC1's output for their backward; perf/moe.py).
    clamp = gate * e * model.d_expert if (model.activation_func_clamp_value is not None and not o.legacy
                                          and o.moe_grouped_gemm == "loop") else 0.0
    routed = model.top_k * o.capacity_factor * (model.d_expert * (gate * e + gi) + clamp + dispatched) / tp
    shared = model.n_shared_experts * model.shared_expert_width * (gate * e + gi) / tp
    moe_ffn = routed + shared + (0.0 if o.legacy else 4.0 * model.n_experts / sp)
    frac_moe = model.n_moe_layers / model.n_layers
    ffn = (1 - frac_moe) * dense_ffn + frac_moe * moe_ffn
    if model.is_hybrid:  # per block kind, averaged over the pattern (one norm and GEMM input per block)
        L = model.n_layers
        ffn = (model.n_dense_layers * dense_ffn + model.n_moe_layers * moe_ffn) / L
        attn = attn * model.n_attention_layers / L + model.n_mamba_layers / L * _mamba_activations(model, g, e, gi)
        scores = scores * model.n_attention_layers / L
        replicated = replicated / 2.0
    full = tokens * (replicated / sp + attn + scores + ffn)
    layer_input = tokens * e * h / sp
    parts = {"norm_out": (1.0 if model.is_hybrid else 2.0) * gi * h / sp,
             "mla_qkv": e * nh * (2 * model.qk_head_dim + model.value_head_dim) if model.is_mla else 0.0,
             "dense_ffn": dense_ffn, "moe_ffn": moe_ffn, "shared": shared,
             "moe_act": model.top_k * o.capacity_factor * (model.d_expert * gi + clamp) / tp}
    freed = tokens * (selective_freed_bytes(model, o, parts) + scores * ("core_attn" in o.recompute_modules))
    kept = np.where(g.rc == 2, layer_input, np.where(g.rc == 1, full - freed, full))
    return kept, full, layer_input


def selective_freed_bytes(model: ModelSpec, o: TrainingOptions, parts: dict):
    """Bytes per token and layer that selective recompute's modules do not keep (layer average).

    Megatron-Core (``TransformerConfig.recompute_modules``): ``layernorm``, ``moe_act`` and
    ``mla_up_proj`` discard their outputs after use (output-discarding checkpoints) -- the norm
    outputs (the GEMM inputs after the norms), the routed experts' activation outputs (FC2 inputs)
    and MLA's decompressed per-head Q, K, V; ``mlp``, ``moe`` and ``shared_experts`` checkpoint the
    whole submodule and keep only its input -- the dense FFN's, the MoE layer's (routed and
    shared experts, router logits) or the shared experts' activations. ``core_attn`` frees the
    score tensors (:func:`activation_bytes_per_layer`; none with FlashAttention).

    Parameters
    ----------
    model : ModelSpec
        The architecture (the share of dense, MoE and attention layers).
    o : TrainingOptions
        ``recompute_modules``.
    parts : dict
        Bytes per token of one layer (one device): ``norm_out``, ``mla_qkv``, ``dense_ffn``,
        ``moe_ffn``, ``shared``, ``moe_act``.

    Returns
    -------
    float or ndarray
        Bytes per token, averaged over the layers.
    """
    mods = o.selective_modules
    L = model.n_layers
    f_moe = model.n_moe_layers / L
    f_dense = model.n_dense_layers / L if model.is_hybrid else 1.0 - f_moe
    f_attn = model.n_attention_layers / L if model.is_hybrid else 1.0
    out = 0.0
    if "layernorm" in mods:
        out = out + parts["norm_out"]
    if "mla_up_proj" in mods:
        out = out + f_attn * parts["mla_qkv"]
    if "mlp" in mods:
        out = out + f_dense * parts["dense_ffn"]
    if "moe" in mods:  # the whole layer: its activation and shared experts with it
        out = out + f_moe * parts["moe_ffn"]
    else:
        out = out + f_moe * (("moe_act" in mods) * parts["moe_act"] + ("shared_experts" in mods) * parts["shared"])
    return out


def _mamba_activations(model: ModelSpec, g: LayoutGrid, e: float, gi: float):
    """Bytes per token a Mamba-2 mixer keeps for its backward on one TP rank.

    What the code saves (``mamba_ssm`` ``MambaSplitConv1dScanCombinedFn.forward``, called by
    Megatron-Core's ``MambaMixer._ssm_training``): the in-projection output (z, x, B, C, dt)
    and the ungated SSD output ``out_x`` -- the convolution output is recomputed in the
    backward, not kept; then the gated RMSNorm keeps its input y and the out-projection its
    input in the GEMM format. Split over TP like the heads.
    """
    from .ssm import mamba2_in_proj_width

    tp = g.tp.astype(float)
    d_inner = model.mamba_heads * model.mamba_head_dim
    in_w = mamba2_in_proj_width(model.mamba_heads, model.mamba_head_dim, model.mamba_state, model.mamba_groups)
    return (e * (in_w + 2 * d_inner) + gi * d_inner) / tp

