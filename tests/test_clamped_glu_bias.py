"""Memory traffic of a clamped GLU and of expert biases in Megatron-Core's per-expert grouped MLP
(gpt-oss: ``activation_func_clamp_value`` 7, ``add_bias_linear``), against hand calculations.

Byte counts per element are read from the framework code (data/perf.yaml ``moe.clamped_glu_*``,
``moe.expert_bias_*``); each term is ``bytes / (HBM GB/s x 1e9 x hbm_efficiency)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import moe, step
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import named_model

from helpers import layout_grids

C = default_constants()
GB200 = load_system("GB200")
BW = GB200.device.hbm_gb_s * 1e9 * C.hbm_efficiency  # achievable bytes/s


_grid = layout_grids(tp=1, pp=1, dp=64, ep=64, microbatch=4, zero=1, global_batch_sequences=1280)


def _plain(m):
    return m.model_copy(update={"activation_func_clamp_value": None, "add_bias_linear": False})


def test_byte_counts_are_the_passes_read_from_the_code():
    # clamp forward: two half clamps (read + write 2 B each) and the concatenation (read + write 4 B)
    assert C.moe_clamped_glu_fwd_bytes == 2 * (2 + 2) + (4 + 4)
    # backward: max-only where (le 3 + where 5), min-max where (ge 3 + le 3 + and 3 + where 5), split's cat (8)
    assert C.moe_clamped_glu_bwd_bytes == (3 + 5) + (3 + 3 + 3 + 5) + 8
    # t + b * p: product write 2, add read 4 write 2, cat 4; backward: split's cat 4 + two mul-reduce 6 each
    assert C.moe_expert_bias_fwd_bytes == 2 + 6 + 4
    assert C.moe_expert_bias_bwd_bytes == 4 + 2 * 6


def test_clamped_glu_and_expert_bias_times_by_hand():
    units = 16384 * 4 * 2880  # one microbatch of 4 x 4096 tokens, top-4, expert width 2880
    f, b = moe.clamped_glu_time(units, GB200.device, C)
    assert f == pytest.approx(units * 16 / BW)
    assert b == pytest.approx(units * 30 / BW)
    f, b = moe.expert_bias_time(units, GB200.device, C)  # d_model = expert width = 2880 for gpt-oss
    assert f == pytest.approx(units * 12 / BW)
    assert b == pytest.approx(units * 16 / BW)
    f2, _ = moe.clamped_glu_time(np.array([units, 2 * units]), GB200.device, C)
    assert f2[1] == pytest.approx(2 * f2[0])


def test_gpt_oss_moe_layer_pays_both_on_the_per_expert_path():
    m = named_model("gpt-oss-120b")
    assert (m.activation_func_clamp_value, m.add_bias_linear) == (7.0, True)
    o = TrainingOptions(precision="bf16", force_balanced_routing=True)
    g = _grid()
    f1, b1, _ = step._ffn(m, GB200, g, o, C, True)
    f0, b0, _ = step._ffn(_plain(m), GB200, g, o, C, True)
    rows = 4 * 4096 * 4  # routed copies per rank per microbatch (TP 1, balanced)
    assert float(f1[0] - f0[0]) == pytest.approx(rows * 2880 * (16 + 12) / BW)
    assert float(b1[0] - b0[0]) == pytest.approx(rows * 2880 * (30 + 16) / BW)
    # only the clamp, only the bias
    fc, _, _ = step._ffn(m.model_copy(update={"add_bias_linear": False}), GB200, g, o, C, True)
    assert float(fc[0] - f0[0]) == pytest.approx(rows * 2880 * 16 / BW)


@pytest.mark.parametrize("etp", [2, 4])
def test_expert_tensor_parallelism_keeps_each_ranks_clamp_and_bias_work(etp):
    # ETP all-gathers the routed copies in its group (ETP x the rows) and splits the expert width
    # (d_expert / ETP): the clamped FC1 units per rank do not change; FC2's full-width output (the
    # bias add) grows ETP-fold. EP 64 -> 64 / ETP keeps the devices and the copies per expert group.
    m = named_model("gpt-oss-120b")
    o = TrainingOptions(precision="bf16", force_balanced_routing=True)
    only_clamp, only_bias = (m.model_copy(update={"add_bias_linear": False}),
                             m.model_copy(update={"activation_func_clamp_value": None}))
    rows = 4 * 4096 * 4  # routed copies per rank per microbatch before the ETP gather (TP 1, balanced)
    g = _grid(ep=64 // etp, etp=etp)
    fc, _, _ = step._ffn(only_clamp, GB200, g, o, C, True)
    fb, _, _ = step._ffn(only_bias, GB200, g, o, C, True)
    f0, _, _ = step._ffn(_plain(m), GB200, g, o, C, True)
    assert float(fc[0] - f0[0]) == pytest.approx(rows * 2880 * 16 / BW)
    assert float(fb[0] - f0[0]) == pytest.approx(etp * rows * 2880 * 12 / BW)


def test_fused_grouped_mlp_and_dense_layers_pay_nothing():
    m = named_model("gpt-oss-120b")
    g = _grid()
    fused = TrainingOptions(precision="mxfp8", force_balanced_routing=True, moe_grouped_gemm="fused")
    f1, b1, _ = step._ffn(m, GB200, g, fused, C, True)
    f0, b0, _ = step._ffn(_plain(m), GB200, g, fused, C, True)
    assert float(f1[0]) == pytest.approx(float(f0[0])) and float(b1[0]) == pytest.approx(float(b0[0]))
    o = TrainingOptions(precision="bf16")
    d1, _, _ = step._ffn(m, GB200, g, o, C, False)
    d0, _, _ = step._ffn(_plain(m), GB200, g, o, C, False)
    assert float(d1[0]) == pytest.approx(float(d0[0]))


def test_moe_act_recompute_repeats_the_clamp_forward():
    m = named_model("gpt-oss-120b")
    o = TrainingOptions(precision="bf16", force_balanced_routing=True, recompute_modules=("moe_act",))
    g = _grid()
    r1 = step.selective_recompute_time(m, GB200, g, o, C, "attention", "moe", 0.0 * g.tp)
    r0 = step.selective_recompute_time(_plain(m), GB200, g, o, C, "attention", "moe", 0.0 * g.tp)
    assert float(r1[0] - r0[0]) == pytest.approx(4 * 4096 * 4 * 2880 * 16 / BW)


def test_clamped_glu_keeps_its_clamped_fc1_copy_until_moe_act_recompute_drops_it():
    from carbonscaling.perf.memory import activation_bytes_per_layer

    m = named_model("gpt-oss-120b")
    o = TrainingOptions(precision="bf16", force_balanced_routing=True)
    g = _grid()
    _, full1, _ = activation_bytes_per_layer(m, g, o)
    _, full0, _ = activation_bytes_per_layer(_plain(m), g, o)
    # every layer is MoE: 4 x 4096 tokens x top-4 copies x (gate + up) 2 x 2880 x 2 bytes
    assert float(full1[0] - full0[0]) == pytest.approx(4 * 4096 * 4 * 2 * 2880 * 2)
    sel = o.model_copy(update={"recompute_modules": ("moe_act",)})
    gs = _grid(recompute="selective")
    kept1, _, _ = activation_bytes_per_layer(m, gs, sel)
    kept0, _, _ = activation_bytes_per_layer(_plain(m), gs, sel)
    assert float(kept1[0]) == pytest.approx(float(kept0[0]))  # the checkpoint keeps only FC1's output
    fused = o.model_copy(update={"moe_grouped_gemm": "fused"})
    _, f1, _ = activation_bytes_per_layer(m, g, fused)
    _, f0, _ = activation_bytes_per_layer(_plain(m), g, fused)
    assert float(f1[0]) == pytest.approx(float(f0[0]))
