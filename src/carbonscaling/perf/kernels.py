"""Kernel times on one device: GEMMs against compute/SRAM/HBM rooflines, memory-bound work.

All functions are numpy-vectorized: shapes may be arrays of any broadcastable shape.
"""

from __future__ import annotations

import numpy as np

from ..formats import number_format
from ..hardware import Device
from .constants import PerfConstants


def gemm_efficiency(m, n, k, batch, device: Device, c: PerfConstants, precision: str = "bf16"):
    """Achievable fraction of peak for a (batched) ``m x k @ k x n`` GEMM in a number format.

    The large-GEMM maximum (a measured, per-device and per-format number: the best-shape
    matmul microbenchmark over the datasheet peak) times the in-situ factor (what a
    kernel sustains inside a busy training step), times three losses that follow from
    how tensor cores are fed: tile quantization (the output is computed in
    ``tile x tile`` blocks; partial blocks waste work), wave quantization (blocks are
    scheduled in waves over the compute units; the last wave is partly idle) and the
    K-loop prologue/epilogue (``K / (K + k0)``).

    Parameters
    ----------
    m, n, k : float or ndarray
        GEMM dimensions (rows of the output, columns of the output, inner dimension).
    batch : float or ndarray
        Independent GEMMs of that shape launched together.
    device : Device
        Peak rates per format (FLOP/s), HBM bandwidth (GB/s), SRAM (MB), compute units.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    precision : str, optional
        Number format (``formats.yaml`` name, default ``'bf16'``).

    Returns
    -------
    ndarray
        Fraction of the format's peak FLOP/s, in (0, 1].

    References
    ----------
    NVIDIA, "Matrix Multiplication Background User's Guide" (tile and wave quantization).
    """
    tile = c.gemm_tile
    tiles_m = np.ceil(m / tile)
    tiles_n = np.ceil(n / tile)
    tile_util = (m * n) / (tiles_m * tiles_n * tile * tile)
    blocks = tiles_m * tiles_n * batch
    cu = device.compute_units
    wave_util = blocks / (np.ceil(blocks / cu) * cu)
    k_util = k / (k + c.gemm_k_overhead)
    eff_max = (device.gemm_efficiency_max_for(precision) or c.gemm_efficiency_max_default) * number_format(precision).gemm_rate
    return eff_max * c.gemm_in_situ_factor * tile_util * wave_util * k_util


def gemm_time(m, n, k, batch, device: Device, c: PerfConstants, precision: str = "bf16", in_bytes: float = 2.0):
    """Seconds for ``batch`` GEMMs of ``m x k @ k x n``: max of the compute and HBM rooflines.

    HBM traffic assumes operands are re-read once per SRAM-sized block: a block edge
    of ``sqrt(SRAM / (2 * bytes))`` (at least one tile) bounds reuse, so large SRAM
    (and its projected growth) lowers traffic.

    Parameters
    ----------
    m, n, k : float or ndarray
        GEMM dimensions; ``2 m n k batch`` FLOPs.
    batch : float or ndarray
        GEMMs of that shape.
    device : Device
        Peak rates per format (FLOP/s), HBM bandwidth (GB/s), SRAM (MB), compute units.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    precision : str, optional
        Number format of the operands (default ``'bf16'``).
    in_bytes : float, optional
        Bytes per input element (default 2.0); the output is written in 2 bytes.

    Returns
    -------
    ndarray
        Seconds (roofline model: Williams, Waterman and Patterson, CACM 2009).
    """
    flops = 2.0 * m * n * k * batch
    t_compute = flops / (device.peak_flops(precision) * gemm_efficiency(m, n, k, batch, device, c, precision))
    block = max(float(c.gemm_tile), float(np.sqrt(device.sram_mb * 1e6 / (2.0 * in_bytes))))
    traffic = batch * (in_bytes * (m * k * np.ceil(n / block) + k * n * np.ceil(m / block)) + 2.0 * m * n)
    t_memory = traffic / (device.hbm_gb_s * 1e9 * c.hbm_efficiency)
    return np.maximum(t_compute, t_memory)


