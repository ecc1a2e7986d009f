"""The exact text of every refusal ``search`` gives for a bad request or pinned layout part,
and of its infeasibility answers: a user reads the line, so each word and number is pinned
(CLI exit 2 / 3 print them as they are)."""

from __future__ import annotations

import pytest

from carbonscaling.errors import InfeasibleError, InputError
from carbonscaling.hardware import load_system
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import ModelSpec
from carbonscaling.search import search

H100 = load_system("H100")
DENSE = ModelSpec(d_model=4096, n_layers=32, n_heads=32, vocab=50000, seq_len=4096, tokens=1e11,
                  global_batch_tokens=512 * 4096, name="dense")
MOE = DENSE.model_copy(update={"n_experts": 64, "top_k": 4, "name": "moe"})
V1 = TrainingOptions(ep_convention="cs-v1")


@pytest.mark.parametrize("model,pins,opts,field,message", [
    (DENSE, {"tp": 2.5}, None, "tp", "must be a whole number, got 2.5"),
    (DENSE, {"tp": True}, None, "tp", "must be a whole number, got True"),
    (DENSE, {"tp": 0}, None, "tp", "must be in [1, 1000000000], got 0"),
    (DENSE, {"zero": 5}, None, "zero", "must be in [0, 4], got 5"),
    (DENSE, {"fsdp": -1}, None, "fsdp", "must be in [0, 1000000000], got -1"),
    (DENSE, {"recompute_layers": -1}, None, "recompute_layers", "must be in [0, 1000000000], got -1"),
    (DENSE, {"tp": 3}, None, "tp", "must divide n_heads (32), got 3"),
    (DENSE, {"pp": 33}, None, "pp", "must be <= n_layers (32), got 33"),
    (MOE, {"ep": 128}, None, "ep", "must divide n_experts (64), got 128"),
    (MOE, {"ep": 3}, None, "ep", "must divide n_experts (64), got 3"),
    (DENSE, {"cp": 2}, V1, "cp", "context parallelism needs ep_convention='megatron'"),
    (DENSE, {"cp": 3}, None, "cp", "2 x cp must divide seq_len (4096) for causal load balancing, got cp=3"),
    (MOE, {"etp": 1, "tp": 2}, V1, "etp", "expert tensor parallelism other than TP needs ep_convention='megatron'"),
    (DENSE, {"recompute_layers": 2, "recompute": "selective"}, None, "recompute_layers",
     "needs recompute='full', got recompute='selective'"),
    (DENSE, {"fsdp": 2, "zero": 1}, None, "fsdp", "FSDP shards like ZeRO-3; got zero=1"),
    (DENSE, {"fsdp": 3, "dp": 8}, None, "fsdp", "must divide dp (8), got 3"),
    (DENSE, {"vp": 2, "pp": 1}, None, "vp", "interleaving needs pp > 1"),
    (DENSE, {"vp": 17}, None, "vp", "must be <= n_layers / 2 (16), got 17"),
    (DENSE, {"vp": 5, "pp": 8}, V1, "vp", "must be <= layers per stage (4), got 5"),
    (DENSE, {"vp": 5, "pp": 8}, None, "vp", "Megatron cannot split 32 layers over pp 8 x vp 5 "
                                             "(even, embedding/loss-accounted, or uneven first/last stages)"),
    (DENSE, {"zero": 4}, TrainingOptions(flexible_sharding=False), "zero",
     "stage 4 (hierarchical ZeRO-3) needs flexible sharding"),
    (DENSE, {"dp": 64, "microbatch": 16}, None, "dp", "dp x microbatch (1024) exceeds the global batch of 512 sequences"),
    (DENSE, {"dp": 8, "microbatch": 2, "global_batch": 8}, None, "global_batch",
     "dp x microbatch (16) exceeds the global batch of 8 sequences"),
])
def test_pinned_refusals_word_for_word(model, pins, opts, field, message):
    with pytest.raises(InputError) as err:
        search(model, H100, options=opts, pinned=pins)
    assert (err.value.field, err.value.message) == (field, message)


def test_unknown_pins_and_modes_word_for_word():
    with pytest.raises(InputError) as err:
        search(DENSE, H100, pinned={"bogus": 1})
    assert err.value.field == "bogus" and err.value.message.startswith("cannot be pinned (pinnable: ")
    assert "tp, " in err.value.message and "devices" in err.value.message
    with pytest.raises(InputError) as err:
        search(DENSE, H100, pinned={"recompute": "some"})
    assert (err.value.field, err.value.message) == ("recompute", "must be one of none, selective, full, got 'some'")


@pytest.mark.parametrize("kw,field,message", [
    ({"deadline_days": 0}, "deadline_days", "must be in (0, 36500], got 0"),
    ({"deadline_days": 36501}, "deadline_days", "must be in (0, 36500], got 36501"),
    ({"objective": "cheapest"}, "objective", "must be 'fastest' or 'carbon', got 'cheapest'"),
    ({"objective": "carbon"}, "objective", "'carbon' needs a carbon_score (estimate() provides one)"),
    ({"pipeline_split": "odd"}, "pipeline_split", "must be one of uneven, even, got 'odd'"),
])
def test_request_refusals_word_for_word(kw, field, message):
    with pytest.raises(InputError) as err:
        search(DENSE, H100, **kw)
    assert (err.value.field, err.value.message) == (field, message)


def test_a_model_that_fits_nowhere_names_memory_and_the_largest_layout():
    huge = ModelSpec(d_model=65536, n_layers=4, n_heads=512, vocab=50000, seq_len=4096, tokens=1e11,
                     global_batch_tokens=8 * 4096, name="huge")
    with pytest.raises(InfeasibleError) as err:
        search(huge, H100, pinned={"zero": 0})
    e = err.value
    assert e.constraint == "memory"
    assert str(e) == ("huge does not fit in 80 GB per device under any allowed layout "
                      "(up to TP=8, PP=4, full recompute; pinned zero=0)")  # not 'ZeRO-3': zero=0 is pinned
    with pytest.raises(InfeasibleError) as err:
        search(huge, H100, pinned={"zero": 0, "devices": 64})
    assert str(err.value).endswith("under any allowed layout at 64 devices (up to TP=8, PP=4, full recompute; "
                                   "pinned zero=0)")
    from carbonscaling.perf.layout import TrainingOptions
    from carbonscaling.search import _memory_reach

    assert _memory_reach(huge, H100, TrainingOptions(), {"devices": 64}) == "up to TP=8, PP=4, ZeRO-3, full recompute"


def test_no_layout_has_the_pinned_count_lists_pinned_parts_in_order():
    with pytest.raises(InfeasibleError) as err:
        search(MOE, H100, pinned={"devices": 7, "microbatch": 1, "fsdp": 2, "etp": 1, "ep": 4, "dp": 16,
                                  "pp": 8, "cp": 2, "tp": 4})
    assert err.value.constraint == "layout"
    assert str(err.value) == ("no allowed layout has exactly 7 devices (devices = TP x CP x PP x DP (EP inside DP x CP); "
                              "pinned tp=4, cp=2, pp=8, dp=16, ep=4, etp=1, fsdp=2, microbatch=1; "
                              "at most 512 sequences per step)")
