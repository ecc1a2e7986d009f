"""The FP32 MoE router (Megatron ``moe_router_dtype = 'fp32'``) against hand calculations.

Megatron-Core's ``RouterGatingLinearFunction`` (moe_utils.py) with Transformer Engine: the forward
GEMM reads BF16 and writes FP32 logits; the backward casts the saved input and the weight to FP32,
runs both gradient GEMMs on FP32 operands -- TF32 tensor cores (TE cublaslt_gemm.cu) at the
device's ``peak_tflops_tf32`` (data/tf32.yaml) -- and casts the gradients back to BF16. Byte counts
are data/perf.yaml ``moe.router_fp32_*`` (read from the code); each memory term is
``bytes / (HBM GB/s x 1e9 x hbm_efficiency)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from carbonscaling.errors import InputError
from carbonscaling.hardware import load_system, project
from carbonscaling.perf import kernels as K
from carbonscaling.perf import moe, step
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import ModelSpec, catalog_entry, named_model

from helpers import layout_grids

C = default_constants()
H100 = load_system("H100-SXM")
BW = H100.device.hbm_gb_s * 1e9 * C.hbm_efficiency  # achievable bytes/s
T, D, E = 4096, 7168, 256  # one DeepSeek-V3 microbatch (mb 1, seq 4096, TP 1) through the router


def test_byte_counts_are_the_passes_read_from_the_code():
    # forward: FP32 logits written in 4 B, not the 2 B a GEMM output is counted with
    assert C.moe_router_fp32_fwd_bytes == 4 - 2
    # backward per input (and weight) element: .to(fp32) read 2 write 4, FP32 gradient +2 B, .to(bf16) read 4 write 2
    assert C.moe_router_fp32_bwd_bytes == (2 + 4) + (4 - 2) + (4 + 2)


def test_tf32_peaks_are_half_the_bf16_tensor_core_rate_on_hopper_and_blackwell():
    for name, bf16, tf32 in (("H100-SXM", 989, 494.7), ("H200", 989, 494.7), ("B200", 2250, 1100),
                             ("B300", 2250, 1100), ("GB200", 2450, 1250), ("GB300", 2450, 1250)):
        dev = load_system(name).device
        assert (dev.peak_tflops, dev.peak_tflops_tf32) == (bf16, tf32)
        assert dev.cell_flags["peak_tflops_tf32"] in ("datasheet", "secondary", "derived")
        assert "data/tf32.yaml" in dev.source
        assert 0.48 < dev.peak_tflops_tf32 / dev.peak_tflops < 0.52  # half, as the datasheets round it (1.1 PF)
    assert load_system("TPU-v5p").device.peak_tflops_tf32 is None  # no TF32 tensor cores in the catalog


def test_projection_scales_the_tf32_peak_with_the_others():
    dev = project(H100, years_ahead=2).device
    assert dev.peak_tflops_tf32 / 494.7 == pytest.approx(dev.peak_tflops / 989)


def test_bf16_router_is_a_plain_linear():
    f, b = moe.router_time(T, E, D, None, H100.device, C)
    lf, lb = K.linear_fwd_bwd_time(T, E, D, 1, H100.device, C, "bf16", 2.0)
    assert (f, b) == (lf, lb)


def test_fp32_forward_by_hand():
    f, _ = moe.router_time(T, E, D, "fp32", H100.device, C)
    gemm = K.gemm_time(T, E, D, 1, H100.device, C, "bf16", 2.0)  # BF16 operands, no input cast
    assert float(f) == pytest.approx(float(gemm) + 2 * T * E / BW)


def test_fp32_backward_by_hand():
    _, b = moe.router_time(T, E, D, "fp32", H100.device, C)
    tf32 = H100.device.model_copy(update={"peak_tflops": 494.7})
    dgrad = K.gemm_time(T, D, E, 1, tf32, C, "bf16", 4.0)
    wgrad = K.gemm_time(D, E, T, 1, tf32, C, "bf16", 4.0)
    casts = 14 * (T + E) * D / BW  # 436,731,904 B of casts
    assert 14 * (T + E) * D == 436_731_904
    assert float(b) == pytest.approx(float(dgrad + wgrad) + casts)
    _, b16 = moe.router_time(T, E, D, None, H100.device, C)
    assert float(b) > 3 * float(b16)  # the casts alone outweigh the BF16 backward at this shape


def test_compute_bound_gradients_run_at_the_tf32_rate():
    # a large router (compute-bound even with 4-byte operands): the backward GEMMs take
    # peak_bf16 / peak_tf32 = 989 / 494.7 as long as the BF16 ones
    t, d, e = 65536, 8192, 4096
    tf32 = H100.device.model_copy(update={"peak_tflops": H100.device.peak_tflops_tf32})
    slow = K.gemm_time(t, d, e, 1, tf32, C, "bf16", 4.0) + K.gemm_time(d, e, t, 1, tf32, C, "bf16", 4.0)
    fast = K.gemm_time(t, d, e, 1, H100.device, C, "bf16", 2.0) + K.gemm_time(d, e, t, 1, H100.device, C, "bf16", 2.0)
    assert float(slow / fast) == pytest.approx(989 / 494.7)


def test_device_without_tf32_cell_costs_the_gemms_at_its_bf16_rate():
    tpu = load_system("TPU-v5p").device
    _, b = moe.router_time(T, E, D, "fp32", tpu, C)
    bw = tpu.hbm_gb_s * 1e9 * C.hbm_efficiency
    gemms = K.gemm_time(T, D, E, 1, tpu, C, "bf16", 4.0) + K.gemm_time(D, E, T, 1, tpu, C, "bf16", 4.0)
    assert float(b) == pytest.approx(float(gemms) + 14 * (T + E) * D / bw)


def test_vectorised_over_tokens():
    f, b = moe.router_time(np.array([T, 2 * T]), E, D, "fp32", H100.device, C)
    assert f.shape == b.shape == (2,)
    assert b[1] > b[0]


def test_fp64_is_refused_with_the_field_name():
    with pytest.raises(InputError, match="moe_router_dtype"):
        moe.router_time(T, E, D, "fp64", H100.device, C)


def test_model_field_takes_megatrons_values_only():
    m = named_model("qwen3-30b-a3b")
    for v in (None, "fp32", "fp64"):
        assert m.model_copy(update={"moe_router_dtype": v}).moe_router_dtype == v
    with pytest.raises(ValidationError, match="moe_router_dtype"):
        ModelSpec(d_model=1024, n_layers=2, moe_router_dtype="bf16")


@pytest.mark.parametrize("name,dtype", [("deepseek-v3", "fp32"), ("kimi-k2", "fp32"), ("nemotron-3-nano", "fp32"),
                                        ("qwen3-30b-a3b", None), ("qwen3-235b-a22b", None),
                                        ("gpt-oss-120b", None), ("mixtral-8x7b", None)])
def test_catalog_sets_the_recipes_router_dtype_with_its_source(name, dtype):
    assert named_model(name).moe_router_dtype == dtype
    if dtype:  # the provider or recipe that sets it is cited in the notes
        assert "moe_router_dtype fp32" in catalog_entry(name)["notes"]
        assert "Megatron-Bridge" in catalog_entry(name)["notes"]


_grid = layout_grids(tp=1, pp=1, dp=64, ep=64, microbatch=1, zero=1, global_batch_sequences=1024)


def test_moe_layer_pays_exactly_the_router_difference():
    m = named_model("deepseek-v3")
    o = TrainingOptions(precision="bf16")
    g = _grid()
    f1, b1, _ = step._ffn(m, H100, g, o, C, True)
    f0, b0, _ = step._ffn(m.model_copy(update={"moe_router_dtype": None}), H100, g, o, C, True)
    rf1, rb1 = moe.router_time(T, E, D, "fp32", H100.device, C)
    rf0, rb0 = moe.router_time(T, E, D, None, H100.device, C)
    assert float(f1[0] - f0[0]) == pytest.approx(float(rf1 - rf0))
    assert float(b1[0] - b0[0]) == pytest.approx(float(rb1 - rb0))
    assert float(b1[0] - b0[0]) > 0


def test_papers_convention_ignores_the_router_dtype():
    m = named_model("deepseek-v3")
    o = TrainingOptions(precision="bf16", ep_convention="cs-v1")
    g = _grid()
    a = step._ffn(m, H100, g, o, C, True)
    b = step._ffn(m.model_copy(update={"moe_router_dtype": None}), H100, g, o, C, True)
    assert all(float(x[0]) == float(y[0]) for x, y in zip(a, b))
