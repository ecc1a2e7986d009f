"""Regressions found by a planner's walk through `carbonscaling estimate` (stop 18 review):
each test failed before its fix."""

from __future__ import annotations

import json

import carbonscaling as cs

from helpers import cli


def test_no_median_carbon_prints_the_table(capsys):
    """--no-median-carbon left the median layout's tCO2e None and the table died on it (exit 1)."""
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-8b", "-d", "H100", "--no-median-carbon",
                         "--no-uncertainty")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "median-latency layout" in line)
    assert "not charged (--no-median-carbon)" in row


def test_a_median_layout_outlasting_the_hardware_does_not_refuse_the_answer(capsys):
    """The median-latency layout is context: a 2,000-day deadline is met (1,912 days < 6-year
    lifetime) but the median layout at that count takes 7.1 years, and its lifetime refusal used
    to turn the whole estimate into exit 3."""
    est = cs.estimate(model="llama3.1-70b", device="H100", deadline_days=2000, uncertainty=False)
    d = est.to_dict()
    assert d["performance"]["meets_deadline"] and d["performance"]["expected_duration_days"] < 6 * 365
    med = d["median_layout"]
    assert med["duration_days"] > 6 * 365  # the case this test is about
    assert med["total_tco2e"] is None and "lifetime" in med["carbon_note"]
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "-d", "H100", "--deadline-days", "2000",
                         "--no-uncertainty", "--json")
    assert code == 0, err
    assert json.loads(out)["median_layout"]["carbon_note"] == med["carbon_note"]


def test_the_main_layout_outlasting_the_hardware_is_still_refused(capsys):
    """The fix above only spares the median layout: a pinned run longer than the lifetime is exit 3."""
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "-d", "H100", "--devices", "64",
                         "--no-median-carbon", "--no-uncertainty")
    assert code == 3 and "lifetime" in err and out == ""


def test_an_unknown_precision_says_what_it_got_once(capsys):
    """'--precision fp4' printed "..., got 'fp4' (got 'fp4')"."""
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-8b", "--precision", "fp4", "--no-uncertainty")
    assert code == 2 and err.count("'fp4'") == 1 and err.startswith("error: precision")
    assert len(err.strip().splitlines()) == 1


def test_a_deadline_refusal_names_the_batch_it_is_capped_by(capsys):
    """A pinned (or published) global batch is not v1's critical batch: '--global-batch 7' said
    'the critical batch of 7 sequences caps data parallelism'."""
    code, _, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "--global-batch", "7", "--no-uncertainty")
    assert code == 3 and "the global batch of 7 sequences caps data parallelism" in err
    code, _, err = cli(capsys, "estimate", "-m", "llama3.1-405b", "--deadline-days", "1", "--no-uncertainty")
    assert code == 3 and "the global batch of 2048 sequences" in err  # the paper's 16M-token batch
    code, _, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "--deadline-days", "1", "--no-uncertainty")
    assert code == 3 and "the critical batch of" in err  # no batch published: the cs-v1 rule's
    code, _, err = cli(capsys, "estimate", "--preset", "cs-v1", "--d-model", "24576", "--device", "B100",
                       "--no-uncertainty")
    assert code == 3 and "the critical batch of 55142 sequences" in err  # a preset's batch is its rule's


def test_an_fsdp_group_larger_than_the_batch_is_named(capsys):
    """'--fsdp 3000' (more ranks than the 852-sequence batch has sequences) was refused as
    'does not fit in 80 GB per device' (exit 3): FSDP shards over DP ranks, which the batch caps."""
    code, _, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "--fsdp", "3000", "--no-uncertainty")
    assert code == 2 and err.startswith("error: fsdp (--fsdp): fsdp x microbatch (3000) exceeds the global batch")
    code, _, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "--fsdp", "8", "--dp", "4000", "--no-uncertainty")
    assert code == 2 and "dp (--dp)" in err  # dp named when it is the larger pin


def test_a_deadline_past_the_lifetime_buys_more_devices_at_a_low_goodput():
    """The search's deadline is capped at the lifetime in steady state, but the lifetime holds the
    expected wall clock (steady state / goodput): at goodput 0.5 a 3,000-day deadline used to get a
    2,052-day run (11.2 years of wall clock) and exit 3 instead of the layout that fits the lifetime."""
    est = cs.estimate(model="llama3.1-70b", device="H100", deadline_days=3000, goodput=0.5, uncertainty=False,
                      median_carbon=False).to_dict()
    assert est["performance"]["deadline_days"] == 6 * 365 * 0.5 == est["settings"]["deadline_days"]
    assert est["performance"]["expected_duration_days"] <= 6 * 365


