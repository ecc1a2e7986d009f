"""Mamba-2 (state-space duality, SSD) layers: parameters, FLOPs and time on one device.

Cost model of Dao & Gu, "Transformers are SSMs: Generalized Models and Efficient
Algorithms Through Structured State Space Duality" (ICML 2024, arXiv 2405.21060),
section 6: the sequence is cut into chunks of ``Q`` tokens; per head (state size ``N``,
head dim ``P``) the SSD algorithm does

1. intra-chunk outputs, a masked attention-like product: ``C B^T`` (``2 Q N`` FLOPs per
   token) then times ``X`` (``2 Q P``);
2. chunk states ``B^T X``: ``2 N P`` per token;
3. the state recurrence across chunks (``O(N P)`` per chunk, negligible);
4. outputs from the carried states ``C h``: ``2 N P`` per token.

so ``2 Q (N + P) + 4 N P`` forward FLOPs per token and head, on tensor cores in small
batched matmuls. Megatron-Core's ``MambaMixer`` (the layer of Nemotron-H / Nemotron 3)
wraps it in an input projection ``d -> 2 d_inner + 2 G N + H`` (z, x, B, C, dt), a causal
depthwise convolution of width ``conv_kernel`` over x, B, C, a gated RMSNorm and an output
projection ``d_inner -> d``; with tensor parallelism the heads and ``d_inner`` are split
(B and C groups too), as for attention heads.
"""

from __future__ import annotations

import numpy as np

from ..hardware import Device
from . import kernels as K
from .constants import PerfConstants


def ssd_flops_per_token(n_heads, head_dim, d_state, chunk):
    """Forward FLOPs of the SSD core per token (all heads), Dao & Gu 2024 section 6.

    Parameters
    ----------
    n_heads : float or ndarray
        SSM heads (H).
    head_dim : int
        Head dimension (P).
    d_state : int
        State size (N).
    chunk : int
        Chunk length (Q, tokens).

    Returns
    -------
    float or ndarray
        FLOPs per token: ``H (2 Q (N + P) + 4 N P)``.

    References
    ----------
    Dao and Gu, "Transformers are SSMs", ICML 2024 (arXiv 2405.21060), Sec. 6.
    """
    return n_heads * (2.0 * chunk * (d_state + head_dim) + 4.0 * d_state * head_dim)


def mamba2_in_proj_width(n_heads, head_dim, d_state, n_groups):
    """Outputs of the input projection: z and x (``d_inner`` each), B and C (``G N`` each), dt (``H``).

    Parameters
    ----------
    n_heads : float or ndarray
        SSM heads (H).
    head_dim : int
        Head dimension (P).
    d_state : int
        State size (N).
    n_groups : int
        B/C groups (G).

    Returns
    -------
    int or ndarray
        Output features: ``2 H P + 2 G N + H``.
    """
    d_inner = n_heads * head_dim
    return 2 * d_inner + 2 * n_groups * d_state + n_heads


def mamba2_params(d_model, n_heads, head_dim, d_state, n_groups, conv_kernel=4):
    """Parameters of one Mamba-2 mixer (projections, conv, A, D, dt bias, gated-norm weight).

    Parameters
    ----------
    d_model : int
        Hidden size.
    n_heads : float or ndarray
        SSM heads (H).
    head_dim : int
        Head dimension (P).
    d_state : int
        State size (N).
    n_groups : int
        B/C groups (G).
    conv_kernel : int, optional
        Width of the causal depthwise convolution (default 4).

    Returns
    -------
    int or float
        Parameters (count).

    References
    ----------
    Megatron-Core ``MambaMixer`` (``megatron/core/ssm/mamba_mixer.py``); Dao and Gu 2024.
    """
    d_inner = n_heads * head_dim
    conv_ch = d_inner + 2 * n_groups * d_state
    return (d_model * mamba2_in_proj_width(n_heads, head_dim, d_state, n_groups) + d_inner * d_model
            + conv_ch * (conv_kernel + 1) + 3 * n_heads + d_inner)


