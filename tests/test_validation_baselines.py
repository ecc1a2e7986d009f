"""Validation: published runs loader, the LLMC and reg baselines, metrics and the evaluate harness."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from carbonscaling._data import load_yaml
from carbonscaling.errors import InputError, UnknownNameError
from carbonscaling.validation import harness, llmcarbon, metrics, regression, runs
from carbonscaling.validation.harness import evaluate as run_evaluate
from carbonscaling.validation.harness import validate

SHARED_RUNS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "published_runs.csv"
RESCALE = (1 - 7.76 / 33.46) / 312 * 125


def quad(a, b, c, x):
    return a * x * x + b * x + c


def f_dev(p):
    return quad(-2.12910565e-21, 4.39684339e-09, 7.99173057e02, p)


def f_tp(p):
    return quad(-8.82079068e-20, 1.68591116e-09, 1.33954735e02, p)


def f_pp(p):
    return quad(-5.60233749e-23, 8.45435587e-11, 1.34546129e02, p)


@pytest.fixture(scope="module")
def shipped():
    return runs.load_runs()


def by_id(rs):
    return {r.run_id: r for r in rs}


def csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: row.get(k, "") for k in columns})
    return buf.getvalue()


# ---- runs -------------------------------------------------------------------------
def test_shipped_runs_load_with_catalog_keys(shipped):
    assert len(shipped) == 22
    models = load_yaml("models.yaml")["models"]
    from carbonscaling.hardware import device_names

    devices = device_names()
    for r in shipped:
        assert r.model_key in models, r.run_id
        assert r.device_key in devices, r.run_id
        assert r.used_for_fitting is r.run_id.startswith("megatron2021_")  # the in-situ GEMM factor's data
    ids = by_id(shipped)
    assert ids["deepseek_v3"].model_key == ids["deepseek_v3_pretrain"].model_key == "deepseek-v3"
    assert ids["megatron2021_1008B"].model_key == "megatron-1t"
    assert ids["bloom_176b"].flash_attention is False and ids["bloom_176b"].recompute == "full"
    assert ids["llama3.1_405B"].flash_attention is True
    assert ids["palm_540b"].flash_attention is False and ids["palm_540b"].utilization_kind == "mfu"
    assert all(ids[f"megatron2021_{s}"].recompute == "full" for s in ("1.7B", "1008B"))
    # BLOOM reports no token count; the documented assumption fills in.
    assert ids["bloom_176b"].tokens is None and ids["bloom_176b"].training_tokens == 366e9
    assert ids["llama3.1_405B"].training_flops == pytest.approx(6 * 405e9 * 15e12)
    # Model cards (issue 10): device counts not published are assumptions, used but never scored.
    cards = {"llama2_7b": 184320, "llama2_13b": 368640, "llama2_70b": 1720320, "llama3_8b": 1.3e6,
             "llama3_70b": 6.4e6, "llama3.1_8b": 1.46e6, "llama3.1_70b": 7.0e6, "llama3.1_405B": 30.84e6}
    for rid, hours in cards.items():
        assert ids[rid].device_hours == hours and "MODEL_CARD" in ids[rid].source
        assert ids[rid].devices is not None
        if ids[rid].n_devices is None:
            assert "ASSUMED" in ids[rid].assumptions and "n_devices" not in ids[rid].reported()


@pytest.mark.skipif(not SHARED_RUNS.is_file(), reason="shared/data not beside the checkout")
def test_shipped_runs_keep_every_shared_column_and_value():
    shared = list(csv.DictReader(SHARED_RUNS.open(encoding="utf-8", newline="")))
    ours = list(csv.DictReader(runs.shipped_runs_path().open(encoding="utf-8", newline="")))
    # The shared rows first and unchanged; then the package's own additions (issue 10's model cards).
    assert [r["run_id"] for r in ours[:len(shared)]] == [r["run_id"] for r in shared]
    assert {r["run_id"] for r in ours[len(shared):]} == CARD_RUNS
    for a, b in zip(shared, ours):
        # cp: an empty shared cell may be stated as 1 (no context parallelism: the same fact, explicit).
        assert {k: ("" if k == "cp" and a[k] == "" and b[k] == "1" else b[k]) for k in a} == a


def test_missing_required_column_raises_input_error_naming_it(tmp_path):
    cols = [c for c in runs.REQUIRED_COLUMNS if c != "device_hours"]
    path = tmp_path / "runs.csv"
    path.write_text(csv_text([{"run_id": "x", "params_total": 1e9, "params_active": 1e9, "tokens": 1e10,
                                "accelerator": "A100-80GB", "n_devices": 8}], cols))
    with pytest.raises(InputError) as err:
        runs.load_runs(path)
    assert err.value.field == "device_hours"
    assert "required" in str(err.value)


def test_user_csv_with_required_columns_only_loads(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(csv_text([{"run_id": "mine", "params_total": 7e9, "params_active": 7e9, "tokens": 1e12,
                                "accelerator": "H100-SXM-80GB", "n_devices": 64, "device_hours": 50000}],
                               list(runs.REQUIRED_COLUMNS)))
    (run,) = runs.load_runs(path)
    assert run.device_key == "H100-SXM" and run.n_devices == 64 and run.device_hours == 50000


@pytest.mark.parametrize("column,value,fragment", [
    ("params_total", "lots", "must be a number"),
    ("n_devices", "8.5", "whole number"),
    ("mfu", "46.2", "less than or equal to 1"),
    ("params_active", "", "required value is empty"),
])
def test_bad_cells_name_run_and_column(column, value, fragment):
    row = {"run_id": "r1", "params_total": 1e9, "params_active": 1e9, "tokens": 1e10,
           "accelerator": "A100-80GB", "n_devices": 8, "device_hours": 10, "mfu": 0.4}
    row[column] = value
    with pytest.raises(InputError) as err:
        runs.parse_runs(csv_text([row], list(row)))
    assert err.value.field.endswith(f"[r1].{column}")
    assert fragment in err.value.message


def test_duplicate_run_and_unknown_device_raise():
    row = {"run_id": "r1", "params_total": 1e9, "params_active": 1e9, "tokens": 1e10,
           "accelerator": "A100-80GB", "n_devices": 8, "device_hours": 10}
    with pytest.raises(InputError, match="duplicate"):
        runs.parse_runs(csv_text([row, row], list(row)))
    with pytest.raises(UnknownNameError) as err:
        runs.parse_runs(csv_text([{**row, "accelerator": "Z9000"}], list(row)))
    assert err.value.field == "runs[r1].device_key"
    with pytest.raises(InputError):
        runs.load_runs("/nonexistent/runs.csv")


def test_runs_frame_has_one_row_per_run(shipped):
    df = runs.runs_frame(shipped)
    assert len(df) == 22 and {"run_id", "model_key", "device_key", "training_flops"} <= set(df.columns)


# ---- LLMC: hand-computed values ------------------------------------------------------
def test_llmc_1_3b_on_a100_80gb_by_hand():
    p = 1.3e9
    # cap = 0.03 * 80 = 2.4B; 1.3 < 8 * 2.4 -> PP 1, TP ceil(1.3 / 2.4) = 1
    assert llmcarbon.parallelism(p, 80) == (1, 1)
    assert f_dev(p) == pytest.approx(804.885, abs=1e-3)
    r = llmcarbon.estimate(p, 26e9, "A100-80GB")
    assert r.n_devices == 805 and (r.tp, r.pp) == (1, 1) and r.throughput_fit == "tp_only"
    assert r.achieved_tflops == pytest.approx(135.997349, rel=1e-8)
    days = 6 * p * 26e9 / (805 * 135.997349e12) / 86400
    assert r.duration_days == pytest.approx(days, rel=1e-6)
    assert r.device_hours == pytest.approx(805 * days * 24, rel=1e-6)


def test_llmc_bloom_176b_searched_and_pinned_by_hand():
    p, tokens = 176e9, 366e9
    # 176 / 19.2 = 9.17 -> TP 8, PP 10; f_dev = 1507.07 -> round(1507.07 / 80) = 19 -> 1520
    searched = llmcarbon.estimate(p, tokens, "A100-80GB", pue=1.0, ci_g_per_kwh=57)
    assert (searched.tp, searched.pp, searched.n_devices) == (8, 10, 1520)
    assert searched.achieved_tflops == pytest.approx(147.690415, rel=1e-7) == pytest.approx(f_pp(p))
    hours = 6 * p * tokens / (147.690415e12 * 3600)
    assert searched.device_hours == pytest.approx(hours, rel=1e-6)
    assert searched.duration_days == pytest.approx(hours / 1520 / 24, rel=1e-6)
    assert searched.energy_kwh == pytest.approx(0.4 * hours, rel=1e-6)  # 400 W TDP, PUE 1
    assert searched.operational_tco2e == pytest.approx(0.4 * hours * 57 / 1e6, rel=1e-6)

    pinned = llmcarbon.estimate(p, tokens, "A100-80GB", n_devices=384, pue=1.0)
    assert pinned.mode == "pinned" and pinned.n_devices == 384
    assert pinned.device_hours == pytest.approx(searched.device_hours)   # hours do not depend on count
    assert pinned.duration_days == pytest.approx(hours / 384 / 24, rel=1e-6)
    # embodied: die 8.26 cm2 x 1.6 kg/cm2 per GPU; per host CPU 1.47, DRAM 102.4, SSD 589.824, others 133.92
    share = pinned.duration_days / (5 * 365)
    expected = (8.26 * 1.6 * 384 + 48 * (1.47 * 1.0 + 256 * 0.4 + 32768 * 0.018 + 111.6 * 1.2)) * share
    assert pinned.embodied_tco2e == pytest.approx(expected / 1000, rel=1e-9)
    assert set(pinned.embodied_kg_by_item) == {"accelerator", "cpu", "dram", "ssd", "others"}


def test_llmc_non_80gb_multiplier_and_rescale_by_hand():
    p = 1.3e9
    # 40 GB: cap 1.2 -> TP 2; round(804.885 / 2) = 402 -> 804 devices x 5
    r40 = llmcarbon.estimate(p, None, "A100-40GB")
    assert (r40.tp, r40.pp, r40.n_devices) == (2, 1, 4020)
    assert r40.achieved_tflops == pytest.approx(f_tp(p) * RESCALE)
    # TPU v4 (32 GB): cap 0.96 -> 540B: TP 8, PP ceil(540 / 7.68) = 71; x 2.5
    tpu = llmcarbon.estimate(540e9, 780e9, "TPUv4")
    assert (tpu.tp, tpu.pp) == (8, 71)
    assert tpu.n_devices == round(f_dev(540e9) / 568) * 568 * 2.5 == 5680
    assert tpu.achieved_tflops == pytest.approx(f_pp(540e9) * RESCALE)
    assert math.isnan(r40.duration_days) and math.isnan(r40.embodied_tco2e)  # no tokens, no time


def test_llmc_reproduces_megatron_throughput_in_sample(shipped):
    """The TFLOPs fits were fitted on these rows: within 3 % of every one."""
    for r in shipped:
        if r.run_id.startswith("megatron"):
            pred = llmcarbon.predict_run(r)
            assert pred["hfu_tflops_per_device"] == pytest.approx(r.tflops_per_device, rel=0.03), r.run_id


# ---- LLMC: pathologies, shown not fixed ------------------------------------------------
def test_llmc_pathology_800_devices_for_small_models():
    assert 790 <= llmcarbon.device_count(1.3e9, 80) <= 810
    assert llmcarbon.device_count(125e6, 80) >= 790


def test_llmc_pathology_device_fit_peaks_near_1t_then_falls():
    fit = llmcarbon.constants()["fits"]["device_count"]  # the shipped coefficients, not literals
    peak = -fit["b"] / (2 * fit["a"])
    assert peak == pytest.approx(1.03e12, rel=0.01)
    assert llmcarbon.quadratic("device_count", 2e12) < llmcarbon.quadratic("device_count", 1e12)
    assert llmcarbon.device_count(2e12, 80) < llmcarbon.device_count(1e12, 80) / 2


def test_llmc_pathology_tp_of_3_and_6():
    assert llmcarbon.parallelism(6.7e9, 80) == (3, 1)
    assert llmcarbon.parallelism(13e9, 80) == (6, 1)


def test_llmc_pathology_no_deadline_and_a100_speed_on_h100(shipped):
    llama = by_id(shipped)["llama3.1_405B"]
    pred = llmcarbon.predict_run(llama)
    assert pred["duration_days"] > 1000        # no deadline: over three years
    assert pred["mfu"] < 0.2                   # A100 TFLOPs against the H100 peak


def test_llmc_rejects_bad_input(shipped):
    with pytest.raises(InputError) as err:
        llmcarbon.estimate(-1, 1e9)
    assert err.value.field == "params"
    with pytest.raises(InputError):
        llmcarbon.llmc_predictor("guess")
    with pytest.raises(UnknownNameError):
        llmcarbon.estimate(1e9, 1e10, "Z9000")


# ---- reg ------------------------------------------------------------------------------
def test_fit_loglog_recovers_a_power_law():
    flops = [1e20, 1e21, 1e22, 1e23]
    fit = regression.fit_loglog(flops, [3.0 * f ** 0.8 for f in flops])
    assert fit.slope == pytest.approx(0.8) and math.exp(fit.intercept) == pytest.approx(3.0)
    assert fit.predict(1e24) == pytest.approx(3.0 * 1e24 ** 0.8)
    one = regression.fit_loglog([1e22], [5e4])
    assert one.slope_fixed and one.slope == 1.0 and one.predict(2e22) == pytest.approx(1e5)
    with pytest.raises(InputError):
        regression.fit_loglog([1e22, -1], [1, 2])


def test_reg_fit_set_is_a100_h100_with_device_hours(shipped):
    fit_ids = {r.run_id for r in shipped if regression.is_fit_run(r)}
    assert fit_ids == {"llama3.1_405B", "bloom_176b", "llama2_7b", "llama2_13b", "llama2_70b", "llama3_8b",
                       "llama3_70b", "llama3.1_8b", "llama3.1_70b"}


#: Model-card runs added by issue 10; the hand-computed regression checks below use the runs before them.
CARD_RUNS = {"llama2_7b", "llama2_13b", "llama2_70b", "llama3_8b", "llama3_70b", "llama3.1_8b", "llama3.1_70b"}


def test_reg_leave_one_out_never_uses_the_run_itself(shipped):
    shipped = [r for r in shipped if r.run_id not in CARD_RUNS]
    bloom = by_id(shipped)["bloom_176b"]
    loo = regression.predict_run(bloom, shipped)["device_hours"]
    inc = regression.predict_run(bloom, shipped, leave_one_out=False)["device_hours"]
    assert loo != pytest.approx(inc)
    # Changing BLOOM's own reported hours leaves its LOO prediction unchanged ...
    doctored = [r.model_copy(update={"device_hours": r.device_hours * 10}) if r.run_id == "bloom_176b" else r
                for r in shipped]
    assert regression.predict_run(bloom, doctored)["device_hours"] == pytest.approx(loo)
    # ... but moves the in-sample one and the predictions of the other runs.
    assert regression.predict_run(bloom, doctored, leave_one_out=False)["device_hours"] != pytest.approx(inc)
    palm = by_id(shipped)["palm_540b"]
    assert regression.predict_run(palm, doctored)["device_hours"] != pytest.approx(
        regression.predict_run(palm, shipped)["device_hours"])
    # LOO for BLOOM = the fit on Llama alone (slope fixed at 1 with one point).
    llama = by_id(shipped)["llama3.1_405B"]
    assert loo == pytest.approx(llama.device_hours * bloom.training_flops / llama.training_flops)


def test_reg_predictor_skips_runs_without_tokens(shipped):
    assert regression.reg_predictor(shipped)(by_id(shipped)["palm_540b"])["reg_fit_n"] == 9
    shipped = [r for r in shipped if r.run_id not in CARD_RUNS]
    pred = regression.reg_predictor(shipped)
    assert pred(by_id(shipped)["megatron2021_1.7B"]) == {}
    assert pred(by_id(shipped)["palm_540b"])["reg_fit_n"] == 2


# ---- metrics --------------------------------------------------------------------------
def test_metrics_on_known_arrays():
    rep, pred = [100.0, 200.0, 400.0], [110.0, 180.0, 400.0]
    assert metrics.mape(rep, pred) == pytest.approx(0.2 / 3)
    assert metrics.median_ape(rep, pred) == pytest.approx(0.1)
    assert metrics.r2(rep, pred) == pytest.approx(1 - 500 / 46666.6667, rel=1e-7)
    ly, lp = [math.log(v) for v in rep], [math.log(v) for v in pred]
    mean = sum(ly) / 3
    expect = 1 - sum((a - b) ** 2 for a, b in zip(ly, lp)) / sum((a - mean) ** 2 for a in ly)
    assert metrics.r2_log(rep, pred) == pytest.approx(expect)
    perfect = metrics.summarize(rep, rep)
    assert perfect == {"mape": 0.0, "median_ape": 0.0, "r2_log": 1.0, "r2": 1.0, "n": 3}


def test_metrics_skip_missing_pairs_and_report_n():
    rep = [100.0, 200.0, 400.0, None, float("nan"), 50.0]
    pred = [110.0, 180.0, 400.0, 5.0, 7.0, None]
    s = metrics.summarize(rep, pred)
    assert s["n"] == 3 and s["mape"] == pytest.approx(0.2 / 3)
    single = metrics.summarize([10.0], [12.0])
    assert single["n"] == 1 and single["mape"] == pytest.approx(0.2) and math.isnan(single["r2"])
    empty = metrics.summarize([None], [1.0])
    assert empty["n"] == 0 and math.isnan(empty["mape"])
    with pytest.raises(ValueError):
        metrics.paired([1.0], [1.0, 2.0])


# ---- evaluate -------------------------------------------------------------------------
def fake_ours(run):
    """Predicts every reported quantity 10 % high, in the run's own FLOPs counting."""
    out = {q: v * 1.1 for q, v in run.reported().items()}
    if run.utilization_kind == "hfu":
        for q, k in (("mfu", "hfu"), ("tflops_per_device", "hfu_tflops_per_device")):
            if q in out:
                out[k] = out.pop(q)
    return out


