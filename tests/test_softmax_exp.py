"""Softmax exponentials on the special-function units (MUFU.EX2) bounding FlashAttention.

Hand calculations: the device rate from data/sfu.yaml and the catalog's BF16 peak, the head
dimension below which the exponentials bind, and devices without an SFU rate unchanged.
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


def test_exponentials_bind_below_the_crossover_head_dim_on_blackwell():
    d = load_system("B200").device
    bh, s = 64.0, 4096.0
    scores = bh * s * s / 2.0
    t_exp = scores / (2250e12 * 16 / 8192 * C.gemm_in_situ_factor)
    mma = 2250e12 * C.flash_fraction_of_peak * C.gemm_in_situ_factor
    # forward: 4 d FLOPs per score vs one exp -> crossover d* = f x 8192 / (4 x 16) = 70.4 at f = 0.55
    d_star = C.flash_fraction_of_peak * 8192 / (4 * 16)
    for hd in (32.0, 64.0):  # below d*: the forward is the exponentials' time, the backward its matmuls'
        f, b = K.flash_attention_time(bh, s, hd, d, C)
        assert hd < d_star
        assert f == pytest.approx(t_exp)
        assert b == pytest.approx(max(C.flash_backward_to_forward * 4 * scores * hd / mma, t_exp))
    f, b = K.flash_attention_time(bh, s, 128.0, d, C)  # above: matmuls alone, as before
    assert f == pytest.approx(4 * scores * 128 / mma)
    assert b == pytest.approx(C.flash_backward_to_forward * 4 * scores * 128 / mma)
    # backward (2.5 x the matmuls, one exp) binds only below d* / 2.5
    f, b = K.flash_attention_time(bh, s, 16.0, d, C)
    assert 16.0 < d_star / C.flash_backward_to_forward  # 28.2
    assert b == pytest.approx(t_exp)


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