def test_a_modelled_goodput_is_also_held_to_the_lifetime():
    """With the goodput modelled (interruptions 0.05 per device-day) the cap cannot be known before
    the search: the search is repeated with the deadline shortened (it used to exit 3, 6.22 years)."""
    est = cs.estimate(model="llama3.1-70b", device="H100", deadline_days=3000, interruptions_per_device_day=0.05,
                      uncertainty=False, median_carbon=False).to_dict()
    p = est["performance"]
    assert p["expected_duration_days"] <= 6 * 365 and p["deadline_days"] < 6 * 365 and p["meets_deadline"]
    assert est["settings"]["deadline_days"] == p["deadline_days"]


def test_a_year_without_a_region_is_refused_not_ignored(capsys):
    """'--year 2022' with the default grid intensity changed nothing and said nothing (with a
    numeric --ci it was already refused; --vendor-kg, --alpha are refused the same way)."""
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-8b", "--year", "2022", "--no-uncertainty")
    assert code == 2 and err.startswith("error: year (--year): applies to a region name") and out == ""
    code, out, _ = cli(capsys, "estimate", "-m", "llama3.1-8b", "--year", "2022", "--region", "us-east5",
                       "--no-uncertainty", "--json")
    assert code == 0 and json.loads(out)["carbon"]["ci_source"].startswith("us-east5 (Columbus) 2022")


def test_the_step_breakdown_shows_every_part_of_the_step(capsys):
    """The table and the web page's chart left out context-parallel communication (54 % of the step
    at --cp 64), host launch waits and CPU offload: the shown parts did not add up to the step."""
    from pathlib import Path

    from carbonscaling.chain import STEP_PARTS

    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "--cp", "64", "--no-uncertainty")
    assert code == 0, err
    shown = [float(p) for line in out.splitlines() if line.startswith("│ step:")
             for p in line.split("│")[2].replace("%", "").split("/")]
    assert len(shown) == len(STEP_PARTS) and abs(sum(shown) - 100) < 0.5
    js = (Path(cs.__file__).parent / "service" / "static" / "app.js").read_text()
    assert all(f'"{k}"' in js for k in STEP_PARTS)


def test_qat_shows_in_the_precision_row(capsys):
    """--qat runs the GEMMs in 8 bits (MFU against the FP8 peak) while the table said 'bf16 (default)'."""
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-8b", "--qat", "--no-uncertainty")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("│ precision "))
    assert "bf16 (default) + QAT (8-bit" in row


def test_an_entry_without_cell_flags_is_not_reported_as_all_verified(capsys):
    """The papers' and older entries carry no per-cell flags: the table said 'none' assumed or
    unverified for B100, whose own note says 'sram_mb and compute_units unverified'."""
    code, out, _ = cli(capsys, "estimate", "-m", "llama3.1-8b", "-d", "B100", "--no-uncertainty")
    row = next(line for line in out.splitlines() if "catalog cells assumed / unverified" in line)
    assert code == 0 and "no per-cell flags" in row and "sram_mb and compute_units unverified" in row
    code, out, _ = cli(capsys, "estimate", "-m", "llama3.1-8b", "-d", "H100-SXM", "--no-uncertainty")
    row = next(line for line in out.splitlines() if "catalog cells assumed / unverified" in line)
    assert code == 0 and row.split("│")[2].strip() == "none"  # a modern entry flags every cell


def test_the_whole_catalog_as_a_device_file_says_to_pick_one(capsys, tmp_path):
    """`devices --json > all.json` then `--device-file all.json` said 'must be a mapping of device
    fields, got list'; a one-device list is read, a longer one is refused naming the remedy."""
    code, out, _ = cli(capsys, "devices", "--json")
    assert code == 0 and len(json.loads(out)) > 1
    f = tmp_path / "all.json"
    f.write_text(out)
    code, _, err = cli(capsys, "estimate", "-m", "llama3.1-8b", "--device-file", str(f), "--no-uncertainty")
    assert code == 2 and "holds a list of" in err and "devices NAME --json" in err