def test_evaluate_shape_and_fake_predictor(shipped):
    marked = [r.model_copy(update={"used_for_fitting": r.run_id == "bloom_176b"}) for r in shipped]
    report = run_evaluate(marked, {"ours": fake_ours, "llmc": llmcarbon.llmc_predictor()})
    doc = json.loads(report.to_json())
    assert set(doc) == {"runs", "metrics", "metrics_split"}
    assert len(doc["runs"]) == 22
    ours = doc["metrics"]["ours"]
    for q in ("device_hours", "mfu", "tflops_per_device", "duration_days", "energy_kwh",
              "operational_tco2e", "embodied_tco2e"):
        assert ours[q]["mape"] == pytest.approx(0.1) and ours[q]["median_ape"] == pytest.approx(0.1)
        assert set(ours[q]) == {"mape", "median_ape", "r2_log", "r2", "n"}
    assert ours["device_hours"]["n"] == 12 and ours["mfu"]["n"] == 11
    assert doc["metrics_split"]["used_for_fitting"]["ours"]["device_hours"]["n"] == 1
    assert doc["metrics_split"]["not_used_for_fitting"]["ours"]["device_hours"]["n"] == 11
    row = next(r for r in doc["runs"] if r["run_id"] == "bloom_176b")
    assert row["reported"]["device_hours"] == 1082990
    assert row["ape"]["ours"]["device_hours"] == pytest.approx(0.1)
    assert row["predicted"]["llmc"]["n_devices"] == 1520


