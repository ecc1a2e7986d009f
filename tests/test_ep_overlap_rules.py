"""Megatron-Core's rule for the EP all-to-all overlap: with pipelining the schedule is interleaved.

``TransformerConfig.__post_init__`` asserts ``virtual_pipeline_model_parallel_size`` when
``overlap_moe_expert_parallel_comm`` and ``pipeline_model_parallel_size > 1``; the ramp term of
perf/ep_overlap.py is derived for that schedule. The search must not offer PP > 1 with VP = 1 under
the overlap, and a pinned one is a one-line input error (exit 2 from the CLI). Under the papers'
convention (cs-v1) the option keeps v1's meaning: no pairing, no ramp, no extra warm-up chunk.
"""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.cli import main
from carbonscaling.errors import InputError
from carbonscaling.hardware import load_system
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import ModelSpec
from carbonscaling.search import search
from carbonscaling.search_space import inner_combos

from helpers import one_layout, write_file

B200 = load_system("B200")
MOE = ModelSpec(d_model=1024, n_layers=8, n_heads=8, n_kv_heads=8, head_dim=128, d_ff=4096, vocab=32000,
                seq_len=2048, tokens=1e10, global_batch_tokens=64 * 2048, ffn_gated=True, n_experts=16, top_k=2,
                d_expert=512, name="tiny-moe")


def _pp_vp(options: TrainingOptions, model: ModelSpec = MOE) -> set:
    c = inner_combos(model, {}, options, system=B200)
    return set(zip(c["pp"].tolist(), c["v"].tolist()))


def test_overlap_drops_pipelined_layouts_without_interleaving():
    plain = _pp_vp(TrainingOptions())
    assert any(p > 1 and v == 1 for p, v in plain)  # offered without the overlap
    over = _pp_vp(TrainingOptions(overlap_ep_comm=True))
    assert not any(p > 1 and v == 1 for p, v in over)
    assert over == {(p, v) for p, v in plain if p == 1 or v > 1}  # nothing else removed


def test_rule_applies_to_moe_under_the_megatron_convention_only():
    dense = MOE.model_copy(update={"n_experts": 1, "top_k": 1, "d_expert": None, "name": "tiny-dense"})
    assert _pp_vp(TrainingOptions(overlap_ep_comm=True), dense) == _pp_vp(TrainingOptions(), dense)
    v1 = TrainingOptions(ep_convention="cs-v1")
    assert _pp_vp(v1.model_copy(update={"overlap_ep_comm": True})) == _pp_vp(v1)


def test_pinned_pp_without_interleaving_is_a_one_line_input_error():
    with pytest.raises(InputError) as err:
        search(MOE, B200, deadline_days=36500, options=TrainingOptions(overlap_ep_comm=True),
               pinned={"devices": 16, "pp": 2, "vp": 1, "ep": 8})
    assert err.value.field == "vp" and "\n" not in str(err.value)
    with pytest.raises(InputError) as err:  # Megatron-Core: only with expert parallelism
        search(MOE, B200, deadline_days=36500, options=TrainingOptions(overlap_ep_comm=True),
               pinned={"devices": 16, "ep": 1})
    assert err.value.field == "ep" and "\n" not in str(err.value)
    search(MOE, B200, deadline_days=36500, pinned={"devices": 16, "ep": 1})  # fine without the overlap
    r = search(MOE, B200, deadline_days=36500, options=TrainingOptions(overlap_ep_comm=True),
               pinned={"devices": 16, "pp": 2, "ep": 8})
    assert r.layout.pp == 2 and r.layout.vp > 1 and np.isfinite(r.duration_s)


MODEL_FILE = ("d_model: 1024\nn_layers: 8\nn_heads: 8\nn_kv_heads: 8\nhead_dim: 128\nvocab: 32000\nseq_len: 2048\n"
              "tokens: 1.0e+10\nffn_gated: true\nd_ff: 4096\nn_experts: 16\ntop_k: 2\nd_expert: 512\n")


def test_cli_exits_2_naming_vp(tmp_path, capsys):
    f = write_file(tmp_path, "m.yaml", MODEL_FILE)
    args = ["estimate", "--model-file", str(f), "--device", "B200", "--devices", "16", "--pp", "2", "--vp", "1",
            "--ep", "8", "--overlap-ep-comm"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vp" in err


# ---- the papers' convention keeps v1's overlap: hidden under the layer's own compute ----------

def _v1(overlap: bool, vp: int = 1, pp: int = 1):
    from carbonscaling.perf import step
    from carbonscaling.perf.constants import default_constants
    from carbonscaling.scaling import named_model

    m, s, c = named_model("mixtral-8x7b"), load_system("B100"), default_constants()
    g = one_layout(tp=1, pp=pp, vp=vp, dp=8, ep=8, microbatch=1, global_batch_sequences=512)
    o = TrainingOptions(ep_convention="cs-v1", overlap_ep_comm=overlap)
    return step.per_layer(m, s, g, o, c), step.evaluate(m, s, g, o, c)


def test_cs_v1_overlap_hides_the_all_to_all_under_the_layers_own_compute():
    lt_off, off = _v1(False)
    lt_on, on = _v1(True)
    a2a = float(lt_off.ep0[0])
    assert a2a > 0
    # v1: exposed = max(0, all-to-all - the layer's compute left by TP); none of Megatron-Core's pairing
    assert float(lt_on.ep0[0]) == pytest.approx(max(0.0, a2a - float(lt_off.compute0[0])), abs=1e-15)
    assert float(lt_on.ep_hidden0[0]) == pytest.approx(a2a - float(lt_on.ep0[0]))
    # no unpaired-microbatch ramp under cs-v1: the step's exposed EP time is the layers' alone
    assert float(on.ep_comm_s[0]) == pytest.approx(float(on.microbatches[0]) * 32 * float(lt_on.ep0[0]), abs=1e-12)
    assert float(off.step_time_s[0]) > float(on.step_time_s[0])


def test_cs_v1_overlap_adds_no_warm_up_chunk_to_memory():
    _, off = _v1(False, vp=2, pp=4)
    _, on = _v1(True, vp=2, pp=4)
    assert float(on.mem_activations_gb[0]) == float(off.mem_activations_gb[0])
