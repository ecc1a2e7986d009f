"""Batch-level EP all-to-all overlap (Megatron-Core ``combined_1f1b.py``): the microbatches that
run unpaired -- the first forward and last backward at PP 1, the warm-up and cool-down chunks
with interleaved pipelining -- expose their all-to-alls: ``PP x`` a stage's layers per step."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import step
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.ep_overlap import ep_overlap_ramp_time
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import named_model

from helpers import layout_grids

C = default_constants()
GB200 = load_system("GB200")


_grid = layout_grids(tp=1, pp=1, dp=64, ep=64, microbatch=4, zero=1, global_batch_sequences=1280)


def test_ramp_is_pp_stages_of_hidden_all_to_all():
    hidden = np.array([2e-3])
    ramp = ep_overlap_ramp_time
    assert float(ramp(np.array([1]), True, np.array([36]), hidden)[0]) == pytest.approx(36 * 2e-3)
    assert float(ramp(np.array([1]), False, np.array([36]), hidden)[0]) == 0.0
    # PP 4, VP 3, 9 layers a stage: the critical path runs VP x PP = 12 chunks of 3 layers unpaired
    # each way (3 down the pipeline, the last stage's (VP - 1) PP + 1 = 9, ...), i.e. 4 x 9 layers
    assert float(ramp(np.array([4]), True, np.array([9]), hidden)[0]) == pytest.approx(12 * 3 * 2e-3)


def test_hidden_all_to_all_is_what_the_overlap_took_off_the_layer():
    m = named_model("gpt-oss-120b")
    g = _grid()
    base = dict(precision="bf16", force_balanced_routing=True)
    off = step.layer_times(m, GB200, g, TrainingOptions(**base), C, moe=True)
    on = step.layer_times(m, GB200, g, TrainingOptions(**base, overlap_ep_comm=True), C, moe=True)
    assert float(off.ep_hidden0[0]) == pytest.approx(0.0)
    assert float(on.ep_hidden0[0]) == pytest.approx(float(off.ep0[0]))  # GB200 EP 64: all of it hides
    assert float(on.ep0[0]) == pytest.approx(0.0)


def test_step_pays_the_ramp_once():
    m = named_model("gpt-oss-120b")
    g = _grid()
    o = TrainingOptions(precision="bf16", force_balanced_routing=True, overlap_ep_comm=True)
    r = step.evaluate(m, GB200, g, o, C)
    lt = step.per_layer(m, GB200, g, o, C)
    ramp = 36 * float(lt.ep_hidden0[0])
    assert ramp > 0
    # the ramp is booked as exposed EP communication
    assert float(r.ep_comm_s[0]) == pytest.approx(float(r.microbatches[0]) * 36 * float(lt.ep0[0]) + ramp)
