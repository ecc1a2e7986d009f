"""Memory per device: weights, gradients, optimizer state, activations, fragmentation.

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
Under 1F1B the first stage holds ``min(m, p)`` microbatches in flight (stage ``k`` holds
``min(m, p - k)``), times ``1 + (p - 1) / (p v)`` with interleaving (Narayanan et al. 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..formats import number_format, recipe_value
from ..hardware import System
from ..scaling import ModelSpec
from .constants import PerfConstants
from .layout import RL_ALL, RL_AUTO, LayoutGrid, TrainingOptions
from .offload import kept_layers


@dataclass(frozen=True)
class Memory:
    params_dense: np.ndarray     # non-expert parameters on the first stage's device
    params_expert: np.ndarray    # expert parameters on that device
    optimizer_params: np.ndarray  # parameters whose optimizer step this device runs
    weights: np.ndarray          # bytes (incl. ZeRO-3 gather buffers and FP8 weight copies)
    grads: np.ndarray
    optimizer: np.ndarray
    activations: np.ndarray
    total: np.ndarray            # incl. fragmentation and reserved memory
    recompute_layers: np.ndarray  # recomputed layers per (virtual) stage under full recompute
    recomputed_first: np.ndarray  # layers recomputed on the first stage
    weight_shards: tuple = ()     # (dense, expert) ranks the weights are sharded over


# ---- parameters ----------------------------------------------------------------------------
def nonexpert_params_per_layer(model: ModelSpec) -> float:
    """Attention, norms, the dense FFN (or the shared experts and router), averaged over layers.

    Parameters
    ----------
    model : ModelSpec
        The architecture.

    Returns
    -------
    float
        Parameters per layer (count, not bytes), before TP sharding.
    """
    frac_moe = model.n_moe_layers / model.n_layers
    moe_dense = model.shared_expert_params + model.router_params
    if model.is_hybrid:  # one block per layer (Mamba, attention, MoE or MLP), one norm each
        return (model.n_attention_layers * model.attn_params_per_layer + model.n_mamba_layers
                * model.mamba_params_per_layer + model.n_dense_layers * model.dense_ffn_params
                + model.n_moe_layers * moe_dense) / model.n_layers + model.d_model
    return model.attn_params_per_layer + (1 - frac_moe) * model.dense_ffn_params + frac_moe * moe_dense + 2 * model.d_model


def expert_params_per_layer(model: ModelSpec) -> float:
    """Routed-expert parameters per layer, averaged over all layers (dense layers count 0).

    Parameters
    ----------
    model : ModelSpec
        The architecture.

    Returns
    -------
    float
        Parameters per layer (count), before EP/ETP sharding.
    """
    return model.n_moe_layers / model.n_layers * model.n_experts * model.expert_params


def mtp_params(model: ModelSpec) -> float:
    """One MTP module: a layer, the 2h -> h projection and two norms (embedding/head shared).

    Parameters
    ----------
    model : ModelSpec
        The architecture.

    Returns
    -------
    float
        Parameters (count) of the model's ``mtp_layers`` multi-token-prediction modules.

    References
    ----------
    DeepSeek-AI, "DeepSeek-V3 Technical Report", 2024, Sec. 2.2 (multi-token prediction).
    """
    return model.mtp_layers * (nonexpert_params_per_layer(model) + expert_params_per_layer(model)
                               + 2 * model.d_model ** 2 + 2 * model.d_model)


def data_parallel_groups(g: LayoutGrid):
    """Sizes of the dense (DP x CP) and expert (TP CP DP / (ETP EP)) data-parallel groups.

    Parameters
    ----------
    g : LayoutGrid
        The layouts (arrays).

    Returns
    -------
    dense, expert : ndarray
        Ranks over which dense and expert gradients are reduced (Megatron-Core's
        data-parallel and expert-data-parallel groups).
    """
    return g.dp * g.cp, (g.tp * g.cp * g.dp) // (g.etp * g.ep)


def local_shards(g: LayoutGrid, system: System):
    """Data-parallel ranks of the dense and the expert groups inside one scale-up domain.

    Parameters
    ----------
    g : LayoutGrid
        The layouts (arrays).
    system : System
        ``scale_up_domain``: devices per NVLink/ICI domain.

    Returns
    -------
    dense, expert : ndarray
        Ranks per domain (the hierarchical ZeRO-3 sharding group, ``zero = 4``).
    """
    n_d, n_e = data_parallel_groups(g)
    dense = np.minimum(n_d, np.maximum(1, system.scale_up_domain // (g.tp * g.cp)))
    expert = np.minimum(n_e, np.maximum(1, system.scale_up_domain // (g.etp * g.ep)))
    return dense, expert


def shard_groups(g: LayoutGrid, system: System):
    """Ranks the (weights, grads, optimizer) of (dense, expert) parameters are sharded over.

    ZeRO-1 shards the optimizer state, ZeRO-2 also the gradients, ZeRO-3 and FSDP also the
    weights (over the FSDP group for hybrid sharding); ``zero = 4`` shards weights and
    gradients within the scale-up domain only (hpZ / flexible sharding).

    Parameters
    ----------
    g : LayoutGrid
        The layouts (arrays).
    system : System
        The scale-up domain size.

    Returns
    -------
    weights, grads, optimizer : tuple of (ndarray, ndarray)
        Each a ``(dense, expert)`` pair of sharding degrees (1 = replicated).

    References
    ----------
    Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter
    Models", SC 2020; Wang et al., "ZeRO++", 2023 (hpZ).
    """
    n_d, n_e = data_parallel_groups(g)
    loc_d, loc_e = local_shards(g, system)
    fsdp = g.fsdp > 0
    # FSDP / hybrid sharding: the group of `fsdp` DP ranks (times CP); experts likewise.
    fs_d = np.where(fsdp, g.fsdp * g.cp, n_d)
    fs_e = np.where(fsdp, np.maximum(1, (n_e * g.fsdp) // g.dp), n_e)
    z = g.zero
    w = (np.where(z == 4, loc_d, np.where(z == 3, fs_d, 1)), np.where(z == 4, loc_e, np.where(z == 3, fs_e, 1)))
    gr = (np.where(z == 4, loc_d, np.where(z >= 2, fs_d, 1)), np.where(z == 4, loc_e, np.where(z >= 2, fs_e, 1)))
    op = (np.where(z >= 1, fs_d, 1), np.where(z >= 1, fs_e, 1))
    return w, gr, op


# ---- activations ---------------------------------------------------------------------------
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
    sp = np.where(o.sequence_parallel & (g.tp > 1), tp, 1.0)
    tokens = g.mb * s / g.cp
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
    gate = 2.0 if model.ffn_gated else 1.0
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


def linear_weight_bytes(o: TrainingOptions, c: PerfConstants, columnwise_native: bool = False) -> float:
    """Bytes per parameter of the layers' linear weights in the run's number format.

    BF16 (or the papers' 8-bit QAT): the weight itself. Quantized formats keep a row- and
    a column-wise quantized copy (formats.yaml ``recipe.fp8_weight_copies``); with
    ``fp8_param_gather`` (Megatron-Bridge's FP8 and MXFP8 recipes) those copies are the
    parameters, otherwise they come on top of the BF16 weight.

    Parameters
    ----------
    o : TrainingOptions
        The number format (``gemm_precision``) and activation element size.
    c : PerfConstants
        ``fp8_param_gather_formats``: formats whose quantized copies replace the BF16 weight.
    columnwise_native : bool, optional
        The tensor cores read a row-wise copy column-wise too (one copy fewer; default False).

    Returns
    -------
    float
        Bytes per parameter.
    """
    fmt = number_format(o.gemm_precision)
    if not fmt.quantized or fmt.cast_free:
        return o.activation_bytes
    # One copy where the tensor cores read it column-wise too (Blackwell, per-tensor FP8).
    n_copies = recipe_value("fp8_weight_copies") * fmt.copies(columnwise_native) / 2.0
    copies = n_copies * fmt.stored_bytes
    return copies if fmt.name in c.fp8_param_gather_formats else 2.0 + copies


# ---- the whole device --------------------------------------------------------------------
def _stage_params(model: ModelSpec, g: LayoutGrid, n, first, last):
    """(dense, expert) parameters on one device of a stage with ``n`` layers."""
    tp = g.tp.astype(float)
    emb = model.vocab * model.d_model / tp
    head = np.where(last, emb, 0.0)  # the output layer (tied embeddings keep a copy on the last stage too)
    head = np.where(first & last & model.tied_embeddings, 0.0, head)
    dense = n * nonexpert_params_per_layer(model) / tp + np.where(first, emb, 0.0) + head
    dense = dense + np.where(last, mtp_params(model) / tp, 0.0)
    expert = n * expert_params_per_layer(model) / (g.etp * g.ep)
    return dense, expert


def memory_per_device(model: ModelSpec, system: System, g: LayoutGrid, o: TrainingOptions,
                      c: PerfConstants, n_first, n_last, n_mid=None) -> Memory:
    """Peak memory over the first, second and last pipeline stage's devices.

    Grid rows with ``rl == RL_AUTO`` get the fewest recomputed layers per (virtual) stage
    that fit (``Memory.recompute_layers``); memory falls linearly with that number.

    Parameters
    ----------
    model : ModelSpec
        The architecture.
    system : System
        The device (HBM capacity in GiB) and scale-up domain.
    g : LayoutGrid
        The layouts (arrays).
    o : TrainingOptions
        Precision, recompute-related and memory options (dynamic eviction).
    c : PerfConstants
        Bytes per optimizer state and gradient, fragmentation factor, reserved GB.
    n_first, n_last : float or ndarray
        Layers on the first and the last pipeline stage.
    n_mid : float or ndarray, optional
        Layers on the largest middle stage (default ``n_last``).

    Returns
    -------
    Memory
        Bytes per device at the peak stage (weights, grads, optimizer, activations, total
        including fragmentation and reserved memory) and the recomputed layers.

    References
    ----------
    Korthikanti et al. 2022 (activations); Narayanan et al., "Efficient Large-Scale
    Language Model Training on GPU Clusters Using Megatron-LM", SC 2021 (microbatches in
    flight under 1F1B and interleaving); Rajbhandari et al. 2020 (ZeRO).
    """
    n_mid = n_last if n_mid is None else n_mid
    pp = g.pp.astype(float)
    v = g.v.astype(float)
    m = g.micro.astype(float)
    grad_bytes = o.gradient_bytes(c)
    w_bytes = o.activation_bytes
    param_bytes = linear_weight_bytes(o, c, system.device.fp8_columnwise_native)
    (w_d, w_e), (g_d, g_e), (o_d, o_e) = shard_groups(g, system)
    sharded = g.zero >= 3
    layer_params = nonexpert_params_per_layer(model) / g.tp + expert_params_per_layer(model) / (g.etp * g.ep)
    gather_buffers = np.where(sharded & (w_d > 1), (2.0 * w_bytes + grad_bytes) * layer_params, 0.0)
    kept, full, inp = activation_bytes_per_layer(model, g, o)
    logits = g.mb * model.seq_len / g.cp * model.vocab / g.tp * c.logits_bytes * (1 + model.mtp_layers)
    frag = c.fragmentation_factor_dynamic_eviction if o.dynamic_eviction else c.fragmentation_factor
    opt_b = c.optimizer_state_bytes_per_param
    is_pp1 = g.pp == 1
    one = np.ones_like(pp, dtype=bool)
    # (layers, first?, last?, microbatches in flight, exists?) of the candidate peak stages
    # Megatron-Core's EP overlap schedules one more warm-up forward chunk with interleaving
    # (get_pp_rank_microbatches); at PP 1 its paired forward allocates what the backward frees.
    ep_warmup = np.where((g.v > 1) & bool(o.overlap_ep_comm and not o.legacy) & model.is_moe, 1.0 / v, 0.0)
    stages = [
        (n_first, one, is_pp1, np.minimum(m, pp) * np.where(g.v > 1, 1.0 + (pp - 1) / (pp * v), 1.0) + ep_warmup,
         one),
        (n_last, ~one, one, np.ones_like(pp), ~is_pp1),
    ]
    if (g.pp > 2).any() and not o.legacy:  # a middle stage may hold more layers than the ends (uneven splits)
        stages.insert(1, (n_mid, ~one, ~one, np.minimum(m, np.maximum(pp - 1, 1))
                          * np.where(g.v > 1, 1.0 + (pp - 2) / (pp * v), 1.0) + ep_warmup, g.pp > 2))
    static = []
    for n, first, last, inflight, exists in stages:
        p_d, p_e = _stage_params(model, g, n, first, last)
        # Embeddings and the output layer stay in BF16; the layers' linear weights follow the format.
        emb = p_d - n * nonexpert_params_per_layer(model) / g.tp
        weights = param_bytes * (p_d - emb) / w_d + w_bytes * emb / w_d + param_bytes * p_e / w_e + gather_buffers
        grads = grad_bytes * (p_d / g_d + p_e / g_e)
        opt = opt_b * (p_d / o_d + p_e / o_e)
        fixed = weights + grads + opt + np.where(last, logits, 0.0)
        static.append((p_d, p_e, weights, grads, opt, fixed, n, inflight, exists))

    rl = _resolve_recompute_layers(g, static, full, inp, frag, c, system)
    offloaded = o.cpu_offload_layers if system.device.host_link_gb_s is not None else 0  # search.check_offload
    rows = []
    for (p_d, p_e, weights, grads, opt, fixed, n, inflight, exists), stage in zip(static, stages):
        r = np.where(g.rc == 2, np.minimum(n, v * rl), 0.0)
        # CPU offloading (PP 1, no recompute) keeps L - N layers' activations in HBM (perf/offload.py)
        n = np.where(stage[1] & (g.pp == 1) & (g.rc == 0), kept_layers(n, offloaded), n)
        act = inflight * ((n - r) * np.where(g.rc == 2, full, kept) + r * inp) + np.where(r > 0, full, 0.0)
        act = act + np.where(stage[2], logits, 0.0)
        total = np.where(exists, (weights + grads + opt + act) * frag + c.reserved_gb * 1e9, 0.0)
        rows.append((weights, grads, opt, act, total, r))
    totals = np.stack([r[4] for r in rows])
    peak = np.argmax(totals, axis=0)

    def pick(k):
        return np.choose(peak, [r[k] for r in rows])

    return Memory(
        params_dense=static[0][0], params_expert=static[0][1],
        optimizer_params=np.max(np.stack([np.where(s[8], s[0] / o_d + s[1] / o_e, 0.0) for s in static]), axis=0),
        weights=pick(0), grads=pick(1), optimizer=pick(2), activations=pick(3), total=totals.max(axis=0),
        recompute_layers=np.where(g.rc == 2, rl, 0), recomputed_first=rows[0][5], weight_shards=(w_d, w_e),
    )


def _resolve_recompute_layers(g, static, full, inp, frag, c, system):
    """Per-chunk recomputed layers: the grid's, or for ``RL_AUTO`` the fewest that fit in HBM."""
    auto = (g.rc == 2) & (g.rl == RL_AUTO)
    rl = np.where(g.rl == RL_AUTO, RL_ALL, g.rl).astype(float)
    if not auto.any():
        return rl
    cap = (system.device.hbm_gb * 2**30 - c.reserved_gb * 1e9) / frag
    v = g.v.astype(float)
    need = np.ones_like(v)
    for p_d, p_e, weights, grads, opt, fixed, n, inflight, exists in static:
        # fixed + full + inflight (n full - r (full - inp)) <= cap, r = v rl
        excess = np.where(exists, fixed + full + inflight * n * full - cap, 0.0)
        per = inflight * np.maximum(full - inp, 1e-9) * v
        need = np.maximum(need, np.ceil(np.maximum(excess, 0.0) / per))
    most = np.ceil(np.max(np.stack([s[6] for s in static]), axis=0) / v)
    need = np.where(need >= most, RL_ALL, need)
    return np.where(auto, need, rl)
