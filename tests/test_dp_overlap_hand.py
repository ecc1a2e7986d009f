"""The data-parallel gradient reduction's overlap with the last microbatch's backward pass
(``evaluate``), by hand: Megatron's DDP starts reducing each gradient bucket as soon as the
backward pass has produced it, so per step only ``max(last bucket, reduction - backward of
the first stage)`` stays exposed, the last bucket being ``grad_bucket_params`` of the
device's parameters; what is hidden slows the concurrent compute by ``overlap.compute_slowdown``.

The reduction itself (``data_parallel_time``), the layer times and the memory are pinned by
their own hand tests; here they are inputs and the overlap rule is written out.
"""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import Layout, LayoutGrid, TrainingOptions
from carbonscaling.perf.memory import memory_per_device
from carbonscaling.perf.pipeline import stage_layers
from carbonscaling.perf.step import data_parallel_time, evaluate, per_layer
from carbonscaling.scaling import ModelSpec

C = default_constants()
H100 = load_system("H100")


def _model(d_model: int, n_layers: int, vocab: int = 32000) -> ModelSpec:
    return ModelSpec(d_model=d_model, n_layers=n_layers, n_heads=d_model // 128, vocab=vocab, seq_len=2048,
                     tokens=1e10, global_batch_tokens=64 * 2048, name=f"m{d_model}")


# (model, layouts): rows where the last bucket binds, where the reduction outlasts the backward
# pass, and where the device holds fewer parameters than one bucket (nothing hidden)
CASES = [
    (_model(4096, 32), [dict(tp=1, pp=1, dp=dp, zero=z, microbatch=1) for dp in (2, 8, 16) for z in (0, 1)]),
    (_model(4096, 32), [dict(tp=2, pp=2, dp=dp, zero=z, microbatch=1, recompute=r)
                        for dp in (4, 16) for z in (0, 2) for r in ("none", "full")]),
    (_model(512, 4, vocab=8000), [dict(tp=1, pp=1, dp=dp, zero=z, microbatch=1) for dp in (2, 32) for z in (0, 1)]),
]


def _hand(model, g, o):
    """Exposed DP time per step and the part hidden under the backward pass."""
    lt = per_layer(model, H100, g, o, C)
    n_first, n_mid, n_last = stage_layers(model.n_layers, g.pp, g.v, legacy=o.legacy)
    mem = memory_per_device(model, H100, g, o, C, n_first, n_last, n_mid)
    recomputed = np.where(g.rc == 2, np.minimum(n_first, g.v * mem.recompute_layers), 0)
    per_step, per_mb = data_parallel_time(model, H100, g, o, C, mem)
    assert np.all(per_mb == 0.0)                      # ZeRO 0-2: nothing per microbatch
    backward = n_first * lt.bwd0 + recomputed * lt.bwd_extra   # the first stage's last backward
    params = mem.params_dense + mem.params_expert
    bucket = per_step * np.minimum(1.0, C.grad_bucket_params / params)
    exposed = np.maximum(bucket, per_step - backward)
    return per_step, exposed, bucket, backward


@pytest.mark.parametrize("case", range(len(CASES)))
def test_gradient_reduce_overlap_by_hand(case):
    model, rows = CASES[case]
    g = LayoutGrid.from_layouts([Layout(global_batch_sequences=64, **r) for r in rows])
    on, off = TrainingOptions(), TrainingOptions(overlap_grad_reduce=False)
    per_step, exposed, bucket, backward = _hand(model, g, on)
    r_on, r_off = evaluate(model, H100, g, on, C), evaluate(model, H100, g, off, C)
    assert np.all(per_step > 0)
    np.testing.assert_allclose(r_off.dp_comm_s, per_step, rtol=1e-9)      # nothing hidden without overlap
    np.testing.assert_allclose(r_on.dp_comm_s, exposed, rtol=1e-9)
    hidden = per_step - exposed
    # the hidden part slows the concurrent compute; the rest of the step is the same
    np.testing.assert_allclose(r_on.overlap_slowdown_s - r_off.overlap_slowdown_s,
                               C.overlap_compute_slowdown * hidden, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(r_off.step_time_s - r_on.step_time_s,
                               (1.0 - C.overlap_compute_slowdown) * hidden, rtol=1e-9, atol=1e-15)
    for field in ("compute_s", "bubble_s", "tp_comm_s", "optimizer_s"):
        np.testing.assert_allclose(getattr(r_on, field), getattr(r_off, field), rtol=1e-12)


def test_the_cases_reach_every_branch_of_the_rule():
    """Both sides of the max and of the bucket's min(1, ...) occur, or the test above proves less."""
    seen = {"bucket binds": False, "backward too short": False, "one bucket or less": False, "several": False}
    for model, rows in CASES:
        g = LayoutGrid.from_layouts([Layout(global_batch_sequences=64, **r) for r in rows])
        per_step, exposed, bucket, backward = _hand(model, g, TrainingOptions())
        seen["bucket binds"] |= bool(np.any(bucket > per_step - backward))
        seen["backward too short"] |= bool(np.any(per_step - backward > bucket))
        seen["one bucket or less"] |= bool(np.any(bucket == per_step))
        seen["several"] |= bool(np.any(bucket < per_step))
    assert all(seen.values()), seen
