"""The vocabulary cross entropy by Megatron-Core ``cross_entropy_fusion_impl``, against hand calculations.

Byte counts per logit are the passes read from the framework code (data/perf.yaml
``elementwise.cross_entropy_*_bytes_per_logit``, ``memory.logits_bytes_te``): Megatron-Core's own
fused FP32 cross entropy ('native', gpt-oss's recipe) and Transformer Engine's in-place BF16 kernels
('te', DeepSeek-V3's and Kimi K2's providers). Each is ``bytes / (HBM GB/s x 1e9 x hbm_efficiency)``
on the stage that computes the output layer.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import kernels as K
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.perf.memory import memory_per_device
from carbonscaling.perf.step import stage_times
from carbonscaling.scaling import named_model

from helpers import layout_grids

C = default_constants()
H100 = load_system("H100")
BW = H100.device.hbm_gb_s * 1e9 * C.hbm_efficiency  # achievable bytes/s


_grid = layout_grids(tp=1, pp=4, dp=16, ep=8, microbatch=1, zero=1, global_batch_sequences=1280)


def test_byte_counts_are_the_passes_read_from_the_code():
    # native: cast + max (2 + 4), in-place exp (4 + 4), sum (4), in-place divide (4 + 4);
    # backward: in-place scale (4 + 4), cast back to BF16 (4 + 2)
    assert C.cross_entropy_native_bytes == (2 + 4) + (4 + 4) + 4 + (4 + 4) + (4 + 4) + (4 + 2)
    # TE: online softmax reads the BF16 logits (2); backward reads them and writes the gradient in place (2 + 2)
    assert C.cross_entropy_te_bytes == 2 + (2 + 2)
    assert K.cross_entropy_bytes("native", C) == (40, C.logits_bytes)
    assert K.cross_entropy_bytes("te", C) == (6, C.logits_bytes_te) == (6, 2)
    assert K.cross_entropy_bytes(None, C) == (C.cross_entropy_passes * C.logits_bytes, C.logits_bytes)


def test_catalog_impl_follows_the_megatron_bridge_recipes():
    assert named_model("gpt-oss-120b").cross_entropy_fusion_impl == "native"
    assert named_model("deepseek-v3").cross_entropy_fusion_impl == "te"
    assert named_model("kimi-k2").cross_entropy_fusion_impl == "te"
    assert named_model("llama3-70b").cross_entropy_fusion_impl is None


def test_last_stage_head_time_by_hand():
    # gpt-oss on H100 PP4, microbatch 1: the last stage runs the 201,088-vocabulary loss of 4096 tokens
    m = named_model("gpt-oss-120b")
    lt = SimpleNamespace(time0=np.array([1.0]), extra=np.array([0.5]))
    split, rec = (np.array([9]),) * 3, (np.array([0]),) * 3
    o = TrainingOptions()
    ends = {}
    for impl in ("native", "te", None):
        mi = m.model_copy(update={"cross_entropy_fusion_impl": impl})
        ends[impl] = float(stage_times(mi, H100, _grid(), o, C, lt, split, rec)[4][0])
    logits = 4096 * 201088
    assert ends["native"] - ends[None] == pytest.approx(logits * (40 - 16) / BW, rel=1e-9)
    assert ends[None] - ends["te"] == pytest.approx(logits * (16 - 6) / BW, rel=1e-9)


def test_te_keeps_bf16_logits_on_the_last_stage():
    # PP 1: the one stage holds the output layer and keeps one microbatch's logits for the backward
    m = named_model("gpt-oss-120b")
    g = _grid(pp=1, dp=64, ep=64, microbatch=4)
    o = TrainingOptions(precision="bf16")
    native = memory_per_device(m, H100, g, o, C, np.array([36]), np.array([36]))
    te = memory_per_device(m.model_copy(update={"cross_entropy_fusion_impl": "te"}), H100, g, o, C,
                           np.array([36]), np.array([36]))
    logits = 4 * 4096 * 201088  # FP32 softmax (native) vs the BF16 logits overwritten by their gradient (TE)
    assert float(native.total[0] - te.total[0]) == pytest.approx(logits * (4 - 2) * C.fragmentation_factor, rel=1e-9)
    assert float(native.activations[0] - te.activations[0]) == pytest.approx(logits * (4 - 2), rel=1e-9)


def test_benchmark_rows_run_te_cross_entropy():
    # Megatron-Bridge's performance script overrides every recipe's loss with TE's cross entropy
    # (scripts/performance/utils/overrides.py _set_common_perf_overrides), gpt-oss's 'native' included
    from carbonscaling.validation.throughput import describe_row, pretrain_rows

    rows = [r for r in pretrain_rows() if r["model"] in ("GPT OSS 120B", "LLAMA3_8B", "DeepSeekV3")]
    assert {r["model"] for r in rows} == {"GPT OSS 120B", "LLAMA3_8B", "DeepSeekV3"}
    for r in rows:
        assert describe_row(r)[0].cross_entropy_fusion_impl == "te"