def test_a_global_batch_rounded_down_says_what_was_asked(capsys):
    """Whole microbatches per data-parallel rank can cut the batch far below the model's (a pinned
    DP 1,072 with microbatch 8 on deepseek-v3: 8,576 of 15,360 sequences); the table printed 8,576 alone."""
    code, out, err = cli(capsys, "estimate", "-m", "deepseek-v3", "-d", "Gaudi3", "--dp", "1072", "--microbatch", "8",
                         "--no-uncertainty")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "global batch (sequences)" in line)
    assert "8,576 of the model's 15,360 / 1" in row
    code, out, _ = cli(capsys, "estimate", "-m", "llama3.1-70b", "--global-batch", "512", "--no-uncertainty")
    row = next(line for line in out.splitlines() if "global batch (sequences)" in line)
    assert code == 0 and "512 / " in row and " of the " not in row  # as pinned


def test_an_expected_wall_clock_past_the_deadline_is_said(capsys):
    """The deadline bounds steady-state training (docs/carbon.md); goodput stretches the wall clock
    past it (llama3.1-70b on H100: 89.9 steady-state days, 94.0 expected) and the table did not say."""
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "--no-uncertainty")
    assert code == 0, err
    note = out.strip().splitlines()[-1]
    assert note.startswith("note: the 90-day deadline bounds steady-state training (89.9 days)")
    assert note.endswith("the expected wall clock is 94.0 days")
    code, out, _ = cli(capsys, "estimate", "-m", "llama3.1-70b", "--goodput", "1", "--no-uncertainty")
    assert code == 0 and "steady-state training" not in out


def test_fp8_at_the_bf16_rate_is_said(capsys):
    """TPU v5p (and v6e, Gaudi 3) run FP8 at their BF16 rate: llama3.1-70b needs more v5p chips in FP8
    (3,648) than in BF16 (3,504), which reads as a bug unless the table says why."""
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "-d", "TPU-v5p", "--precision", "fp8",
                         "--no-uncertainty")
    assert code == 0 and "note: TPU-v5p runs FP8 at its BF16 rate (459 TFLOP/s)" in out, err
    code, out, _ = cli(capsys, "estimate", "-m", "llama3.1-70b", "-d", "H100", "--precision", "fp8", "--no-uncertainty")
    assert code == 0 and "BF16 rate" not in out


# --- stop 18 review, open items 4, 6 (recompute_layers and ETP pins) ---

def test_recompute_layers_above_the_pinned_chunk_is_refused(capsys):
    """'--recompute-layers 100 --pp 4' (80 layers) was accepted and echoed as 100; Megatron-Core's
    recompute_num_layers runs 1..num_layers_per_pipeline_rank of a model chunk."""
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "-d", "H100-SXM", "--recompute", "full",
                         "--recompute-layers", "100", "--pp", "4", "--no-uncertainty")
    assert code == 2 and out == ""
    assert err.startswith("error: recompute_layers") and "[0, 21]" in err and "pp 4 x vp 1" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "--recompute-layers", "81", "--no-uncertainty")
    assert code == 2 and err.startswith("error: recompute_layers") and "[0, 80]" in err


def test_recompute_layers_is_checked_against_the_pinned_vp():
    import pytest

    with pytest.raises(cs.errors.InputError, match=r"recompute_layers.*\[0, 11\].*pp 4 x vp 2"):
        cs.estimate(model="llama3.1-70b", device="H100-SXM", pp=4, vp=2, recompute="full", recompute_layers=12,
                    uncertainty=False)
    est = cs.estimate(model="llama3.1-70b", device="H100-SXM", pp=4, vp=2, recompute="full", recompute_layers=11,
                      uncertainty=False)
    assert est.to_dict()["layout"]["recompute_layers"] == 11