def linear_fwd_bwd_time(tokens, n_out, n_in, batch, device: Device, c: PerfConstants, precision: str, in_bytes: float,
                        weight_cast_share=0.0, norm_fused=False):
    """Forward, and backward (data gradient + weight gradient) of ``y = x W`` for ``tokens`` rows.

    The two backward GEMMs have transposed shapes. In a quantized format each also pays
    its casts (:func:`quantize_time`): the input activation in the forward, the output
    gradient in the backward, and ``weight_cast_share`` of one weight cast
    (``1 / microbatches`` where the recipe caches the quantized weights over a step's
    microbatches, as Transformer Engine does).

    Parameters
    ----------
    tokens : float or ndarray
        Rows of ``x`` (tokens of a microbatch on this rank).
    n_out, n_in : float or ndarray
        Output and input features of ``W`` (already divided by TP where sharded).
    batch : float or ndarray
        Independent linears of that shape (experts, heads).
    device : Device
        Peak rates per format (FLOP/s), HBM bandwidth (GB/s), SRAM (MB), compute units.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    precision : str
        Number format of the GEMMs.
    in_bytes : float
        Bytes per GEMM input element.
    weight_cast_share : float or ndarray, optional
        Share of one weight cast paid by this call (default 0).
    norm_fused : bool or ndarray, optional
        The input comes from a norm, which writes it already quantized where the format allows
        (``formats.yaml: norm_fused_cast``; no separate cast; default False).

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds of the forward and of the backward (dgrad + wgrad).
    """
    fwd = gemm_time(tokens, n_out, n_in, batch, device, c, precision, in_bytes)
    dgrad = gemm_time(tokens, n_in, n_out, batch, device, c, precision, in_bytes)
    wgrad = gemm_time(n_in, n_out, tokens, batch, device, c, precision, in_bytes)
    fmt = number_format(precision)
    if fmt.quantized:
        cast_in = np.where(np.asarray(norm_fused) & fmt.norm_fused_cast, 0.0, tokens * n_in)
        fwd = fwd + quantize_time(batch * cast_in, precision, device, c) \
            + quantize_time(batch * weight_cast_share * n_in * n_out, precision, device, c, weight=True)
        dgrad = dgrad + quantize_time(batch * tokens * n_out, precision, device, c)
    return fwd, dgrad + wgrad


def quantize_time(elements, precision: str, device: Device, c: PerfConstants, weight: bool = False):
    """Seconds to cast ``elements`` BF16 values into the copies a quantized GEMM needs.

    HBM traffic per element from the format (:meth:`NumberFormat.quantize_bytes`): an amax
    read for current scaling, the cast writing the row-wise copy and, in the same kernel, the
    column-wise copy the backward needs (Transformer Engine's fused quantize kernels), except
    NVFP4's Hadamard-transformed column-wise copy of activations and gradients, which a second
    kernel casts from a second read. Casts are counted as separate kernels; Transformer Engine
    fuses the forward cast into LayerNorm and the activation function where the scale needs
    no amax pass first (docs/performance.md).

    Parameters
    ----------
    elements : float or ndarray
        Values cast.
    precision : str
        Target number format (``fp8``, ``mxfp8``, ``nvfp4``, ...).
    device : Device
        Peak rates per format (FLOP/s), HBM bandwidth (GB/s), SRAM (MB), compute units.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    weight : bool, optional
        The values are weights (NVFP4: no Hadamard transform, both copies in one kernel;
        default False: activations or gradients).

    Returns
    -------
    ndarray
        Seconds (HBM-bound).
    """
    fmt = number_format(precision)
    per_element = fmt.quantize_bytes(columnwise_native=device.fp8_columnwise_native, weight=weight)
    return memory_bound_time(per_element * elements, device, c)


