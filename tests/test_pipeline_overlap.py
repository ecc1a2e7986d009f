"""Pipeline sends overlapped under interleaving (Megatron ``overlap_p2p_comm``), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf.comm import p2p_time
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.perf.step import evaluate, pipeline_send_time
from carbonscaling.scaling import named_model

from helpers import one_layout

C = default_constants()


def test_send_time_by_hand():
    # 4 chunks of 0.3 s each (1.2 s per microbatch): a 0.09 s send hides under both parts
    assert float(pipeline_send_time(0.09, 1.2, 4, True)) == 0.0
    # a 0.25 s send: 0.25 - 0.2 exposed past the backward two thirds, 0.25 - 0.1 past the forward third
    assert float(pipeline_send_time(0.25, 1.2, 4, True)) == pytest.approx(4 * (0.05 + 0.15), rel=1e-12)
    # a 0.5 s send, 2 chunks of 0.3 s: (0.5 - 0.2) + (0.5 - 0.1) per chunk
    assert float(pipeline_send_time(0.5, 0.6, 2, True)) == pytest.approx(2 * (0.3 + 0.4), rel=1e-12)
    # without overlap every send is exposed: forward and backward per chunk
    assert float(pipeline_send_time(0.1, 1.2, 4, False)) == pytest.approx(8 * 0.1, rel=1e-12)
    # never more than the sends themselves, never negative
    t = pipeline_send_time(np.linspace(0, 2, 9), 1.0, 3, True)
    assert np.all(t >= 0) and np.all(t <= 6 * np.linspace(0, 2, 9) + 1e-15)


def _step(vp: int, overlap: bool, legacy: bool = False):
    model = named_model("llama3-70b")
    system = load_system("H100")
    g = one_layout(tp=4, pp=8, dp=2, vp=vp, microbatch=1, global_batch_sequences=256)
    o = TrainingOptions(precision="fp8", overlap_pp_comm=overlap, ep_convention="cs-v1" if legacy else "megatron")
    return evaluate(model, system, g, o, C), model, system


def test_interleaved_sends_hide_under_compute():
    on, model, system = _step(5, True)
    off, _, _ = _step(5, False)
    # Llama 3 70B on DGX H100, TP 4 PP 8: an 8192-token microbatch sends 8192 x 8192 x 2 / 4 bytes
    send = float(p2p_time(8192 * 8192 * 2.0 / 4, 4 * 2, 8, system, C))
    assert float(off.pp_comm_s[0]) == pytest.approx(128 * 2 * 5 * send, rel=1e-9)
    # two layers per chunk take far longer than one 33.5 MB send: nothing stays exposed
    assert float(on.pp_comm_s[0]) == 0.0
    assert float(on.step_time_s[0]) < float(off.step_time_s[0])
    # the hidden sends still slow compute down (overlap slowdown), by compute_slowdown x their time
    extra = float(on.overlap_slowdown_s[0] - off.overlap_slowdown_s[0])
    assert extra == pytest.approx(C.overlap_compute_slowdown * 128 * 2 * 5 * send, rel=1e-9)


def test_no_interleave_and_papers_convention_keep_the_sends_exposed():
    on, _, _ = _step(1, True)
    off, _, _ = _step(1, False)
    assert float(on.step_time_s[0]) == float(off.step_time_s[0]) and float(on.pp_comm_s[0]) > 0
    # the papers' convention (cs-v1) predates overlapped sends
    on, _, _ = _step(5, True, legacy=True)
    off, _, _ = _step(5, False, legacy=True)
    assert float(on.step_time_s[0]) == float(off.step_time_s[0]) and float(on.pp_comm_s[0]) > 0
