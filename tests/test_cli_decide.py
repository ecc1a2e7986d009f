"""Decision commands (carbonscaling.cli_decide) where users meet them: JSON out, files, one-line errors."""

from __future__ import annotations

import csv
import json

import pytest

from carbonscaling._data import data_path
from helpers import cli


SMALL = ["--model", "llama2-7b", "--device", "H100"]


def test_uncertainty_json_and_out(capsys, tmp_path):
    code, out, err = cli(capsys, "uncertainty", *SMALL, "--region", "us-east5", "--samples", "512", "--seed", "3",
                         "--out", str(tmp_path / "u"), "--json")
    assert code == 0, err
    d = json.loads(out)
    b = d["bands"]["total_tco2e"]
    assert b["p5"] < d["point"]["total_tco2e"] < b["p95"]
    swings = [r["swing_tco2e"] for r in d["sensitivity"]]
    assert swings == sorted(swings, reverse=True) and {"grid_intensity", "step_time"} <= {r["input"] for r in d["sensitivity"]}
    # The step-time error is drawn from the H100's own dense rows of the residual table (Llama 2 7B is dense),
    # and the report says so
    n_h100 = sum(1 for r in csv.DictReader(data_path("step_time_residuals.csv").open(encoding="utf-8"))
                 if (r["device"], r["model_kind"]) == ("H100-SXM", "dense"))
    assert d["inputs"]["step_time"]["pool"] == {"by": {"device": "H100-SXM", "model_kind": "dense"}, "rows": n_h100,
                                                "line": d["inputs"]["step_time"]["pool"]["line"]}
    assert f"step_time drawn from: {n_h100} H100 (= H100-SXM) dense rows of step_time_residuals.csv" in (
        tmp_path / "u" / "report.md").read_text()
    assert (tmp_path / "u" / "tornado.png").stat().st_size > 1000
    assert (tmp_path / "u" / "uncertainty.csv").read_text().startswith("input,")


def test_uncertainty_table(capsys):
    code, out, _ = cli(capsys, "uncertainty", *SMALL, "--samples", "256")
    assert code == 0 and "p95" in out and "grid_intensity" in out
    assert "step_time drawn from: " in out and "H100-SXM" in out


def test_pareto_loss_and_inverse_json(capsys, tmp_path):
    code, out, err = cli(capsys, "pareto", "loss", "--preset", "cs-v2", "--d-models", "1536,2048", "--json",
                         "--out", str(tmp_path / "p"))
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert [r["d_model"] for r in rows] == [1536, 2048] and all(r["on_front"] for r in rows)
    assert (tmp_path / "p" / "pareto_loss.png").exists()
    code, out, err = cli(capsys, "inverse", "where", "--model", "llama2-7b", "--deadline-days", "30",
                         "--device-types", "H100", "--regions", "us-east5,europe-north2", "--json")
    assert code == 0, err
    assert json.loads(out)["best"]["region"] == "europe-north2"
    # --devices is estimate's device count; here it is the older spelling of --device-types, kept working
    code, old, err = cli(capsys, "inverse", "where", "--model", "llama2-7b", "--deadline-days", "30",
                         "--devices", "H100", "--regions", "us-east5,europe-north2", "--json")
    assert code == 0, err
    assert json.loads(old) == json.loads(out)


def test_grid_and_footprint(capsys, tmp_path):
    code, out, err = cli(capsys, "grid", "integrate", *SMALL, "--region", "us-east5", "--start", "2022-11",
                         "--start", "2023-03", "--json")
    assert code == 0, err
    a, b = json.loads(out)
    assert a["ci_g_per_kwh"] != b["ci_g_per_kwh"]
    code, out, err = cli(capsys, "grid", "suggest", *SMALL, "--regions", "us-east5,europe-north1", "--from", "2023-01",
                         "--to", "2023-03", "--json")
    assert code == 0, err
    assert json.loads(out)["best"]["profile"] == "europe-north1"
    code, out, err = cli(capsys, "footprint", *SMALL, "--region", "us-east5", "--renewable-share", "0.5", "--json")
    assert code == 0, err
    s = json.loads(out)["scope2"]
    assert s["market_tco2e"] == pytest.approx(s["location_tco2e"] / 2)


@pytest.mark.parametrize("argv,field", [
    (["uncertainty", *SMALL, "--samples", "abc"], "--samples"),
    (["inverse", "loss", "--budget", "-5"], "--budget"),
    (["footprint", *SMALL, "--wue", "nan"], "--wue"),
    (["grid", "integrate", *SMALL, "--regions", "x"], ""),
    (["grid", "integrate", *SMALL, "--region", "us-east5", "--start", "soon"], "start"),
    (["pareto", "deadline", *SMALL, "--deadlines", "30,abc"], "--deadlines"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, field):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error:") and err.count("\n") == 1 and field in err


def test_out_that_is_a_file_is_refused(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = cli(capsys, "uncertainty", *SMALL, "--out", str(f))
    assert code == 2 and "--out" in err


def test_estimate_reports_bands_accounting_and_water(capsys):
    code, out, err = cli(capsys, "estimate", *SMALL, "--region", "us-east5", "--renewable-share", "0.25", "--json")
    assert code == 0, err
    d = json.loads(out)
    for q in ("energy_kwh", "operational_tco2e", "total_tco2e"):
        b = d["uncertainty"]["bands"][q]
        assert b["p5"] <= d["uncertainty"]["point"][q] <= b["p95"]
    assert d["uncertainty"]["point"]["total_tco2e"] == pytest.approx(d["carbon"]["total_tco2e"])
    assert d["accounting"]["market_tco2e"] == pytest.approx(0.75 * d["carbon"]["operational_tco2e"])
    assert d["water"]["total_l"] > 0
    code, out, _ = cli(capsys, "estimate", *SMALL, "--no-uncertainty", "--json")
    assert code == 0 and "uncertainty" not in json.loads(out)
    code, out, _ = cli(capsys, "estimate", *SMALL)
    assert "total p5 / p50 / p95" in out and "location / market-based" in out


def test_api_bands_are_reproducible():
    import carbonscaling as cs
    a = cs.estimate(model="llama2-7b", device="H100", uncertainty_seed=5).uncertainty
    b = cs.estimate(model="llama2-7b", device="H100", uncertainty_seed=5).uncertainty
    assert a.bands == b.bands
    assert cs.estimate(model="llama2-7b", device="H100", uncertainty=False).uncertainty is None
