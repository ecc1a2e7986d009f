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

from functools import lru_cache

import numpy as np

from .._data import load_yaml
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


def mamba2_params(d_model, n_heads, head_dim, d_state, n_groups, conv_kernel=None):
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
        Width of the causal depthwise convolution; default: ``conv_kernel`` of
        ``data/ssm_kernels.yaml`` (Megatron-Core's and mamba_ssm's ``d_conv``, 4).

    Returns
    -------
    int or float
        Parameters (count).

    References
    ----------
    Megatron-Core ``MambaMixer`` (``megatron/core/ssm/mamba_mixer.py``); Dao and Gu 2024.
    """
    if conv_kernel is None:
        conv_kernel = _kernel_table()["conv_kernel"]["value"]
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


@lru_cache(maxsize=1)
def _kernel_table() -> dict:
    return load_yaml("ssm_kernels.yaml")


def _per_token_elements(n_heads, head_dim, d_state, n_groups, chunk) -> dict:
    """Elements per token of each tensor class of ``data/ssm_kernels.yaml`` (local heads and groups)."""
    d_inner = n_heads * head_dim
    bc = n_groups * d_state
    return {"d_inner": d_inner, "bc": bc, "heads": n_heads, "states": d_inner * d_state / chunk,
            "cb": n_groups * chunk, "in_proj": 2 * d_inner + 2 * bc + n_heads}


def ssd_kernel_work(n_heads, head_dim, d_state, n_groups, chunk, batched=True) -> dict:
    """HBM bytes and tensor-core FLOPs per token of each kernel of a Mamba-2 mixer's training step.

    The kernels between the two projections, forward and backward, as Megatron-Core's
    ``MambaMixer`` runs them (``mamba_split_conv1d_scan_combined`` of ``mamba_ssm``: the causal
    conv1d, the five SSD kernels with the z gate fused into the chunk scan, the gated RMSNorm;
    the backward recomputes the conv1d and the chunk states, then runs thirteen gradient
    kernels), each tensor counted from the code (``data/ssm_kernels.yaml``).

    Parameters
    ----------
    n_heads : float or ndarray
        SSM heads on this rank (H / TP).
    head_dim : int
        Head dimension (P).
    d_state : int
        State size (N).
    n_groups : float or ndarray
        B/C groups on this rank (G / TP).
    chunk : int
        Chunk length (Q, tokens).
    batched : bool or ndarray, optional
        The microbatch holds more than one sequence, so the layout copies move data (default True).

    Returns
    -------
    dict
        ``{'forward': [(name, bytes, flops), ...], 'backward': [...]}`` per token.

    References
    ----------
    state-spaces/mamba ``mamba_ssm/ops/triton/ssd_combined.py`` (Dao and Gu, ICML 2024);
    NVIDIA Megatron-LM ``megatron/core/ssm/mamba_mixer.py``.
    """
    table = _kernel_table()
    n = _per_token_elements(n_heads, head_dim, d_state, n_groups, chunk)
    frac = table["causal_block_fraction"]["value"]
    mm = {"hpn": 2.0 * n["d_inner"] * d_state, "gqn": 2.0 * n_groups * chunk * d_state,
          "hpq": 2.0 * n["d_inner"] * chunk * frac}
    out = {}
    for direction, kernels in table["kernels"].items():
        rows = []
        for k in kernels:
            nbytes = sum(2.0 * cnt * n[t] for t, cnt in k.get("bf16", {}).items())
            nbytes = nbytes + sum(4.0 * cnt * n[t] for t, cnt in k.get("fp32", {}).items())
            if k.get("batched_only"):
                nbytes = nbytes * np.asarray(batched, dtype=float)
            flops = sum(cnt * mm[t] for t, cnt in k.get("flops", {}).items())
            rows.append((k["name"], nbytes, flops))
        out[direction] = rows
    return out


def ssd_kernel_times(tokens, n_heads, head_dim, d_state, n_groups, chunk, device: Device, c: PerfConstants,
                     batched=True):
    """Forward and backward times of the kernels between a Mamba-2 mixer's projections.

    Each kernel (:func:`ssd_kernel_work`) takes the longer of its HBM traffic at the achievable
    bandwidth and its small batched matmuls at the fused-attention fraction of the BF16 peak
    (the SSD kernels run in BF16 under every recipe); at Mamba-2's shapes nearly all are
    memory-bound, so the chunk states (``H P N / Q`` float32 values per token, written,
    passed along the chunks and read again) and the recomputation in the backward dominate.

    Parameters
    ----------
    tokens : float or ndarray
        Tokens of a microbatch on this rank.
    n_heads : float or ndarray
        SSM heads on this rank.
    head_dim : int
        Head dimension (P).
    d_state : int
        State size (N).
    n_groups : float or ndarray
        B/C groups on this rank.
    chunk : int
        Chunk length (Q).
    device : Device
        BF16 peak (FLOP/s), HBM bandwidth (GB/s).
    c : PerfConstants
        ``hbm_efficiency``, ``flash_fraction_of_peak``, ``gemm_in_situ_factor``.
    batched : bool or ndarray, optional
        More than one sequence per microbatch (default True).

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds.
    """
    rate = device.peak_flops("bf16") * c.flash_fraction_of_peak * c.gemm_in_situ_factor
    work = ssd_kernel_work(n_heads, head_dim, d_state, n_groups, chunk, batched)
    times = []
    for direction in ("forward", "backward"):
        t = 0.0
        for _, nbytes, flops in work[direction]:
            t = t + np.maximum(K.memory_bound_time(tokens * nbytes, device, c), tokens * flops / rate)
        times.append(t)
    return times[0], times[1]


def mamba2_layer_times(tokens, d_model, n_heads, head_dim, d_state, n_groups, chunk, tp, device: Device,
                       c: PerfConstants, precision: str = "bf16", in_bytes: float = 2.0, weight_cast_share=0.0,
                       batched=True):
    """Times of one Mamba-2 mixer on one device for ``tokens`` tokens.

    ``tp`` splits heads, ``d_inner`` and the B/C groups (Megatron-Core MambaMixer); the
    projections run in the recipe's GEMM format, the kernels between them (conv1d, SSD,
    gated RMSNorm and their backward, :func:`ssd_kernel_times`) in BF16. The input projection
    is Transformer Engine's ``LayerNormLinear`` (Megatron-Core ``mamba_layer_specs.py``:
    ``in_proj=TELayerNormColumnParallelLinear``), so the norm writes its input already
    quantized where the format allows it (``formats.yaml: norm_fused_casts``), as for
    attention's QKV projection.

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
    batched : bool or ndarray, optional
        More than one sequence per microbatch (default True; see :func:`ssd_kernel_work`).

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
    # in_proj is a LayerNormColumnParallelLinear (Megatron-Core mamba_layer_specs.py): its input comes
    # from the block's norm, quantized there where the format allows (formats.yaml norm_fused_casts)
    i_f, i_b = K.linear_fwd_bwd_time(tokens, in_w, d_model, 1, device, c, precision, in_bytes, weight_cast_share,
                                     norm_fused=True)
    o_f, o_b = K.linear_fwd_bwd_time(tokens, d_model, d_inner, 1, device, c, precision, in_bytes, weight_cast_share)
    s_f, s_b = ssd_kernel_times(tokens, heads, head_dim, d_state, groups, chunk, device, c, batched)
    return i_f + o_f + s_f, i_b + o_b + s_b
