"""Invariants of the step-time and memory model (hypothesis) and spot checks of its physics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonscaling.hardware import load_system, project
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.kernels import gemm_efficiency, gemm_time
from carbonscaling.perf.layout import Layout, LayoutGrid, TrainingOptions
from carbonscaling.perf.step import evaluate
from carbonscaling.scaling import ModelSpec, named_model

C = default_constants()
MODEL = ModelSpec(d_model=4096, n_layers=32, n_heads=32, vocab=50000, seq_len=2048, tokens=1e11,
                  global_batch_tokens=512 * 2048, name="m")
MOE = MODEL.model_copy(update={"n_experts": 8, "top_k": 2, "name": "moe"})

layouts = st.builds(  # Megatron layouts: EP carved out of DP (dp is a multiple of ep)
    lambda tp, pp, dp, ep, z, mb, v, rc: Layout(tp=tp, pp=pp, dp=dp * ep, ep=ep, zero=z, microbatch=mb,
                                                interleave=v if pp > 1 and 32 % (pp * v) == 0 else 1,
                                                recompute=rc, global_batch_sequences=512),
    tp=st.sampled_from([1, 2, 4, 8, 16, 32]), pp=st.sampled_from([1, 2, 4, 8, 16, 32]),
    dp=st.sampled_from([1, 2, 3, 4, 8]), ep=st.sampled_from([1, 2, 4, 8]), z=st.integers(0, 3),
    mb=st.sampled_from([1, 2, 4]), v=st.sampled_from([1, 2, 4]),
    rc=st.sampled_from(["none", "selective", "full"]))
devices = st.sampled_from(["V100", "A100-80GB", "H100", "B100", "TPUv4", "MI300X"])


def _one(model, system, lay: Layout, opts=None):
    return evaluate(model, system, LayoutGrid.from_layouts([lay]), opts or TrainingOptions()).take(0)


@settings(max_examples=60, deadline=None)
@given(lay=layouts, dev=devices, moe=st.booleans())
def test_step_is_finite_positive_and_parts_add_up(lay, dev, moe):
    model = MOE if moe else MODEL.model_copy()
    if not moe:
        lay = lay.model_copy(update={"ep": 1})
    r = _one(model, load_system(dev), lay)
    assert np.isfinite(r.step_time_s) and r.step_time_s > 0
    parts = (r.compute_s + r.bubble_s + r.tp_comm_s + r.pp_comm_s + r.ep_comm_s + r.dp_comm_s + r.optimizer_s
             + r.overlap_slowdown_s + r.cp_comm_s)
    assert parts == pytest.approx(r.step_time_s, rel=1e-9)
    assert min(r.compute_s, r.bubble_s, r.tp_comm_s, r.dp_comm_s, r.optimizer_s) >= -1e-12
    assert r.mem_total_gb > 0 and np.isfinite(r.mem_total_gb)


@settings(max_examples=40, deadline=None)
@given(lay=layouts, dev=devices)
def test_more_zero_sharding_never_needs_more_memory(lay, dev):
    lay = lay.model_copy(update={"ep": 1})
    system = load_system(dev)
    mem = [float(_one(MODEL, system, lay.model_copy(update={"zero": z})).mem_total_gb) for z in range(4)]
    assert all(a >= b - 1e-9 for a, b in zip(mem[:3], mem[1:3]))
    # ZeRO-3 also holds gathered-layer buffers: it pays off once the shards are small enough.
    if lay.dp >= 8 and 32 // lay.pp >= 8:
        assert mem[3] <= mem[2] + 1e-9


@settings(max_examples=40, deadline=None)
@given(lay=layouts, dev=devices)
def test_recompute_trades_time_for_memory(lay, dev):
    lay = lay.model_copy(update={"ep": 1})
    if 32 // lay.pp < 2:  # one layer per stage: rebuilding it needs as much as keeping it
        lay = lay.model_copy(update={"pp": 4, "vp": 1})
    system = load_system(dev)
    runs = [_one(MODEL, system, lay.model_copy(update={"recompute": rc})) for rc in ("none", "selective", "full")]
    acts = [float(r.mem_activations_gb) for r in runs]
    assert acts[0] >= acts[1] - 1e-12 and acts[1] >= acts[2] - 1e-12
    assert float(runs[2].step_time_s) >= float(runs[0].step_time_s)


@settings(max_examples=30, deadline=None)
@given(lay=layouts, dev=devices, years=st.floats(0.5, 10))
def test_projected_hardware_is_never_slower(lay, dev, years):
    lay = lay.model_copy(update={"ep": 1})
    system = load_system(dev)
    now = float(_one(MODEL, system, lay).step_time_s)
    later = float(_one(MODEL, project(system, years), lay).step_time_s)
    assert later <= now * (1 + 1e-9)


def test_evaluation_is_deterministic():
    lay = Layout(tp=4, pp=2, dp=4, zero=1, microbatch=2, interleave=2, global_batch_sequences=512)
    a, b = (_one(MODEL, load_system("H100"), lay) for _ in range(2))
    assert float(a.step_time_s) == float(b.step_time_s)


def test_large_gemms_reach_the_device_maximum_and_small_ones_do_not():
    dev = load_system("A100-80GB").device
    big = float(gemm_efficiency(8192, 8192, 8192, 1, dev, C))
    assert big == pytest.approx(0.869 * C.gemm_in_situ_factor, rel=0.01)
    assert float(gemm_efficiency(64, 64, 64, 1, dev, C)) < 0.1 * big  # one partial wave, short K
    assert float(gemm_efficiency(2048, 2048, 64, 1, dev, C)) < big  # attention-like short K
    # A skinny GEMM cannot beat streaming its weight matrix from HBM once.
    floor = 2 * 16384 * 16384 / (dev.hbm_gb_s * 1e9 * C.hbm_efficiency)
    assert float(gemm_time(16, 16384, 16384, 1, dev, C)) >= floor
    # A large square one is compute-bound: time = FLOPs / (peak x efficiency).
    t = float(gemm_time(8192, 8192, 8192, 1, dev, C))
    assert t == pytest.approx(2 * 8192**3 / (dev.peak_flops() * big), rel=1e-9)


def test_tp_across_nodes_costs_more_than_inside_a_node():
    system = load_system("A100-80GB")
    inside = _one(MODEL, system, Layout(tp=8, pp=1, dp=1, global_batch_sequences=512))
    across = _one(MODEL, system, Layout(tp=16, pp=1, dp=1, global_batch_sequences=512))
    per_coll_in = float(inside.tp_comm_s)
    per_coll_out = float(across.tp_comm_s)
    # Same bytes per rank; the node boundary adds a NIC-bound hop (8 NICs per node share it).
    assert per_coll_out > 1.3 * per_coll_in


def test_bubble_shrinks_with_interleaving_and_microbatches():
    system = load_system("H100")
    base = dict(tp=1, pp=8, dp=1, microbatch=1, global_batch_sequences=64)
    b1 = float(_one(MODEL, system, Layout(**base, interleave=1)).bubble_s)
    b2 = float(_one(MODEL, system, Layout(**base, interleave=2)).bubble_s)
    b4 = float(_one(MODEL, system, Layout(**base, interleave=4)).bubble_s)
    assert b1 > b2 > b4 > 0
    # Ideal 1F1B bubble fraction (p - 1) / (v m) when stages are uniform (tiny vocabulary: no heavy end stage).
    uniform = MODEL.model_copy(update={"vocab": 128})
    full = _one(uniform, system, Layout(**base, interleave=1))
    frac = float(full.bubble_s) / float(full.step_time_s - full.bubble_s - full.dp_comm_s - full.optimizer_s
                                         - full.overlap_slowdown_s)
    assert frac == pytest.approx(7 / 64, rel=0.1)
    # The output layer makes the last stage the slowest: the imbalance adds to the bubble.
    assert b1 > float(full.bubble_s)


def test_flash_attention_saves_time_and_memory_at_long_sequences():
    model = named_model("megatron-7.5b")
    system = load_system("A100-80GB")
    lay = Layout(tp=4, pp=1, dp=1, microbatch=1, global_batch_sequences=64)
    fa = _one(model, system, lay, TrainingOptions(flash_attention=True))
    no = _one(model, system, lay, TrainingOptions(flash_attention=False))
    assert float(fa.step_time_s) < float(no.step_time_s)
    assert float(fa.mem_activations_gb) < float(no.mem_activations_gb)
