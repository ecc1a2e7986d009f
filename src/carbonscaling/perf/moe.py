"""Mixture-of-experts kernels: grouped expert GEMMs with few tokens per expert, routing
imbalance and the experts' per-expert and element-wise passes. The token dispatcher (permutes
and the all-to-all) is :mod:`.moe_dispatch`.

An MoE layer on one device runs its ``E / EP`` local experts as one grouped GEMM
(Megatron-Core ``TEGroupedMLP`` / ``GroupedMLP``): each expert is a separate problem of
``m = tokens routed to it`` rows, so when experts get few tokens the GEMMs are short and
tall, the ``m`` edge is padded to the tile and to the format's alignment, and tile and wave
quantization (:func:`kernels.gemm_efficiency`) cost more than in a dense FFN.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..formats import number_format
from ..hardware import Device
from . import kernels as K
from .constants import PerfConstants

# The dispatcher lived here until stop 16: its names stay importable from perf.moe.
from .moe_dispatch import (dispatch_combine_bytes, dispatch_time, distinct_ranks_per_token,  # noqa: F401
                           permute_time, remote_domains_per_token)


def tokens_per_expert(tokens, top_k, n_experts, ep, etp=1, tp=1, capacity_factor=1.0):
    """Mean routed token copies one expert replica processes per microbatch.

    ``tokens`` per attention rank are routed top-k over ``n_experts``; an expert lives on
    one of ``EP`` ranks (times ``ETP`` tensor shards that all see its tokens), and the
    ``TP`` ranks of the attention side share one token stream (sequence parallelism), so
    each expert receives ``tokens x k x EP x ETP / (E x TP)`` copies (``x`` capacity factor
    when tokens are padded to capacity).

    Parameters
    ----------
    tokens : float or ndarray
        Tokens of a microbatch per attention rank.
    top_k : int
        Experts per token.
    n_experts : int
        Routed experts per MoE layer (E).
    ep, etp, tp : int or ndarray, optional
        Expert-, expert-tensor- and tensor-parallel sizes (default 1 for ETP and TP).
    capacity_factor : float, optional
        Token capacity over the balanced share (default 1.0).

    Returns
    -------
    ndarray
        Token copies (rows) per expert replica.
    """
    return (np.asarray(tokens, dtype=float) * top_k * capacity_factor * np.asarray(ep) * np.asarray(etp)
            / (n_experts * np.asarray(tp, dtype=float)))


def routing_imbalance(mean_tokens_per_expert, local_experts, ep, balanced: bool = False):
    """Expected load of the busiest EP rank over the mean (>= 1) under random top-k routing.

    A rank receives the tokens of its ``local_experts`` experts, about Poisson with mean
    ``mu = mean_tokens_per_expert x local_experts``; the expected maximum over ``EP`` ranks
    is ``mu + sqrt(2 mu ln EP)`` (Gaussian extreme-value approximation), and the grouped
    GEMM and the all-to-all wait for it. ``balanced``: every expert gets exactly its share
    (token-drop runs padded to capacity, ``moe_pad_expert_input_to_capacity``), factor 1.
    Megatron-Core's ``moe_router_force_load_balancing`` (Megatron-Bridge's dropless benchmark
    rows) is this random routing, not an even one: ``TopKRouter.forward`` replaces the logits
    by per-rank seeded normal noise (``apply_random_logits``) before the top-k. Learned routers
    with auxiliary balancing are balanced only in expectation, so this is a lower bound on
    their imbalance.

    Parameters
    ----------
    mean_tokens_per_expert : float or ndarray
        Mean token copies per expert (:func:`tokens_per_expert`).
    local_experts : float or ndarray
        Experts per EP rank (``E / EP``).
    ep : int or ndarray
        Expert-parallel ranks.
    balanced : bool, optional
        Every expert gets exactly its share (default False).

    Returns
    -------
    ndarray
        Dimensionless factor ``1 + sqrt(2 ln EP / mu)`` (1 when balanced or EP = 1).

    References
    ----------
    Expected maximum of ``n`` Gaussians, ``mu + sigma sqrt(2 ln n)`` (e.g. Cramer,
    "Mathematical Methods of Statistics", 1946), with the Poisson ``sigma = sqrt(mu)``.
    """
    mu = np.maximum(np.asarray(mean_tokens_per_expert, dtype=float) * np.asarray(local_experts), 1e-9)
    ep = np.asarray(ep, dtype=float)
    factor = 1.0 + np.sqrt(2.0 * np.log(np.maximum(ep, 1.0)) / mu)
    return np.where(balanced | (ep <= 1), 1.0, factor)


def expert_alignment(precision: str, c: PerfConstants) -> int:
    """Rows each expert's token block is padded to: the format's scaling block, at least ``c.moe_row_alignment``.

    Parameters
    ----------
    precision : str
        Number format of the expert GEMMs.
    c : PerfConstants
        ``moe_row_alignment`` (rows).

    Returns
    -------
    int
        Rows (16 for FP8 GEMMs, 32 for the MX formats' blocks).
    """
    return max(int(c.moe_row_alignment), number_format(precision).block)


def grouped_linear_fwd_bwd_time(tok_expert, n_out, n_in, local_experts, device: Device, c: PerfConstants,
                                precision: str, in_bytes: float, imbalance=1.0, weight_cast_share=0.0):
    """Times of one grouped expert linear (``local_experts`` problems).

    Each problem has ``tok_expert x imbalance`` rows rounded up to the format's row
    alignment (FP8 GEMMs need 16-row multiples, MX formats their 32-element blocks;
    Megatron pads routed tokens to it), then the dense GEMM model applies per problem.

    Parameters
    ----------
    tok_expert : float or ndarray
        Mean token copies per expert (:func:`tokens_per_expert`).
    n_out, n_in : float or ndarray
        Output and input features of each expert's weight (after ETP sharding).
    local_experts : float or ndarray
        Problems in the grouped GEMM (experts per EP rank).
    device : Device
        Peak rates (FLOP/s), HBM bandwidth (GB/s).
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    precision : str
        Number format of the GEMMs.
    in_bytes : float
        Bytes per GEMM input element.
    imbalance : float or ndarray, optional
        Busiest-rank load factor (:func:`routing_imbalance`; default 1).
    weight_cast_share : float or ndarray, optional
        Share of one weight cast paid per call (default 0).

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds.

    References
    ----------
    Megatron-Core ``TEGroupedMLP`` / ``GroupedMLP`` (NVIDIA Megatron-LM, ``megatron/core/transformer/moe/experts.py``).
    """
    align = expert_alignment(precision, c)
    rows = np.ceil(np.asarray(tok_expert, dtype=float) * imbalance / align) * align
    rows = np.maximum(rows, align)
    return K.linear_fwd_bwd_time(rows, n_out, n_in, local_experts, device, c, precision, in_bytes, weight_cast_share)


def expert_overhead_time(local_experts, c: PerfConstants):
    """``(t_forward, t_backward)`` of the fixed per-expert cost of a grouped expert MLP.

    Transformer Engine's grouped GEMM (``GroupedLinear``, ``te_general_grouped_gemm``) is a
    loop of one cuBLAS GEMM per local expert on a few compute streams
    (``nvte_multi_stream_cublas_gemm``), with per-expert casts in quantized formats: the
    forward issues FC1 and FC2 per expert, the backward their data and weight gradients
    (2 : 4 GEMMs). Each costs a kernel start-up on the GPU and a short, partly idle tail that
    the dense model (one GEMM, wave-quantized over all experts at once) does not see.
    ``c.moe_expert_overhead_s`` is the fitted cost per local expert per MoE layer and microbatch,
    forward + backward (data/perf.yaml ``moe.expert_overhead_s``); split 1/3 forward, 2/3
    backward as the GEMMs are. It is GPU time only: the host's launches of the same loop are
    :mod:`.host`'s (charged only without CUDA graphs).

    Parameters
    ----------
    local_experts : float or ndarray
        Experts on this rank (``E / EP``); 0 when a fused grouped-MLP kernel runs them.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds per MoE layer and microbatch.
    """
    t = np.asarray(local_experts, dtype=float) * c.moe_expert_overhead_s
    return t / 3.0, 2.0 * t / 3.0


def clamped_glu_time(routed_units, device: Device, c: PerfConstants):
    """``(t_forward, t_backward)`` of the eager clamp a clamped GLU runs before its fused activation.

    Megatron-Core's ``TEGroupedMLP`` hands a clamped GLU (``activation_func_clamp_value``,
    gpt-oss) to ``weighted_bias_quick_geglu_impl``, which clamps the gate and linear halves of
    the FC1 output and concatenates them with eager PyTorch ops before the fused kernel; their
    autograd adds masks, ``where`` and the concatenation of the half-gradients. The bytes per
    FFN unit are counted from that code (``data/perf.yaml`` ``moe.clamped_glu_*``); the fused
    activation itself is the layer's elementwise FFN term.

    Parameters
    ----------
    routed_units : float or ndarray
        FFN units the rank's experts activate per microbatch (routed token copies x expert width).
    device : Device
        HBM bandwidth (GB/s).
    c : PerfConstants
        ``moe_clamped_glu_fwd_bytes``, ``moe_clamped_glu_bwd_bytes``, ``hbm_efficiency``.

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds per MoE layer and microbatch (memory-bound).
    """
    u = np.asarray(routed_units, dtype=float)
    return (K.memory_bound_time(u * c.moe_clamped_glu_fwd_bytes, device, c),
            K.memory_bound_time(u * c.moe_clamped_glu_bwd_bytes, device, c))


def expert_bias_time(routed_elements, device: Device, c: PerfConstants):
    """``(t_forward, t_backward)`` of the expert output bias added outside the grouped GEMM.

    With ``add_bias_linear``, Megatron-Core's ``TEGroupedMLP`` builds FC2 with
    ``skip_bias_add=True`` and adds each local expert's bias, scaled by the routing
    probability, in a per-expert loop (``_apply_bias``: ``t + b * p``, then ``torch.cat``);
    the backward concatenates the per-expert gradients and reduces the bias and probability
    gradients (``data/perf.yaml`` ``moe.expert_bias_*``). FC1's bias is added in the GEMM and
    is not charged.

    Parameters
    ----------
    routed_elements : float or ndarray
        Elements of the rank's FC2 output per microbatch (routed rows x ``d_model``).
    device : Device
        HBM bandwidth (GB/s).
    c : PerfConstants
        ``moe_expert_bias_fwd_bytes``, ``moe_expert_bias_bwd_bytes``, ``hbm_efficiency``.

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds per MoE layer and microbatch (memory-bound).
    """
    n = np.asarray(routed_elements, dtype=float)
    return (K.memory_bound_time(n * c.moe_expert_bias_fwd_bytes, device, c),
            K.memory_bound_time(n * c.moe_expert_bias_bwd_bytes, device, c))


def dglu_kernel_regression_time(fc2_dgrad_s, slowdown, grouped_gemm: str):
    """Seconds a slow fused dGLU + dbias kernel adds to one MoE layer's backward.

    Transformer Engine's fused grouped MLP (``moe_grouped_gemm = fused``, cuDNN frontend's
    CuTe-DSL kernels) computes FC2's data gradient in one grouped GEMM whose epilogue also takes
    the GLU's gradient, the FC1-bias gradient (dbias, a reduction over the tokens) and the
    routing-probability gradient. A release whose kernel runs ``slowdown`` times its healthy
    time adds ``(slowdown - 1)`` times that GEMM's time; the factor is a kernel measurement the
    recipe data cite (``data/megatron_bridge_recipes.yaml``, fact ``kernel_regression``). It is
    applied to the whole data-gradient GEMM because the regressed dbias path works per output
    tile, as the GEMM does (same K), so the ratio carries to other token counts.

    Parameters
    ----------
    fc2_dgrad_s : float or ndarray
        FC2's data-gradient grouped GEMM, seconds per MoE layer and microbatch (half of FC2's backward).
    slowdown : float
        The kernel's time over its healthy time (1: healthy).
    grouped_gemm : str
        ``TrainingOptions.moe_grouped_gemm``: only ``fused`` runs this kernel.

    Returns
    -------
    float or ndarray
        Seconds added to the layer's backward (0.0 for a healthy kernel or the per-expert loop).

    References
    ----------
    NVIDIA/cudnn-frontend issue 256 (``grouped_gemm_dglu_wrapper_sm100`` ~10x slower in frontend
    1.24 and 1.25) and pull request 322 (issue shape on SM100: 1362.8 us with dbias before the
    fix, 155.6 us after).
    """
    if slowdown == 1.0 or grouped_gemm != "fused":  # every search but a regressed release's: no array work
        return 0.0
    return np.asarray(fc2_dgrad_s, dtype=float) * (slowdown - 1.0)


def input_output_add_time(tokens, d_model, shared_experts, device: Device, c: PerfConstants):
    """``(t_forward, t_backward)`` of the elementwise adds an MoE layer has and a dense FFN has not.

    The pre-MLP norm's output is read by the router, the token dispatcher and (when the layer
    has them) the shared experts (Megatron-Core ``MoELayer.forward``), so autograd sums its
    gradient from two or three consumers: one add per extra consumer in the backward
    (PyTorch ``InputBuffer::add``). With shared experts the forward adds their output to the
    combined routed output (``MoELayer.combine``). Each add reads two and writes one BF16
    ``[tokens, d_model]`` tensor: ``c.moe_add_bytes`` bytes per element (``data/perf.yaml``
    ``moe.add_bytes_per_element``).

    Parameters
    ----------
    tokens : float or ndarray
        Tokens of the layer's input on this rank (the sequence-parallel slice).
    d_model : int
        Hidden size.
    shared_experts : bool
        The layer has shared experts (overlapped with the dispatch or not).
    device : Device
        HBM bandwidth (GB/s).
    c : PerfConstants
        ``moe_add_bytes``, ``hbm_efficiency``.

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds per MoE layer and microbatch (memory-bound).
    """
    n = np.asarray(tokens, dtype=float) * d_model * c.moe_add_bytes
    s = 1.0 if shared_experts else 0.0
    return K.memory_bound_time(s * n, device, c), K.memory_bound_time((1.0 + s) * n, device, c)


def router_time(tokens, n_experts, d_model, router_dtype, device: Device, c: PerfConstants,
                precision: str = "bf16", in_bytes: float = 2.0):
    """``(t_forward, t_backward)`` of the router's gating GEMM ``[tokens, d] @ [d, E]``.

    Megatron-Core's ``RouterGatingLinearFunction`` with Transformer Engine: without
    ``moe_router_dtype`` the router is a plain linear in the input's dtype (``precision``,
    ``in_bytes``). With ``moe_router_dtype = 'fp32'`` the forward GEMM reads the BF16 input and
    weight and writes FP32 logits (``c.moe_router_fp32_fwd_bytes`` more per logit); the backward
    casts the saved input and the weight to FP32, runs the data- and weight-gradient GEMMs on
    FP32 operands -- all-FP32 GEMMs, which Transformer Engine runs on TF32 tensor cores, at the
    device's ``peak_tflops_tf32`` (``data/tf32.yaml``; where a device has none, its BF16 rate,
    a lower bound) -- and casts both FP32 gradients back to BF16
    (``c.moe_router_fp32_bwd_bytes`` per element of the input and of the weight).

    Parameters
    ----------
    tokens : float or ndarray
        Rows of the router input on this rank (the sequence-parallel slice of a microbatch).
    n_experts, d_model : int
        Router outputs and inputs (the router weight is not split over TP).
    router_dtype : {None, 'fp32', 'fp64'}
        ``ModelSpec.moe_router_dtype``. ``'fp64'`` (plain ``torch.mm`` on FP64) is not costed.
    device : Device
        Peak rates (BF16 and TF32), HBM bandwidth, SRAM, compute units.
    c : PerfConstants
        GEMM and HBM constants, ``moe_router_fp32_fwd_bytes``, ``moe_router_fp32_bwd_bytes``.
    precision : str, optional
        GEMM format of a router without ``router_dtype`` (default ``'bf16'``).
    in_bytes : float, optional
        Bytes per input element of that router (default 2.0).

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds per MoE layer and microbatch.

    References
    ----------
    NVIDIA/Megatron-LM megatron/core/transformer/moe/moe_utils.py @00611e6
    (RouterGatingLinearFunction); NVIDIA/TransformerEngine
    transformer_engine/common/gemm/cublaslt_gemm.cu @5c62f72 ("Use TF32 only for pure FP32 GEMM").
    """
    if router_dtype is None:
        return K.linear_fwd_bwd_time(tokens, n_experts, d_model, 1, device, c, precision, in_bytes)
    if router_dtype != "fp32":
        raise InputError("moe_router_dtype", f"only None and 'fp32' are costed (an FP64 router runs "
                                             f"torch.mm on FP64, whose rates are not in the catalog), "
                                             f"got {router_dtype!r}")
    t = np.asarray(tokens, dtype=float)
    fwd = K.gemm_time(t, n_experts, d_model, 1, device, c, "bf16", number_format("bf16").element_bytes) \
        + K.memory_bound_time(c.moe_router_fp32_fwd_bytes * t * n_experts, device, c)
    tf32 = device if device.peak_tflops_tf32 is None else device.model_copy(
        update={"peak_tflops": device.peak_tflops_tf32})  # the same GEMM model at the TF32 peak
    dgrad = K.gemm_time(t, d_model, n_experts, 1, tf32, c, "bf16", 4.0)
    wgrad = K.gemm_time(d_model, n_experts, t, 1, tf32, c, "bf16", 4.0)
    casts = K.memory_bound_time(c.moe_router_fp32_bwd_bytes * (t + n_experts) * d_model, device, c)
    return fwd, dgrad + wgrad + casts