def mamba2_flops_per_token(d_model, n_heads, head_dim, d_state, n_groups, chunk):
    """Forward FLOPs per token of one Mamba-2 mixer: projections plus the SSD core.

    Parameters
    ----------
    d_model : int
        Hidden size.
    n_heads : float or ndarray
        SSM heads (H).
    head_dim : int
        Head dimension (P).
    d_state : int
        State size (N).
    n_groups : int
        B/C groups (G).
    chunk : int
        Chunk length (Q).

    Returns
    -------
    float
        FLOPs per token (forward only).
    """
    proj = 2.0 * d_model * (mamba2_in_proj_width(n_heads, head_dim, d_state, n_groups) + n_heads * head_dim)
    return proj + ssd_flops_per_token(n_heads, head_dim, d_state, chunk)


def ssd_core_time(tokens, n_heads, head_dim, d_state, chunk, device: Device, c: PerfConstants):
    """Times of the SSD core for ``tokens`` tokens of ``n_heads`` local heads.

    Its matmuls are small and batched like FlashAttention's, so they run at the fused-attention
    fraction of the BF16 peak (the SSD kernels run in BF16 under every recipe); the backward
    does ``ssm_backward_to_forward`` times the forward work (gradients of C, B, X and the
    decays, with the chunk states recomputed).

    Parameters
    ----------
    tokens : float or ndarray
        Tokens on this device.
    n_heads : float or ndarray
        SSM heads (H).
    head_dim : int
        Head dimension (P).
    d_state : int
        State size (N).
    chunk : int
        Chunk length (Q).
    device : Device
        BF16 peak (FLOP/s).
    c : PerfConstants
        ``flash_fraction_of_peak``, ``gemm_in_situ_factor``, ``ssm_backward_to_forward``.

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds.
    """
    flops = tokens * ssd_flops_per_token(n_heads, head_dim, d_state, chunk)
    rate = device.peak_flops("bf16") * c.flash_fraction_of_peak * c.gemm_in_situ_factor
    return flops / rate, c.ssm_backward_to_forward * flops / rate


def mamba2_layer_times(tokens, d_model, n_heads, head_dim, d_state, n_groups, chunk, tp, device: Device,
                       c: PerfConstants, precision: str = "bf16", in_bytes: float = 2.0, weight_cast_share=0.0):
    """Times of one Mamba-2 mixer on one device for ``tokens`` tokens.

    ``tp`` splits heads, ``d_inner`` and the B/C groups (Megatron-Core MambaMixer); the
    projections run in the recipe's GEMM format, the SSD core in BF16, and the
    convolution, gating and norm are HBM-bound passes (``ssm_elementwise_bytes`` per
    element of the local ``d_inner`` and B/C channels, backward ``elementwise_bwd_to_fwd``
    times that).

    Parameters
    ----------
    tokens : float or ndarray
        Tokens of a microbatch on this device.
    d_model : int
        Hidden size.
    n_heads : float or ndarray
        SSM heads (H).
    head_dim : int
        Head dimension (P).
    d_state : int
        State size (N).
    n_groups : int
        B/C groups (G).
    chunk : int
        Chunk length (Q).
    tp : int or ndarray
        Tensor-parallel size.
    device : Device
        Peak rates (FLOP/s), HBM bandwidth (GB/s).
    c : PerfConstants
        The performance constants.
    precision : str, optional
        GEMM format of the projections (default ``'bf16'``).
    in_bytes : float, optional
        Bytes per GEMM input element (default 2.0).
    weight_cast_share : float or ndarray, optional
        Share of one weight cast paid per call (default 0).

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds.

    References
    ----------
    Dao and Gu, "Transformers are SSMs", ICML 2024, Sec. 6; Megatron-Core ``MambaMixer``.
    """
    tp = np.asarray(tp, dtype=float)
    heads = n_heads / tp
    groups = np.maximum(n_groups / tp, 1.0)
    d_inner = heads * head_dim
    in_w = 2 * d_inner + 2 * groups * d_state + heads
    i_f, i_b = K.linear_fwd_bwd_time(tokens, in_w, d_model, 1, device, c, precision, in_bytes, weight_cast_share)
    o_f, o_b = K.linear_fwd_bwd_time(tokens, d_model, d_inner, 1, device, c, precision, in_bytes, weight_cast_share)
    s_f, s_b = ssd_core_time(tokens, heads, head_dim, d_state, chunk, device, c)
    elem_f = K.memory_bound_time(c.ssm_elementwise_bytes * tokens * (d_inner + 2 * groups * d_state), device, c)
    elem_b = c.elementwise_bwd_to_fwd * elem_f
    return i_f + o_f + s_f + elem_f, i_b + o_b + s_b + elem_b
