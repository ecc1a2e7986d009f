"""Step-time terms added for today's MoE models (docs/performance.md, "MoE kernels"): the
per-expert cost of Transformer Engine's grouped GEMM loop and sliding-window attention,
each against a hand calculation."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import kernels as K
from carbonscaling.perf import moe, step
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import named_model

from helpers import bench_rows, layout_grids

C = default_constants()
GB200 = load_system("GB200")


_grid = layout_grids(tp=1, pp=1, dp=8, ep=8, microbatch=2, zero=1, global_batch_sequences=64)


def test_expert_overhead_is_per_local_expert_and_split_like_the_gemms():
    c = C.replace(moe_expert_overhead_s=1.5e-4)
    f, b = moe.expert_overhead_time(16, c)  # Qwen3-30B: 128 experts on EP 8 -> 16 local experts
    assert f == pytest.approx(16 * 1.5e-4 / 3)  # forward: FC1 and FC2 of each expert (2 of 6 GEMMs)
    assert b == pytest.approx(16 * 1.5e-4 * 2 / 3)  # backward: their data and weight gradients
    f2, b2 = moe.expert_overhead_time(np.array([2, 16]), c)
    assert np.allclose(f2 + b2, [2 * 1.5e-4, 16 * 1.5e-4])


def test_moe_layer_pays_the_expert_overhead_once_per_local_expert():
    model = named_model("qwen3-30b-a3b")
    o = TrainingOptions(precision="mxfp8", force_balanced_routing=True)
    g = _grid(ep=8)
    t0 = step.layer_times(model, GB200, g, o, C.replace(moe_expert_overhead_s=0.0), moe=True)
    t1 = step.layer_times(model, GB200, g, o, C.replace(moe_expert_overhead_s=2e-4), moe=True)
    assert float(t1.compute0[0] - t0.compute0[0]) == pytest.approx(128 / 8 * 2e-4)
    # full recompute repeats the forward, and with it the forward third of the overhead
    assert float(t1.compute_extra[0] - t0.compute_extra[0]) == pytest.approx(128 / 8 * 2e-4 / 3)
    dense = step.layer_times(model, GB200, g, o, C.replace(moe_expert_overhead_s=2e-4), moe=False)
    dense0 = step.layer_times(model, GB200, g, o, C.replace(moe_expert_overhead_s=0.0), moe=False)
    assert float(dense.compute0[0]) == pytest.approx(float(dense0.compute0[0]))  # dense layers: no experts


def test_papers_convention_keeps_v1s_moe_layer():
    model = named_model("qwen3-30b-a3b")
    o = TrainingOptions(ep_convention="cs-v1")
    g = _grid(ep=128, dp=128)
    t0 = step.layer_times(model, GB200, g, o, C.replace(moe_expert_overhead_s=0.0), moe=True)
    t1 = step.layer_times(model, GB200, g, o, C.replace(moe_expert_overhead_s=2e-4), moe=True)
    assert float(t1.time0[0]) == float(t0.time0[0])


def test_sliding_window_work_by_hand():
    # causal: s^2/2 pairs; window w: s w - w^2/2  ->  2 w/s - (w/s)^2
    assert K.sliding_window_work_fraction(4096, 128) == pytest.approx(2 / 32 - 1 / 32**2)  # 0.0615
    assert K.sliding_window_work_fraction(4096, 4096) == pytest.approx(1.0)
    assert K.sliding_window_work_fraction(4096, 10**6) == pytest.approx(1.0)  # window past the sequence


def test_windowed_layer_share_follows_megatrons_skip_frequency():
    m = named_model("gpt-oss-120b")
    assert (m.window_size, m.window_attn_skip_freq) == (128, 2)
    assert m.windowed_layer_share == 0.5  # alternate layers windowed
    assert m.model_copy(update={"window_attn_skip_freq": 4}).windowed_layer_share == 0.75
    assert m.model_copy(update={"window_attn_skip_freq": None}).windowed_layer_share == 1.0
    assert named_model("llama3-8b").windowed_layer_share == 0.0


def test_gpt_oss_attention_core_shrinks_by_the_windowed_share():
    m = named_model("gpt-oss-120b")
    full = m.model_copy(update={"window_size": None, "window_attn_skip_freq": None})
    o = TrainingOptions(precision="bf16")
    g = _grid(ep=8, microbatch=4)
    *_, af_w, ab_w, _ = step._attention(m, GB200, g, o, C)
    *_, af, ab, _ = step._attention(full, GB200, g, o, C)
    keep = 0.5 * 1.0 + 0.5 * (2 / 32 - 1 / 32**2)  # half the layers full, half at 6.2 % of the work
    assert float(af_w[0]) == pytest.approx(keep * float(af[0]))
    assert float(ab_w[0]) == pytest.approx(keep * float(ab[0]))
    # model FLOPs (the MFU convention) still count full causal attention
    assert m.model_flops_per_token == pytest.approx(full.model_flops_per_token)


def test_fused_grouped_mlp_has_no_per_expert_cost():
    model = named_model("qwen3-30b-a3b")
    g = _grid(ep=8)
    c = C.replace(moe_expert_overhead_s=2e-4)
    loop = step.layer_times(model, GB200, g, TrainingOptions(precision="mxfp8"), c, moe=True)
    fused = step.layer_times(model, GB200, g, TrainingOptions(precision="mxfp8", moe_grouped_gemm="fused"), c,
                             moe=True)
    assert float(loop.compute0[0] - fused.compute0[0]) == pytest.approx(16 * 2e-4)


def test_recipe_options_follow_the_release_and_the_recipes_layout():
    from carbonscaling.validation.throughput import _fused_moe_recipe, describe_row

    def pick(model, system, container):
        return bench_rows(model, system, container, "MXFP8")

    # DeepSeek-V3 on GB300: the MXFP8 recipe (mb 1, PP 2 x VP 8, EP 32) from 26.06 on; 26.04.01 ran mb 2
    assert all(_fused_moe_recipe(r) == (True, True) for r in pick("DeepSeekV3", "DGX-GB300", "26.06"))
    assert not any(any(_fused_moe_recipe(r)) for r in pick("DeepSeekV3", "DGX-GB300", "26.04.01"))
    # GB200: same layout in 26.04.01 and 26.06, only the later release has the recipe
    assert all(_fused_moe_recipe(r) == (True, True) for r in pick("DeepSeekV3", "DGX-GB200", "26.06"))
    assert not any(any(_fused_moe_recipe(r)) for r in pick("DeepSeekV3", "DGX-GB200", "26.04.01"))
    # Kimi K2's 26.06 row ran microbatch 2, the older recipe's
    assert not any(any(_fused_moe_recipe(r)) for r in pick("Kimi_K2", "DGX-GB300", "26.06"))
    # Qwen3-30B on GB200: fused grouped MLP and the all-to-all overlapped (QWEN3_30B_A3B GB200_FP8_MX_V1)
    assert all(_fused_moe_recipe(r) == (True, True) for r in pick("Qwen3_30B_a3B", "DGX-GB200", "26.08"))
    (row,) = pick("DeepSeekV3", "DGX-GB200", "26.08")
    _, _, options, _, assumed = describe_row(row)
    assert options.moe_grouped_gemm == "fused" and options.overlap_ep_comm
    assert any("fused grouped MLP" in a for a in assumed)
