"""FP8 attention core (Megatron-Core ``fp8_dot_product_attention``): which recipes run it, the format,
and its time by hand (matmuls at the FP8 rate plus the casts around the kernel)."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.formats import number_format
from carbonscaling.hardware import load_system
from carbonscaling.perf import kernels as K
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.perf.sublayers import _attention, fp8_attention_cast_time
from carbonscaling.scaling import named_model
from carbonscaling.validation.throughput import describe_row

from helpers import bench_row, one_layout

DS = named_model("deepseek-v3")
GB300 = load_system("GB300")


@pytest.mark.parametrize("precision, on, want", [
    ("mxfp8", True, "fp8"), ("fp8", True, "fp8"), ("fp8-delayed", True, "fp8"),
    ("mxfp8", False, "bf16"), ("bf16", True, "bf16"),
    ("nvfp4", True, "bf16"), ("fp8-blockwise", True, "bf16"),   # TE: no FP8 fused attention for these recipes
])
def test_attention_precision(precision, on, want):
    assert TrainingOptions(precision=precision, fp8_attention=on).attention_precision == want


def test_casts_by_hand():
    """MLA on one rank, 4096 tokens: Q, K (192 per head) and V (128) for 128 heads are cast to FP8
    (amax read + cast, one copy on Blackwell), the FP8 output converted back (1 + 2 B); the backward
    casts the output gradient."""
    c, dev = default_constants(), GB300.device
    qkv = 4096 * 128 * (192 + 192 + 128)
    out = 4096 * 128 * 128
    per = 2.0 + (2.0 + 1.0)  # B per element: BF16 amax read, then the cast reads 2 B and writes 1 B
    assert dev.fp8_columnwise_native  # Blackwell reads the row-wise copy column-wise: no transpose copy
    assert number_format("fp8").quantize_bytes(columnwise_native=True) == per
    f, b = fp8_attention_cast_time(DS, 4096, 1.0, dev, c)
    np.testing.assert_allclose(f, K.memory_bound_time(per * qkv + 3.0 * out, dev, c), rtol=1e-12)
    np.testing.assert_allclose(b, K.memory_bound_time(per * out, dev, c), rtol=1e-12)


def test_attention_core_runs_at_the_fp8_rate_plus_casts():
    c = default_constants()
    g = one_layout(tp=1, pp=2, vp=8, dp=128, ep=32, microbatch=1, global_batch_sequences=4096)
    off = _attention(DS, GB300, g, TrainingOptions(precision="mxfp8"), c)
    on = _attention(DS, GB300, g, TrainingOptions(precision="mxfp8", fp8_attention=True), c)
    hd = (DS.qk_head_dim + DS.value_head_dim) / 2.0
    f8 = K.flash_attention_time(128, 4096, hd, GB300.device, c, "fp8")
    x = fp8_attention_cast_time(DS, 4096, 1.0, GB300.device, c)
    np.testing.assert_allclose(on[2], f8[0] + x[0], rtol=1e-12)
    np.testing.assert_allclose(on[3], f8[1] + x[1], rtol=1e-12)
    np.testing.assert_allclose(on[0], off[0], rtol=1e-12)     # projections unchanged
    assert on[2] + on[3] < off[2] + off[3]                     # cheaper on GB300 even with the casts


def _row(system, container):
    return bench_row("DeepSeekV3", system, container, "MXFP8")


def test_only_the_recipes_that_set_it_run_it():
    _, _, o, _, assumed = describe_row(_row("DGX-GB300", "26.06"))
    assert o.fp8_attention and "recipe: FP8 attention (fp8_dot_product_attention)" in assumed
    for system, container in (("DGX-GB200", "26.06"), ("DGX-GB300", "26.04"), ("DGX-B300", "26.06")):
        assert not describe_row(_row(system, container))[2].fp8_attention
