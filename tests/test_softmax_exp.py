"""Softmax exponentials on the special-function units (MUFU.EX2) in fused attention.

Hand calculations: the device rate from data/sfu.yaml and the catalog's BF16 peak, the matmul
fraction derived from FlashAttention-2's A100 measurement, each pass as its matmuls plus its
exponentials, and devices without an SFU rate unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import kernels as K
from carbonscaling.perf.constants import default_constants

C = default_constants()


def test_h100_exp_rate_matches_flashattention3s_special_function_figure():
    d = load_system("H100-SXM").device
    # 989.4 TF x 16 / 4096 = 3.865e12 exp/s; FA-3 quotes 3.9 TFLOPS of special functions on H100 SXM5
    assert d.exp_per_s == pytest.approx(989.4e12 * 16 / 4096, rel=1e-3)
    assert d.exp_per_s == pytest.approx(3.9e12, rel=0.02)
    assert d.cell_flags["sfu_ex2_per_clk_per_sm"] == "secondary"  # FlashAttention-3/4 papers


def test_blackwell_ultra_has_twice_blackwells_exp_rate_per_bf16_flop():
    gb200, gb300 = load_system("GB200").device, load_system("GB300").device
    assert gb200.exp_per_s == pytest.approx(1e12 * gb200.peak_tflops * 16 / 8192)
    assert gb300.exp_per_s / gb300.peak_tflops == pytest.approx(2 * gb200.exp_per_s / gb200.peak_tflops)
    assert gb300.cell_flags["sfu_ex2_per_clk_per_sm"] == "unverified"  # blog, per-clock figure inferred


def test_matmul_fraction_is_the_a100_measurement_with_its_exponentials_taken_out():
    # 4 d (1 + 2.5) = 1792 FLOPs per score forward + backward at d = 128; two exps per score at
    # 16 / 2048 exps per FLOP = 256 FLOP-equivalents: 1792 / f_mm + 256 = 1792 / 0.55
    assert C.flash_fraction_of_peak == 0.55 and C.flash_reference_head_dim == 128
    assert C.flash_matmul_fraction == pytest.approx(1792 / (1792 / 0.55 - 256))
    assert C.flash_matmul_fraction == pytest.approx(0.5969, abs=1e-4)
    # a device with the A100's exponential rate reproduces the measured 0.55 at d = 128
    a100 = load_system("A100-80GB").device.model_copy(
        update={"sfu_ex2_per_clk_per_sm": 16, "mma_bf16_flop_per_clk_per_sm": 2048})
    bh, s = 64.0, 4096.0
    f, b = K.flash_attention_time(bh, s, 128.0, a100, C)
    flops = 4.0 * bh * s * s / 2 * 128 * (1 + C.flash_backward_to_forward)
    assert f + b == pytest.approx(flops / (a100.peak_flops() * 0.55 * C.gemm_in_situ_factor))


def test_blackwell_attention_is_its_matmuls_plus_its_exponentials_by_hand():
    d = load_system("B200").device
    bh, s, hd = 64.0, 4096.0, 128.0
    scores = bh * s * s / 2.0
    mma = 2250e12 * C.flash_matmul_fraction * C.gemm_in_situ_factor
    t_exp = scores / (2250e12 * 16 / 8192 * C.gemm_in_situ_factor)
    f, b = K.flash_attention_time(bh, s, hd, d, C)
    assert f == pytest.approx(4 * scores * hd / mma + t_exp)
    assert b == pytest.approx(C.flash_backward_to_forward * 4 * scores * hd / mma + t_exp)
    # at d = 128 the B200's exponentials take as long as its matmuls at peak (8192 / 16 = 4 x 128):
    # the pass is 1 + f_mm slower than its matmuls alone
    assert f / (4 * scores * hd / mma) == pytest.approx(1 + C.flash_matmul_fraction)


def test_blackwell_ultra_attention_gains_only_the_halved_exponentials():
    gb200, gb300 = load_system("GB200").device, load_system("GB300").device
    bh, s, hd = 32.0, 8192.0, 128.0
    f2, b2 = K.flash_attention_time(bh, s, hd, gb200, C)
    f3, b3 = K.flash_attention_time(bh, s, hd, gb300, C)
    # same BF16 peak: matmul parts equal; GB300's exponentials take half of GB200's
    fm = C.flash_matmul_fraction
    assert (f2 + b2) / (f3 + b3) == pytest.approx((3.5 + 2 * fm) / (3.5 + fm))
    assert f3 < f2 and b3 < b2


def test_devices_without_an_sfu_rate_keep_the_matmul_only_kernel():
    for name in ("A100-80GB", "H100", "B100", "MI300X"):
        d = load_system(name).device
        assert d.exp_per_s is None
        bh, s, hd = np.array([8.0, 64.0]), 2048.0, 16.0  # tiny heads: the exponentials would bind if costed
        f, b = K.flash_attention_time(bh, s, hd, d, C)
        fl = 4.0 * bh * s * s * hd / 2.0 / (d.peak_flops() * C.flash_fraction_of_peak * C.gemm_in_situ_factor)
        np.testing.assert_allclose(f, fl)
        np.testing.assert_allclose(b, C.flash_backward_to_forward * fl)
        assert np.all(K.softmax_exp_time(bh * s * s / 2, d, C) == 0.0)


def test_exp_rate_scales_with_a_projected_peak():
    from carbonscaling.hardware import project
    base = load_system("B200")
    later = project(base, 2.0)
    assert later.device.exp_per_s / base.device.exp_per_s == pytest.approx(
        later.device.peak_tflops / base.device.peak_tflops)