def cross_entropy_bytes(impl, c: PerfConstants):
    """HBM bytes per logit of the vocabulary cross entropy (forward + backward) and bytes per logit
    kept for its backward, by Megatron-Core ``cross_entropy_fusion_impl``.

    ``'native'``: Megatron-Core's fused cross entropy (FP32 copy, in-place exp, divide and scale,
    cast back; ``c.cross_entropy_native_bytes``, FP32 softmax kept); ``'te'``: Transformer Engine's
    Triton kernels (one read for the row max and sum, one read-and-write of the gradient in place in
    BF16; ``c.cross_entropy_te_bytes``, the BF16 logits kept); ``None``: a recipe that does not say:
    ``c.cross_entropy_passes`` FP32 passes (``c.logits_bytes`` each), FP32 logits kept.

    Parameters
    ----------
    impl : {'native', 'te', None}
        ``ModelSpec.cross_entropy_fusion_impl``.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).

    Returns
    -------
    (float, float)
        Bytes moved per logit, bytes kept per logit.
    """
    if impl == "native":
        return c.cross_entropy_native_bytes, c.logits_bytes
    if impl == "te":
        return c.cross_entropy_te_bytes, c.logits_bytes_te
    return c.cross_entropy_passes * c.logits_bytes, c.logits_bytes


def memory_bound_time(n_bytes, device: Device, c: PerfConstants):
    """Seconds to stream ``n_bytes`` through HBM at the achievable bandwidth.

    Parameters
    ----------
    n_bytes : float or ndarray
        Bytes read plus written.
    device : Device
        Peak rates per format (FLOP/s), HBM bandwidth (GB/s), SRAM (MB), compute units.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).

    Returns
    -------
    ndarray
        Seconds: ``n_bytes / (hbm_gb_s x 1e9 x hbm_efficiency)``.
    """
    return n_bytes / (device.hbm_gb_s * 1e9 * c.hbm_efficiency)


def flash_attention_time(batch_heads, seq, head_dim, device: Device, c: PerfConstants, precision: str = "bf16"):
    """Fused (FlashAttention-style) causal attention.

    Causal masking skips half the score blocks. The backward pass recomputes the
    scores, so it does more matmul work than the forward (``flash_backward_to_forward``).
    On devices with a special-function rate in the catalog (``data/sfu.yaml``) each pass is
    its matmuls at :attr:`~.constants.PerfConstants.flash_matmul_fraction` of peak *plus* its
    exponentials (:func:`softmax_exp_time`): a tile's softmax sits between its two matmuls
    (BMM1 -> softmax -> BMM2), and on Blackwell the tensor cores wait for it (NVIDIA's
    Blackwell Ultra softmax blog, which halves that wait by doubling MUFU.EX2). The matmul
    fraction is derived from FlashAttention-2's A100 measurement with the A100's own
    exponentials taken out, so the measured datum stays reproduced. Devices without a rate
    keep the matmul-only kernel at ``flash_fraction_of_peak`` (the papers' tables, AMD, TPUs).

    Parameters
    ----------
    batch_heads : float or ndarray
        Sequences x attention heads on this rank.
    seq : float or ndarray
        Sequence length (tokens).
    head_dim : float or ndarray
        Dimension per head.
    device : Device
        Peak rates per format (FLOP/s), HBM bandwidth (GB/s), SRAM (MB), compute units.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    precision : str, optional
        Number format of the attention matmuls (default ``'bf16'``).

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds.

    References
    ----------
    Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work
    Partitioning", 2023 (forward ``4 s^2 d`` FLOPs per head, halved by causal masking;
    the A100 measurement behind ``flash_fraction_of_peak``). NVIDIA Technical Blog, "Making
    Softmax More Efficient with NVIDIA Blackwell Ultra" (GB200: BMM2 waits for the softmax).
    """
    scores = batch_heads * seq * seq / 2.0  # causal: half the score blocks
    fwd_flops = 4.0 * scores * head_dim
    if device.exp_per_s is None:
        rate = device.peak_flops(precision) * c.flash_fraction_of_peak * c.gemm_in_situ_factor
        return fwd_flops / rate, c.flash_backward_to_forward * fwd_flops / rate
    rate = device.peak_flops(precision) * c.flash_matmul_fraction * c.gemm_in_situ_factor
    t_exp = softmax_exp_time(scores, device, c)  # one exp per score forward, one more backward
    return fwd_flops / rate + t_exp, c.flash_backward_to_forward * fwd_flops / rate + t_exp


