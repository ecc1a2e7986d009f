"""CLI (carbonscaling.cli): commands, JSON output, one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from carbonscaling.cli import app

from helpers import cli

RUN = ["carbon", "--device", "A100-80GB", "--devices", "384", "--device-hours", "1082990",
       "--utilization", "0.3", "--pue", "1.2", "--ci", "57"]


def with_opt(args: list[str], opt: str, value: str | None) -> list[str]:
    """``args`` with ``opt`` replaced by ``value`` (removed if ``None``)."""
    out, i = [], 0
    while i < len(args):
        if args[i] == opt:
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out + ([opt, value] if value is not None else [])


def _has_catalog_model(name: str) -> bool:
    try:
        from carbonscaling.scaling import model_names
        return name in model_names()
    except Exception:
        return False


# ---- success paths ------------------------------------------------------------------
def test_bloom_json(capsys):
    args = RUN + ["--json"]
    if _has_catalog_model("bloom-176b"):
        args = ["carbon", "--model", "bloom-176b", *RUN[1:], "--json"]
    code, out, err = cli(capsys, *args)
    assert code == 0 and err == ""
    d = json.loads(out)
    for key in ("energy_kwh", "operational_tco2e", "embodied_tco2e", "total_tco2e", "breakdown", "device"):
        assert key in d
    b = d["breakdown"]
    assert d["total_tco2e"] == pytest.approx(d["operational_tco2e"] + d["embodied_tco2e"])
    assert b["n_devices"] == 384 and b["n_nodes"] == 48 and b["duration_h"] == pytest.approx(1082990 / 384)
    assert b["power_model"] == "measured" and "scope" in d and b["expected_device_hours"] > 1082990
    code, out, _ = cli(capsys, *args, "--power-model", "paper", "--allocation", "node", "--goodput", "1")
    b = json.loads(out)["breakdown"]
    assert b["p_dynamic_w"] == pytest.approx(0.158 * 400)
    # Device energy (papers' model): 1,082,990 GPU-h x (336.8 W static + 63.2 W x 0.3 dynamic).
    assert json.loads(out)["device_energy_kwh"] == pytest.approx(1082990 * (336.8 + 63.2 * 0.3) / 1000)
    assert d["embodied_mode"] == "paper" and d["device"]["name"] == "A100-80GB"
    if _has_catalog_model("bloom-176b"):
        assert d["model"]["name"] == "bloom-176b" and b["model"] == "bloom-176b"


def test_carbon_table(capsys):
    code, out, err = cli(capsys, *RUN)
    assert code == 0 and "operational" in out and "embodied" in out and "total" in out


def test_region_and_options(capsys):
    args = with_opt(RUN, "--ci", None) + ["--region", "asia-south1", "--json", "--embodied-mode", "vendor",
                                          "--power-split", "low_static", "--no-infrastructure", "--lifetime", "5",
                                          "--power-model", "paper"]
    code, out, _ = cli(capsys, *args)
    assert code == 0
    d = json.loads(out)
    assert d["breakdown"]["ci_g_per_kwh"] == 678.76 and "asia-south1" in d["ci_source"]
    assert d["embodied_mode"] == "vendor" and d["breakdown"]["embodied_infrastructure_tco2e"] == 0
    assert d["breakdown"]["p_static_w"] == pytest.approx(0.158 * 400)


def test_duration_days_equals_hours(capsys):
    base = with_opt(RUN, "--device-hours", None)
    _, a, _ = cli(capsys, *base, "--duration-days", "2", "--json")
    _, b, _ = cli(capsys, *base, "--duration-hours", "48", "--json")
    assert json.loads(a)["total_tco2e"] == pytest.approx(json.loads(b)["total_tco2e"])


def test_model_file(capsys, tmp_path):
    f = tmp_path / "tiny.yaml"
    f.write_text("d_model: 1024\nn_layers: 8\ntokens: 1e10\n")
    code, out, _ = cli(capsys, *RUN, "--model-file", str(f), "--json")
    assert code == 0 and json.loads(out)["model"]["name"] == "tiny"


@pytest.mark.parametrize("cmd", ["devices", "regions", "models"])
def test_catalog_commands_json(cmd):
    if cmd == "models" and not _has_catalog_model("bloom-176b"):
        pytest.skip("model catalog not available yet")
    r = CliRunner().invoke(app, [cmd, "--json"])
    assert r.exit_code == 0, r.output
    recs = json.loads(r.stdout)
    assert isinstance(recs, list) and recs
    r = CliRunner().invoke(app, [cmd])
    assert r.exit_code == 0 and recs[0].get("name", recs[0].get("region")) in r.stdout


def test_regions_year(capsys):
    code, out, _ = cli(capsys, "regions", "--year", "2021", "--json")
    rows = {r["region"]: r["ci_g_per_kwh"] for r in json.loads(out)}
    assert code == 0 and rows["europe-north1"] == 127


def test_help_and_no_args(capsys):
    assert cli(capsys, "--help")[0] == 0
    code, out, _ = cli(capsys)
    assert code == 0 and "carbon" in out


# ---- bad input: one line on stderr, exit 2 ------------------------------------------
BAD_YAML = "d_model: [1024\nn_layers: 8\n"
MISSING_FIELD = "n_layers: 8\ntokens: 1e10\n"

BAD = [
    # (id, argv, text that must appear in the error line)
    ("devices-zero", with_opt(RUN, "--devices", "0"), "devices"),
    ("devices-negative", with_opt(RUN, "--devices", "-4"), "devices"),
    ("devices-nan", with_opt(RUN, "--devices", "nan"), "devices"),
    ("devices-1e30", with_opt(RUN, "--devices", "1e30"), "devices"),
    ("utilization-nan", with_opt(RUN, "--utilization", "nan"), "utilization"),
    ("utilization-zero", with_opt(RUN, "--utilization", "0"), "utilization"),
    ("utilization-1.5", with_opt(RUN, "--utilization", "1.5"), "utilization"),
    ("pue-inf", with_opt(RUN, "--pue", "inf"), "pue"),
    ("pue-0.5", with_opt(RUN, "--pue", "0.5"), "pue"),
    ("ci-1e30", with_opt(RUN, "--ci", "1e30"), "ci"),
    ("ci-negative", with_opt(RUN, "--ci", "-5"), "ci"),
    ("ci-nan", with_opt(RUN, "--ci", "nan"), "ci"),
    ("device-hours-1e30", with_opt(RUN, "--device-hours", "1e30"), "device_hours"),
    ("device-hours-inf", with_opt(RUN, "--device-hours", "inf"), "device_hours"),
    ("lifetime-zero", RUN + ["--lifetime", "0"], "lifetime"),
    ("alpha-negative", RUN + ["--alpha", "-1"], "alpha"),
    ("unknown-device", with_opt(RUN, "--device", "A100-80G"), "did you mean 'A100-80GB'"),
    ("unknown-region", with_opt(RUN, "--ci", "us-eats5"), "did you mean 'us-east5'"),
    ("unknown-region-opt", with_opt(RUN, "--ci", None) + ["--region", "asia-sout1"], "did you mean 'asia-south1'"),
    ("region-year", with_opt(RUN, "--ci", None) + ["--region", "us-east5", "--year", "2019"], "year"),
    ("ci-and-region", RUN + ["--region", "us-east5"], "--region"),
    ("both-durations", RUN + ["--duration-hours", "10"], "duration"),
    ("neither-duration", with_opt(RUN, "--device-hours", None), "duration"),
    ("days-and-hours", with_opt(RUN, "--device-hours", None) + ["--duration-days", "1", "--duration-hours", "2"],
     "duration"),
    ("duration-days-negative", with_opt(RUN, "--device-hours", None) + ["--duration-days", "-1"], "duration_days"),
    ("embodied-mode", RUN + ["--embodied-mode", "lca"], "embodied_mode"),
    ("power-split", RUN + ["--power-split", "high"], "power_split"),
    ("no-device", with_opt(RUN, "--device", None), "device"),
    ("missing-devices", with_opt(RUN, "--devices", None), "--devices"),
    ("missing-utilization", with_opt(RUN, "--utilization", None), "--utilization"),
    ("unknown-option", RUN + ["--frobnicate", "1"], "--frobnicate"),
    ("unknown-command", ["carbonise"], "carbonise"),
    ("device-file-missing", with_opt(RUN, "--device", None) + ["--device-file", "/no/such/dev.yaml"], "device_file"),
    ("model-file-missing", RUN + ["--model-file", "/no/such/model.yaml"], "model_file"),
    ("model-and-model-file", RUN + ["--model", "bloom-176b", "--model-file", "x.yaml"], "model"),
    ("regions-bad-year", ["regions", "--year", "1990"], "year"),
]


def _check_error(code: int, out: str, err: str, needle: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("argv, needle", [(a, n) for _, a, n in BAD], ids=[i for i, _, _ in BAD])
def test_bad_input(capsys, argv, needle):
    _check_error(*cli(capsys, *argv), needle)


def test_unknown_model_suggests(capsys):
    if not _has_catalog_model("bloom-176b"):
        pytest.skip("model catalog not available yet")
    _check_error(*cli(capsys, *RUN, "--model", "bloom-17b"), "did you mean 'bloom-176b'")


@pytest.mark.parametrize("text, needle", [(BAD_YAML, "model_file"), (MISSING_FIELD, "d_model"),
                                          ("- just\n- a list\n", "model_file"),
                                          ("d_model: -5\nn_layers: 2\n", "d_model"),
                                          ("d_model: 512\nn_layers: 2\nbogus: 1\n", "bogus")])
def test_bad_model_file(capsys, tmp_path, text, needle):
    f = tmp_path / "m.yaml"
    f.write_text(text)
    code, out, err = cli(capsys, *RUN, "--model-file", str(f))
    _check_error(code, out, err, needle)
    assert "model_file" in err


def test_bad_device_file(capsys, tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("name: x\npeak_tflops: [\n")
    _check_error(*cli(capsys, *with_opt(RUN, "--device", None), "--device-file", str(f)), "device_file")


# ---- the installed entry point, in a fresh interpreter -------------------------------
ENTRY = [sys.executable, "-c", "import sys; from carbonscaling.cli import main; sys.exit(main())"]


@pytest.mark.parametrize("argv, needle", [
    (with_opt(RUN, "--devices", "-1"), "devices"),
    (with_opt(RUN, "--utilization", "nan"), "utilization"),
    (with_opt(RUN, "--device", "H10"), "did you mean"),
    (RUN + ["--frobnicate"], "--frobnicate"),
])
def test_subprocess_errors(argv, needle):
    p = subprocess.run(ENTRY + argv, capture_output=True, text=True, timeout=120)
    _check_error(p.returncode, p.stdout, p.stderr, needle)


def test_subprocess_json_and_startup():
    p = subprocess.run(ENTRY + RUN + ["--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == ""
    assert json.loads(p.stdout)["total_tco2e"] > 0
    probe = ("import sys, carbonscaling.cli; "
             "print(sorted(m for m in ('pandas', 'matplotlib', 'numpy', 'pydantic', 'rich') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "[]", p.stdout
