"""Megatron-Core's EP all-to-all overlap (``TransformerLayerSchedulePlan.run``): each dispatch or
combine hides only under the node of the other microbatch it is paired with -- hand-walked."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import layer, step
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.ep_overlap import combined_1f1b_layer_time
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import named_model

from helpers import layout_grids

C = default_constants()
H100 = load_system("H100")


def _t(attn_f, mlp_f, attn_b, attn_dw, mlp_b, mlp_dw, a2a):
    args = [np.array([float(v)]) for v in (attn_f, mlp_f, attn_b, attn_dw, mlp_b, mlp_dw, a2a)]
    return float(combined_1f1b_layer_time(*args)[0])


def test_no_all_to_all_is_the_compute_and_no_compute_is_four_all_to_alls():
    assert _t(1, 2, 3, 0.5, 1.5, 0.7, 0) == pytest.approx(8.7)
    assert _t(0, 0, 0, 0, 0, 0, 1.3) == pytest.approx(4 * 1.3)


def test_each_all_to_all_within_its_paired_node_hides_completely():
    assert _t(2, 2, 2, 0.3, 2, 0.3, 1.9) == pytest.approx(8.6)


def test_combine_backward_longer_than_attention_forward_exposes_the_difference():
    # Walk (one layer, steady state from t = 0): combine_b 0-1 || attn_f 0-0.5; mlp_b waits for
    # combine_b: 1-4; dispatch_f 1-2; dispatch_b 4-5 || mlp_f 4-7; combine_f 7-8 || attn_b 7-10.
    # 10 = 9.5 of compute + (1 - 0.5).
    assert _t(0.5, 3, 3, 0, 3, 0, 1) == pytest.approx(10.0)


def test_delayed_weight_gradients_hide_the_dispatches_with_the_expert_forward():
    # dispatch_f (1) pairs with mlp_b (0.2) and runs on under the delayed wgrad (1); dispatch_b
    # (1) under the rest of the wgrad and mlp_f (0.5): the two dispatches (2) against the middle
    # compute (0.2 + 1 + 0.5 = 1.7) expose 0.3; attention forward/backward (2) hide the combines.
    assert _t(2, 0.5, 2, 0, 0.2, 1, 1) == pytest.approx(5.7 + 0.3)
    # without the delay the wgrad is part of mlp_b: dispatch_b starts after it and has only mlp_f
    # (0.5) to hide under: 0.5 exposed
    assert _t(2, 0.5, 2, 0, 1.2, 0, 1) == pytest.approx(5.7 + 0.5)


_grid = layout_grids(tp=1, pp=1, dp=16, ep=16, microbatch=1, zero=1, global_batch_sequences=256)


def test_layer_split_into_nodes_sums_to_its_compute_and_sets_the_exposed_all_to_all():
    m = named_model("qwen3-30b-a3b")
    g = _grid()  # EP 16 over two H100 nodes: the all-to-all crosses InfiniBand
    o = TrainingOptions(precision="bf16", force_balanced_routing=True, overlap_ep_comm=True)
    lt = step.layer_times(m, H100, g, o, C, moe=True)
    off = step.layer_times(m, H100, g, o.model_copy(update={"overlap_ep_comm": False}), C, moe=True)
    a2a = float(off.ep0[0]) / 4.0
    c0 = float(lt.compute0[0])
    assert c0 == pytest.approx(float(off.compute0[0]))
    hidden = float(lt.ep_hidden0[0])
    assert float(lt.ep0[0]) + hidden == pytest.approx(4 * a2a)
    assert 0.0 <= float(lt.ep0[0]) <= 4 * a2a
    # exposed = the two-stream walk of the six nodes minus their compute
    assert float(lt.ep0[0]) >= max(0.0, 4 * a2a - c0) - 1e-12
    # a fully recomputed layer's forward dispatches and combines again, exposed
    assert float(lt.ep_extra[0]) == pytest.approx(2 * a2a)
    assert float(off.ep_extra[0]) == pytest.approx(2 * a2a)


def test_dense_layers_are_untouched_by_the_overlap():
    m = named_model("qwen3-30b-a3b")
    g = _grid()
    o = TrainingOptions(precision="bf16", force_balanced_routing=True)
    a = step.layer_times(m, H100, g, o, C, moe=False)
    b = step.layer_times(m, H100, g, o.model_copy(update={"overlap_ep_comm": True}), C, moe=False)
    assert float(a.time0[0]) == float(b.time0[0]) and float(b.ep0[0]) == 0.0


def test_deepep_sms_slow_the_compute_they_overlap():
    from carbonscaling.perf.ep_overlap import ep_overlap_slowdown

    # H100: 20 of 132 SMs taken: 1 s of hidden all-to-all stretches the paired compute by 20 / 112 s
    assert float(ep_overlap_slowdown(np.array([1.0]), 132, 20)[0]) == pytest.approx(20 / 112)
    assert C.ep_comm_sms == 20
    m = named_model("qwen3-30b-a3b")
    g = _grid(microbatch=4)
    base = dict(precision="bf16", force_balanced_routing=True, overlap_ep_comm=True)
    flex = step.evaluate(m, H100, g, TrainingOptions(**base), C)
    nccl = step.evaluate(m, H100, g, TrainingOptions(**base, moe_dispatcher="alltoall"), C)
    lt = step.per_layer(m, H100, g, TrainingOptions(**base), C)
    n, mb = m.n_layers, float(flex.microbatches[0])
    hidden = mb * n * float(lt.ep_hidden0[0]) - n * float(lt.ep_hidden0[0])   # less the unpaired ramp (PP 1)
    zero = step.evaluate(m, H100, g, TrainingOptions(**base), C.replace(ep_comm_sms=0))
    assert float(flex.overlap_slowdown_s[0]) - float(zero.overlap_slowdown_s[0]) == pytest.approx(hidden * 20 / 112)
    assert hidden > 0
    # NCCL's all-to-all (alltoall dispatcher) does not take DeepEP's SMs ...
    nccl0 = step.evaluate(m, H100, g, TrainingOptions(**base, moe_dispatcher="alltoall"), C.replace(ep_comm_sms=0))
    assert float(nccl.overlap_slowdown_s[0]) == pytest.approx(float(nccl0.overlap_slowdown_s[0]))


def test_nccl_alltoall_blocks_slow_the_compute_they_overlap():
    """The alltoall dispatcher's NCCL all-to-all runs one CUDA block per point-to-point channel
    (data/perf.yaml overlap.nccl_p2p_channels = 32): on H100 (132 SMs) each second of hidden all-to-all
    stretches the paired compute by 32 / 100 s; the global 10 % no longer applies to it."""
    assert C.nccl_p2p_channels == 32
    m = named_model("qwen3-30b-a3b")
    g = _grid(microbatch=4)
    o = TrainingOptions(precision="bf16", force_balanced_routing=True, overlap_ep_comm=True, moe_dispatcher="alltoall")
    lt = step.per_layer(m, H100, g, o, C)
    n = m.n_layers
    hidden = (float(step.evaluate(m, H100, g, o, C).microbatches[0]) - 1.0) * n * float(lt.ep_hidden0[0])
    assert hidden > 0
    full = step.evaluate(m, H100, g, o, C)
    none = step.evaluate(m, H100, g, o, C.replace(nccl_p2p_channels=0))
    assert float(full.overlap_slowdown_s[0]) - float(none.overlap_slowdown_s[0]) == pytest.approx(hidden * 32 / 100)
    # ... and the hidden all-to-all left the global 10 %: without the blocks the slowdown is the run's
    # without the overlap (only the gradient reduction hides there)
    plain = step.evaluate(m, H100, g, o.model_copy(update={"overlap_ep_comm": False}), C)
    assert float(none.overlap_slowdown_s[0]) == pytest.approx(float(plain.overlap_slowdown_s[0]))


@pytest.mark.parametrize("name,block", [("deepseek-v3", None), ("gpt-oss-120b", None), ("nemotron-3-nano", "E"),
                                        ("qwen3-235b-a22b", None)])
@pytest.mark.parametrize("recompute", [(), ("layernorm", "moe_act", "core_attn"), ("mla_up_proj", "mlp")])
def test_the_six_nodes_are_non_negative_and_sum_to_the_layer_compute(name, block, recompute, monkeypatch):
    m = named_model(name)
    rc = dict(recompute="selective") if recompute else {}
    g = _grid(tp=2, dp=8, ep=16, etp=1, **rc)
    mods = dict(recompute_modules=recompute) if recompute else {}
    o = TrainingOptions(precision="bf16", force_balanced_routing=True, overlap_ep_comm=True, **mods)
    captured = {}
    real = layer.combined_1f1b_layer_time

    def spy(*args):
        captured["parts"] = args[:6]
        return real(*args)

    monkeypatch.setattr(layer, "combined_1f1b_layer_time", spy)
    lt = step.layer_times(m, H100, g, o, C, moe=True, block=block)
    assert (int(g.rc[0]) == 1) == bool(recompute)  # selective recompute pinned or not
    parts = [float(p[0]) for p in captured["parts"]]
    assert min(parts) >= 0.0
    assert sum(parts) == pytest.approx(float(lt.compute0[0]), rel=1e-12)


def test_interleaved_overlap_holds_one_more_warmup_chunk():
    # get_pp_rank_microbatches: one more warm-up forward with the EP overlap -> one more chunk
    # (n_first / VP layers) of activations in flight on the first stage; nothing at VP 1
    from carbonscaling.perf.memory import activation_bytes_per_layer, memory_per_device

    m = named_model("qwen3-235b-a22b")
    o = TrainingOptions(precision="bf16", force_balanced_routing=True)
    on = o.model_copy(update={"overlap_ep_comm": True})
    for vp in (3, 1):
        g = _grid(pp=4, vp=vp, dp=16, ep=8, microbatch=1, global_batch_sequences=1024, recompute="none")
        n = m.n_layers / 4
        a = memory_per_device(m, H100, g, o, C, n, n)
        b = memory_per_device(m, H100, g, on, C, n, n)
        kept = float(activation_bytes_per_layer(m, g, o)[0][0])
        extra = n / vp * kept if vp > 1 else 0.0
        assert float(b.activations[0]) - float(a.activations[0]) == pytest.approx(extra, rel=1e-9, abs=1e-3)
