"""NVFP4 casts as Transformer Engine runs them, against hand-counted bytes (formats.yaml ``nvfp4``).

Activations and gradients: an amax read (2 B, plain and Hadamard-transformed amax in one pass), a
row-wise cast (2 + 0.5 + 1/16) and a separate Hadamard-transform-and-cast of the column-wise copy
(2 + 0.5 + 1/16) = 7.125 B per element. Weights (no Hadamard transform, 2-D scales): an amax read and
one kernel writing both copies, 2 + 2 + 2 x 0.5625 = 5.125 B per element.
"""

import pytest

from carbonscaling.formats import number_format
from carbonscaling.hardware import load_system
from carbonscaling.perf import kernels as K
from carbonscaling.perf.constants import default_constants

C = default_constants()
GB200 = load_system("GB200").device
STORED = 0.5 + 1.0 / 16.0


def _stream(n_bytes, d):
    return n_bytes / (d.hbm_gb_s * 1e9 * C.hbm_efficiency)


def test_nvfp4_activation_and_weight_bytes():
    f = number_format("nvfp4")
    assert f.stored_bytes == pytest.approx(STORED)
    assert f.quantize_bytes() == pytest.approx(2.0 + (2.0 + STORED) + (2.0 + STORED))  # 7.125
    assert f.quantize_bytes(weight=True) == pytest.approx(2.0 + 2.0 + 2.0 * STORED)  # 5.125
    # Blackwell's native column-wise reads do not drop NVFP4's second copy (block scales are directional)
    assert f.quantize_bytes(columnwise_native=True) == pytest.approx(7.125)
    assert f.copies(columnwise_native=True) == 2


def test_other_formats_keep_their_cast_counts():
    # only NVFP4's weights take the fused-copies path; the other formats are as before
    # MXFP8: no amax pass; row- and column-wise copies each cast from BF16 (read 2 B, write 1 + 1/32 B)
    assert number_format("mxfp8").quantize_bytes() == pytest.approx(2 * (2.0 + 1.0 + 1.0 / 32.0))  # 6.0625
    assert number_format("mxfp8").quantize_bytes(weight=True) == pytest.approx(6.0625)
    assert number_format("fp8").quantize_bytes(weight=True) == pytest.approx(7.0)
    assert number_format("bf16").quantize_bytes(weight=True) == 0.0


def test_quantize_time_of_weights_and_activations():
    n = 1e9
    assert K.quantize_time(n, "nvfp4", GB200, C) == pytest.approx(_stream(7.125 * n, GB200))
    assert K.quantize_time(n, "nvfp4", GB200, C, weight=True) == pytest.approx(_stream(5.125 * n, GB200))


def test_nvfp4_linear_pays_activation_gradient_and_weight_casts():
    tok, n_out, n_in, share = 8192.0, 4096.0, 8192.0, 0.25
    fwd, bwd = K.linear_fwd_bwd_time(tok, n_out, n_in, 1, GB200, C, "nvfp4", STORED, weight_cast_share=share)
    g_f = K.gemm_time(tok, n_out, n_in, 1, GB200, C, "nvfp4", STORED)
    g_b = K.gemm_time(tok, n_in, n_out, 1, GB200, C, "nvfp4", STORED) \
        + K.gemm_time(n_in, n_out, tok, 1, GB200, C, "nvfp4", STORED)
    assert fwd - g_f == pytest.approx(_stream(7.125 * tok * n_in + 5.125 * share * n_in * n_out, GB200))
    assert bwd - g_b == pytest.approx(_stream(7.125 * tok * n_out, GB200))
    # with RHT the norm cannot take the cast: a norm-fused input still pays it
    fused, _ = K.linear_fwd_bwd_time(tok, n_out, n_in, 1, GB200, C, "nvfp4", STORED, weight_cast_share=share,
                                     norm_fused=True)
    assert fused == pytest.approx(fwd)


def test_which_norms_write_the_quantized_input():
    """TE's norm kernels write FP8 (delayed) and, with Megatron-Bridge's cuDNN norm, MXFP8 directly;
    current-scaling FP8, block-wise FP8 and NVFP4 with the Hadamard transform are cast after the norm."""
    fused = {f: number_format(f).norm_fused_cast for f in ("fp8", "fp8-delayed", "fp8-blockwise", "mxfp8", "nvfp4")}
    assert fused == {"fp8": False, "fp8-delayed": True, "fp8-blockwise": False, "mxfp8": True, "nvfp4": False}
    tok, n_out, n_in = 8192.0, 4096.0, 8192.0
    plain, _ = K.linear_fwd_bwd_time(tok, n_out, n_in, 1, GB200, C, "fp8-blockwise", 1.0)
    normed, _ = K.linear_fwd_bwd_time(tok, n_out, n_in, 1, GB200, C, "fp8-blockwise", 1.0, norm_fused=True)
    assert normed == pytest.approx(plain)