def softmax_exp_time(scores, device: Device, c: PerfConstants):
    """Seconds the special-function units take for one exponential per attention score.

    FlashAttention's forward takes one ``exp`` per score for the softmax and its backward one
    more to recompute ``P = exp(S - LSE)``; both run on the SMs' special-function units
    (MUFU.EX2), whose rate did not grow with the tensor cores' on Blackwell. The exponentials
    of a tile come between its two matmuls, so a pass adds this time to its matmul time
    (:func:`flash_attention_time`). The SFUs run at the same in-step clock as the tensor cores,
    hence ``gemm_in_situ_factor`` on both.

    Parameters
    ----------
    scores : float or ndarray
        Attention scores (query-key pairs x heads x sequences) computed in the pass.
    device : Device
        ``exp_per_s`` (``data/sfu.yaml`` with the catalog's BF16 peak); 0 s when it is None.
    c : PerfConstants
        ``gemm_in_situ_factor``.

    Returns
    -------
    ndarray
        Seconds: ``scores / (exp_per_s x gemm_in_situ_factor)``.

    References
    ----------
    Zadouri et al., "FlashAttention-4: Algorithm and Kernel Pipelining Co-Design for Asymmetric
    Hardware Scaling", 2026 (MUFU 16 ops/clock/SM on Hopper and Blackwell); NVIDIA Technical Blog,
    "Making Softmax More Efficient with NVIDIA Blackwell Ultra" (doubled MUFU.EX2 throughput).
    """
    rate = device.exp_per_s
    if rate is None:
        return 0.0 * np.asarray(scores, dtype=float)
    return scores / (rate * c.gemm_in_situ_factor)


def sliding_window_work_fraction(seq, window):
    """Share of a causal attention's score work left under a sliding window of ``window`` keys.

    Causal attention scores ``s^2 / 2`` query-key pairs; with each query limited to the last
    ``w`` keys it is ``s w - w^2 / 2`` (the first ``w`` queries see fewer), so the fraction is
    ``2 w / s - (w / s)^2`` for ``w < s`` and 1 otherwise. Fused kernels (FlashAttention,
    cuDNN) skip the score blocks outside the band; e.g. gpt-oss's 128-token window at
    ``s = 4096`` leaves 6.1 % of the work.

    Parameters
    ----------
    seq : float or ndarray
        Sequence length (tokens).
    window : float or ndarray
        Keys each query attends to (Megatron ``window_size[0]``).

    Returns
    -------
    ndarray
        Fraction of the causal score work (0..1].
    """
    r = np.minimum(np.asarray(window, dtype=float) / np.asarray(seq, dtype=float), 1.0)
    return 2.0 * r - r * r


def unfused_attention_time(batch_heads, seq, head_dim, device: Device, c: PerfConstants, precision: str = "bf16"):
    """Attention as two batched GEMMs plus softmax/mask/dropout passes over the score tensor.

    Selective recompute repeats the forward.

    Parameters
    ----------
    batch_heads : float or ndarray
        Sequences x attention heads on this rank.
    seq : float or ndarray
        Sequence length (tokens).
    head_dim : float or ndarray
        Dimension per head.
    device : Device
        Peak rates per format (FLOP/s), HBM bandwidth (GB/s), SRAM (MB), compute units.
    c : PerfConstants
        The performance constants (``data/perf.yaml``).
    precision : str, optional
        Number format of the two GEMMs (default ``'bf16'``).

    Returns
    -------
    t_forward, t_backward : ndarray
        Seconds.

    References
    ----------
    Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models", 2022.
    """
    s_fwd, s_bwd = linear_fwd_bwd_time(seq, seq, head_dim, batch_heads, device, c, precision, 2.0)
    v_fwd, v_bwd = linear_fwd_bwd_time(seq, head_dim, seq, batch_heads, device, c, precision, 2.0)
    score_bytes = 2.0 * batch_heads * seq * seq
    t_elem_fwd = memory_bound_time(score_bytes * c.unfused_attention_passes_fwd, device, c)
    t_elem_bwd = memory_bound_time(score_bytes * c.unfused_attention_passes_bwd, device, c)
    return s_fwd + v_fwd + t_elem_fwd, s_bwd + v_bwd + t_elem_bwd