def test_evaluate_compares_hfu_with_hfu_and_mfu_with_mfu(shipped):
    meg = by_id(shipped)["megatron2021_1.7B"]
    assert harness.prediction_key(meg, "mfu") == "hfu"
    assert harness.prediction_key(by_id(shipped)["palm_540b"], "mfu") == "mfu"
    only_mfu = run_evaluate([meg], {"m": lambda r: {"mfu": 0.44}})
    assert "mfu" not in only_mfu.metrics["m"]                      # model-FLOPs MFU vs HFU: not scored
    both = run_evaluate([meg], {"m": lambda r: {"mfu": 0.33, "hfu": 0.44}})
    assert both.metrics["m"]["mfu"]["mape"] == pytest.approx(0.0)


def test_evaluate_records_predictor_errors(shipped):
    def broken(run):
        raise InputError("model", "cannot build this one")

    report = run_evaluate(shipped[:2], {"broken": broken})
    assert all("cannot build" in r["errors"]["broken"] for r in report.runs)
    assert report.metrics["broken"] == {}
    with pytest.raises(InputError):
        run_evaluate(shipped, {})
    with pytest.raises(InputError):
        run_evaluate(shipped, {"x": 3})


def test_validate_runs_baselines_and_ours(shipped):
    report = validate(ours=fake_ours)
    assert report.methods == ["ours", "reg", "llmc", "llmc_pinned"]
    table = {row["run_id"]: row for row in report.table("device_hours")}
    assert table["bloom_176b"]["llmc"] == pytest.approx(6 * 176e9 * 366e9 / (147.690415e12 * 3600), rel=1e-6)
    assert table["megatron2021_1.7B"]["reported"] is None
    assert report.to_frame().shape[0] == 22
    with pytest.raises(InputError):
        report.table("speed")