def test_a_searched_vp_records_the_chunk_not_the_pinned_count():
    """Pinned pp 4 and 20 layers: the search interleaves (vp 8, 3-layer chunks) and the layout said
    recompute_layers 20; it recomputes each whole chunk, so the record says the chunk."""
    lay = cs.estimate(model="llama3.1-70b", device="H100-SXM", pp=4, recompute="full", recompute_layers=20,
                      uncertainty=False).to_dict()["layout"]
    assert lay["vp"] > 1 and lay["recompute_layers"] == -(-21 // lay["vp"])


def test_etp_on_a_dense_model_is_refused(capsys):
    """'--etp 4' on llama3.1-70b was echoed in the layout (etp 4 with tp 1) and changed nothing."""
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-70b", "--etp", "4", "--no-uncertainty")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("error: etp") and "MoE expert layers" in err and "got 4" in err
    lay = cs.estimate(model="llama3.1-70b", etp=1, uncertainty=False).to_dict()["layout"]
    assert lay["etp"] == 1  # 1 (no expert TP) stays accepted
    lay = cs.estimate(model="gpt-oss-120b", device="H100-SXM", etp=1, uncertainty=False).to_dict()["layout"]
    assert lay["etp"] == 1  # MoE models keep their ETP pin


def test_tpus_do_not_list_fp16(capsys):
    """Every TPU entry ran --precision fp16 (at the BF16 rate); Google's docs give BF16/INT8/FP8 peaks and
    no FP16 rate, and the MXU multiplies in BF16. Other devices keep fp16."""
    from carbonscaling.hardware import load_system

    for name in ("TPUv3", "TPUv4", "TPUv5p", "TPU-v5e", "TPU-v5p", "TPU-v6e", "TPU7x"):
        fmts = load_system(name).device.supported_formats
        assert "fp16" not in fmts and "bf16" in fmts, name
    for name in ("H100", "H100-SXM", "A100-80GB", "MI300X", "Gaudi3", "B200"):
        assert "fp16" in load_system(name).device.supported_formats, name
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-8b", "-d", "TPU-v5p", "--precision", "fp16",
                         "--no-uncertainty")
    assert code == 2 and out == "" and err.startswith("error: precision") and "bf16, fp8" in err


def test_a_dense_answer_with_etp_equal_to_tp_is_accepted_when_pinned_back():
    """Answers show ETP = TP on dense models (Megatron-Core's default); pinning that back stays valid."""
    lay = cs.estimate(model="llama3.1-70b", tp=4, etp=4, uncertainty=False).to_dict()["layout"]
    assert lay["tp"] == lay["etp"] == 4


# --- stop 18 review, open item 3: the searched batch stays within BATCH_SHRINK_MAX of the requested one ---

def test_the_search_keeps_the_batch_within_ten_percent_when_a_layout_allows_it():
    """deepseek-v3 on Gaudi3 ran 8,576 of its 15,360 sequences (-44 %: 1,072 DP ranks x microbatch 8,
    one microbatch each); with the floor it runs 15,272 (83 microbatches of 184 DP ranks) on 1,104."""
    from carbonscaling.search_space import BATCH_SHRINK_MAX

    lay = cs.estimate(model="deepseek-v3", device="Gaudi3", uncertainty=False).to_dict()["layout"]
    assert lay["global_batch_sequences"] >= (1 - BATCH_SHRINK_MAX) * 15360
    assert lay["global_batch_sequences"] % (lay["dp"] * lay["microbatch"]) == 0  # Megatron's whole microbatches
    for model, device in (("llama3.1-8b", "H100-SXM"), ("qwen3-235b-a22b", "B200"), ("llama3.1-70b", "TPU-v5p")):
        d = cs.estimate(model=model, device=device, uncertainty=False).to_dict()
        assert d["layout"]["global_batch_sequences"] >= 0.9 * d["model"]["global_batch_sequences"], (model, device)


def test_without_a_layout_inside_the_floor_the_batch_rounds_further_and_says_so(capsys):
    """401 devices (prime) leave DP 401 x microbatch 1 only: 401 of 593 sequences, as before, shown."""
    lay = cs.estimate(model="llama3.1-8b", device="H100-SXM", devices=401, uncertainty=False).to_dict()["layout"]
    assert lay["dp"] == 401 and lay["global_batch_sequences"] == 401
    code, out, err = cli(capsys, "estimate", "-m", "llama3.1-8b", "-d", "H100-SXM", "--devices", "401",
                         "--no-uncertainty")
    assert code == 0, err
    assert "401 of the model's 593" in next(line for line in out.splitlines() if "global batch (sequences)" in line)


def test_the_papers_convention_and_pinned_dp_keep_the_plain_rounding():
    from carbonscaling.search_space import batch_floor

    assert batch_floor(15360, {}, legacy=False) == 13824
    assert batch_floor(15360, {}, legacy=True) == 0  # ep_convention cs-v1: the paper scenarios
    assert batch_floor(15360, {"dp": 1072}, legacy=False) == 0
    assert batch_floor(512, {"global_batch": 512}, legacy=False) == 0
