"""The search's building blocks against hand calculations and brute force: option lists,
DP steps and limits, the layouts of a device window, Algorithm 1's start, durations, MFU,
and the bounds and messages of its errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from carbonscaling.errors import InfeasibleError, InputError
from carbonscaling.hardware import load_system
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import ModelSpec, from_preset
from carbonscaling.search import (
    _check_pinned,
    _divisors,
    _expert_options,
    cp_options,
    dp_limit,
    dp_step,
    grid_for_devices,
    ideal_devices,
    inner_combos,
    model_flops_utilization,
    pipeline_options,
    search,
)

H100 = load_system("H100")
DENSE = ModelSpec(d_model=4096, n_layers=32, n_heads=32, vocab=50000, seq_len=4096, tokens=1e11,
                  global_batch_tokens=512 * 4096, name="dense")
MOE = DENSE.model_copy(update={"n_experts": 64, "top_k": 4, "name": "moe"})


@pytest.mark.parametrize("n", [1, 2, 12, 36, 97, 126, 360, 409, 1024])
def test_divisors_brute_force(n):
    assert _divisors(n) == [d for d in range(1, n + 1) if n % d == 0]


def test_pipeline_options():
    assert pipeline_options(12, "even") == [1, 2, 3, 4, 6, 12]
    # uneven: the fewest stages reaching each stage depth q = 1..12: ceil(12 / q)
    assert pipeline_options(12) == [1, 2, 3, 4, 6, 12]
    assert pipeline_options(10) == [1, 2, 3, 4, 5, 10]          # 3 and 4: stages of 4 and 3 layers
    assert pipeline_options(409, "even") == [1, 409]            # prime
    assert 16 in pipeline_options(126) and 16 not in pipeline_options(126, "even")  # Llama 3's 126 on 16


def test_cp_options():
    # powers of two with 2 CP | seq_len and >= 1024 tokens per rank, up to 16
    assert cp_options(DENSE) == [1, 2, 4]
    assert cp_options(DENSE.model_copy(update={"seq_len": 131072})) == [1, 2, 4, 8, 16]
    assert cp_options(DENSE.model_copy(update={"seq_len": 2048})) == [1, 2]
    assert cp_options(DENSE.model_copy(update={"seq_len": 3002})) == [1]      # 2 x 2 does not divide 3002
    assert cp_options(DENSE.model_copy(update={"seq_len": 1024})) == [1]


def test_expert_options():
    assert _expert_options(DENSE, {}, 4, False) == [(1, 4)]
    assert _expert_options(MOE, {}, 2, False) == [(8, 2), (16, 2), (32, 2), (64, 2)]   # EP >= min(E, 8)
    assert _expert_options(MOE, {}, 2, True) == [(64, 2)]                               # v1: EP = E
    assert _expert_options(MOE, {"ep": 16}, 2, False) == [(16, 2), (16, 1)]             # pinned EP: ETP TP or 1
    assert _expert_options(MOE, {"ep": 16}, 1, False) == [(16, 1)]
    assert _expert_options(MOE, {"ep": 16, "etp": 4}, 2, False) == [(16, 4)]


def _combos(**kw):
    base = {"ep": 1, "etp": 1, "tp": 1, "cp": 1, "pp": 1, "v": 1, "mb": 1, "zero": 0, "fsdp": 0, "rc": 0, "rl": 0}
    return {k: np.array([v]) for k, v in {**base, **kw}.items()}


@pytest.mark.parametrize("kw,step", [
    ({}, 1),
    ({"ep": 8}, 8),                          # 8 | 1 x 1 x DP
    ({"ep": 8, "tp": 2}, 4),                 # ETP 1 x EP 8 | TP 2 x DP
    ({"ep": 8, "etp": 2, "tp": 2}, 8),
    ({"ep": 8, "tp": 4, "cp": 2}, 1),        # 8 | 8 DP
    ({"ep": 4, "fsdp": 6}, 12),              # lcm(4, 6)
])
def test_dp_step(kw, step):
    assert int(dp_step(_combos(**kw))[0]) == step


def test_dp_limit():
    c = _combos(ep=8, mb=2)
    assert int(dp_limit(c, 100, {})[0]) == 48               # 50 microbatch slots, multiple of 8
    assert int(dp_limit(c, 100, {"dp": 16})[0]) == 16
    assert int(dp_limit(c, 100, {"dp": 12})[0]) == 0        # not a multiple of 8
    assert int(dp_limit(c, 100, {"dp": 56})[0]) == 0        # 56 x 2 > 100 sequences


def test_grid_for_devices_is_every_layout_in_the_window():
    combos = inner_combos(MOE, {"microbatch": 1, "zero": 2}, TrainingOptions(), system=H100)
    batch = 512
    grid, idx = grid_for_devices(combos, 64, 257, batch, {}, with_index=True)
    got = sorted(zip(idx.tolist(), grid.dp.tolist()))
    want = []
    for i in range(len(combos["tp"])):
        base = int(combos["tp"][i] * combos["cp"][i] * combos["pp"][i])
        step = int(dp_step({k: v[i:i + 1] for k, v in combos.items()})[0])
        for dp in range(step, batch + 1, step):
            if 64 <= base * dp < 257 and dp * int(combos["mb"][i]) <= batch:
                want.append((i, dp))
    assert got == sorted(want)
    assert np.all((grid.devices >= 64) & (grid.devices < 257))


def test_ideal_devices_by_hand():
    m = from_preset("cs-v2", d_model=4096)
    peak = H100.device.peak_flops("bf16")
    for days in (30, 90):
        assert ideal_devices(m, H100, days * 86400.0) == max(1, int(m.train_flops / (days * 86400 * peak)))
    fp8 = ideal_devices(m, H100, 90 * 86400.0, TrainingOptions(precision="fp8"))
    assert fp8 == max(1, int(m.train_flops / (90 * 86400 * H100.device.peak_flops("fp8"))))
    assert ideal_devices(DENSE, H100, 1e12) == 1


def test_model_flops_utilization_by_hand():
    from carbonscaling.mfu import megatron_flops_per_token

    peak = H100.device.peak_flops("bf16")
    paper = model_flops_utilization(DENSE, H100, 64, 1e6, convention="cs-paper")
    assert float(paper) == pytest.approx(DENSE.model_flops / (1e6 * 64 * peak))
    # the default: Megatron's count (no input embedding, causal attention as half)
    want = megatron_flops_per_token(DENSE) * DENSE.train_tokens / (1e6 * 64 * peak)
    assert float(model_flops_utilization(DENSE, H100, 64, 1e6)) == pytest.approx(want)
    assert want < float(paper)


def test_search_duration_is_steps_times_step_time():
    r = search(DENSE, H100, deadline_days=30)
    steps = DENSE.train_tokens / (r.layout.global_batch_sequences * DENSE.seq_len)
    assert r.duration_s == pytest.approx(steps * float(r.step.step_time_s), rel=1e-12)
    assert r.duration_s <= 30 * 86400
    assert r.devices == r.layout.tp * r.layout.cp * r.layout.pp * r.layout.dp


# ---- pinned values and request bounds ------------------------------------------------------
@pytest.mark.parametrize("pins,field", [
    ({"tp": 3}, "tp"), ({"pp": 33}, "pp"), ({"cp": 3}, "cp"), ({"zero": 5}, "zero"), ({"zero": -1}, "zero"),
    ({"tp": 0}, "tp"), ({"tp": 2.5}, "tp"), ({"tp": True}, "tp"), ({"microbatch": 0}, "microbatch"),
    ({"fsdp": 3, "dp": 8}, "fsdp"), ({"fsdp": 2, "zero": 1}, "fsdp"), ({"recompute": "some"}, "recompute"),
    ({"recompute_layers": 2, "recompute": "selective"}, "recompute_layers"), ({"vp": 2, "pp": 1}, "vp"),
    ({"vp": 17}, "vp"), ({"bogus": 1}, "bogus"), ({"tp": 10**9 + 1}, "tp"),
])
def test_bad_pins_name_their_field(pins, field):
    with pytest.raises(InputError) as err:
        _check_pinned(pins, DENSE)
    assert err.value.field == field


def test_pins_at_their_bounds_are_accepted():
    assert _check_pinned({"zero": 0, "fsdp": 0, "recompute_layers": 0}, DENSE)["zero"] == 0
    assert _check_pinned({"zero": 4}, DENSE)["zero"] == 4
    assert _check_pinned({"interleave": 2, "pp": 4}, DENSE) == {"vp": 2, "pp": 4}
    assert _check_pinned({"tp": 8.0}, DENSE) == {"tp": 8}
    assert _check_pinned({"vp": 16}, DENSE) == {"vp": 16}          # n_layers / 2
    assert _check_pinned({"fsdp": 4, "dp": 8}, DENSE)["zero"] == 3
    assert _check_pinned({"ep": 64}, MOE) == {"ep": 64}
    with pytest.raises(InputError):
        _check_pinned({"ep": 128}, MOE)
    with pytest.raises(InputError):
        _check_pinned({"ep": 3}, MOE)


def test_deadline_bounds():
    with pytest.raises(InputError) as err:
        search(DENSE, H100, deadline_days=0)
    assert err.value.field == "deadline_days"


def test_unreachable_deadline_names_the_pipeline_bound_and_the_batch_cap():
    # 1e16 tokens in steps of 8 sequences: 6.1e11 steps, each at least one microbatch's trip
    # through the layers, whatever the device count (DP <= 8)
    m = ModelSpec(d_model=1024, n_layers=8, n_heads=8, vocab=32000, seq_len=2048, tokens=1e16,
                  global_batch_tokens=8 * 2048, name="tinybatch")
    with pytest.raises(InfeasibleError) as err:
        search(m, H100, deadline_days=1)
    e = err.value
    assert e.constraint == "deadline"
    bound = e.details["lower_bound_days"]
    assert bound == e.details["best_duration_days"] > 1
    assert str(e) == (f"no device count meets the 1-day deadline: every layout needs at least {bound:.1f} days "
                      "(one microbatch's trip through the pipeline per step) (the global batch of 8 sequences "
                      "caps data parallelism)")
    # past the bound the search walks the layouts; what it finds is never faster than the bound
    for days in (bound * 1.5, bound * 3):
        try:
            r = search(m, H100, deadline_days=days)
            assert bound * 86400 * (1 - 1e-9) <= r.duration_s <= days * 86400
        except InfeasibleError as e2:
            assert e2.details["best_duration_days"] >= bound * (1 - 1e-9) and e2.details["best_duration_days"] > days


def test_request_bounds():
    for days in (0, -1, 36500.5, float("nan"), True):
        with pytest.raises(InputError) as err:
            search(DENSE, H100, deadline_days=days)
        assert err.value.field == "deadline_days"
    with pytest.raises(InputError) as err:
        search(DENSE, H100, objective="cheapest")
    assert err.value.field == "objective" and str(err.value).endswith("must be 'fastest' or 'carbon', got 'cheapest'")
    with pytest.raises(InputError) as err:
        search(DENSE, H100, objective="carbon")
    assert err.value.field == "objective"
    with pytest.raises(InputError) as err:
        search(DENSE, H100, pipeline_split="odd")
    assert err.value.field == "pipeline_split"
    with pytest.raises(InputError) as err:
        search(DENSE, H100, pinned={"dp": 64, "microbatch": 16})
    assert err.value.field == "dp" and "1024" in str(err.value) and "512" in str(err.value)


@pytest.mark.parametrize("opts,rule", [(TrainingOptions(), "TP x CP x PP x DP (EP inside DP x CP)"),
                                       (TrainingOptions(ep_convention="cs-v1"), "TP x PP x DP (DP includes EP: v1's DP x EP)")])
def test_a_device_count_no_layout_has_names_the_rule(opts, rule):
    with pytest.raises(InfeasibleError) as err:
        search(DENSE, H100, options=opts, pinned={"devices": 7, "tp": 2})
    assert err.value.constraint == "layout"
    assert str(err.value) == (f"no allowed layout has exactly 7 devices (devices = {rule}; pinned tp=2; "
                              "at most 512 sequences per step)")


def test_prune_keeps_only_combinations_that_fit_and_can_meet_the_deadline():
    from carbonscaling.perf.constants import default_constants
    from carbonscaling.perf.step import evaluate
    from carbonscaling.search import _candidates, _combo_grid, _prune

    o, c = TrainingOptions(), default_constants()
    m = from_preset("cs-v2", d_model=4096)
    combos = inner_combos(m, {}, o, system=H100)
    batch = m.batch_sequences
    deadline_s = 20 * 86400.0
    cand = _candidates(m, H100, o, c, {}, batch, "uneven")
    # the first five results (the search helper may append more)
    kept, t_max, t_sum, best_bound, any_fit = _prune(cand, {}, deadline_s)[:5]
    assert any_fit and 0 < len(kept["tp"]) < len(combos["tp"])
    dp_max = dp_limit(kept, batch, {})
    at_max = evaluate(m, H100, _combo_grid(kept, dp_max, batch, {}), o, c)
    assert at_max.fits.all()                                   # fits at its largest DP
    min_steps = m.train_tokens / (batch * m.seq_len)
    bound = min_steps * (t_max + (t_sum - t_max) / kept["v"])
    assert np.all(bound <= deadline_s) and best_bound <= bound.min()
    # the search's answer is among the kept combinations and no faster than their bound
    r = search(m, H100, deadline_days=20)
    assert r.duration_s >= best_bound * (1 - 1e-9)


def test_the_layout_message_lists_every_pinned_part():
    with pytest.raises(InfeasibleError) as err:
        search(MOE, H100, pinned={"devices": 7, "tp": 1, "ep": 8, "etp": 1, "fsdp": 2, "microbatch": 1})
    assert "; pinned tp=1, ep=8, etp=1, fsdp=2, microbatch=1; at most 512 sequences per step)" in str(err.value)


def test_tp_options_stop_at_the_domain_and_max_tp():
    from carbonscaling.search import MAX_TP, _tp_options

    assert MAX_TP == 64
    wide = DENSE.model_copy(update={"n_heads": 130, "d_model": 130 * 64})   # divisors 1 2 5 10 13 26 65 130
    assert _tp_options(wide, None, legacy=True) == [1, 2, 5, 10, 13, 26]    # 65 > MAX_TP
    assert _tp_options(DENSE, H100, legacy=False) == [1, 2, 4, 8]           # the 8-GPU NVLink domain
