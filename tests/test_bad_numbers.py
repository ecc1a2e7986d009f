"""Numbers at the edges: nothing in range overflows, derived limits name the user's field,
empty names are not defaults, and numbers are ASCII (``1_000`` yes, ``'١٢'`` no)."""

from __future__ import annotations

import json
import math

import pytest

from carbonscaling.carbon import MIN_LIFETIME_YEARS, PAPER_ACCOUNTING, run_carbon
from carbonscaling.cli import number
from carbonscaling.errors import InputError
from carbonscaling.scaling import from_preset, max_preset_d_model

from helpers import cli

BASE = ["carbon", "--device", "H100", "-n", "1", "-u", "0.5", "--duration-hours", "1"]


@pytest.mark.parametrize("lifetime", ["1e-320", "0", "0.009", "5e-324"])
def test_lifetime_too_short_to_amortize_is_rejected(capsys, lifetime):
    code, out, err = cli(capsys, *BASE, "--lifetime", lifetime, "--json")
    assert code == 2 and out == "" and err.startswith("error: lifetime_years (--lifetime)") and "0.01" in err


def test_extremes_in_range_stay_finite(capsys):
    """The corners of every range at once: the largest run on the shortest lifetime."""
    r = run_carbon(None, "H100", n_devices=10**12, device_hours=1e14, utilization=1.0, pue=3, ci=2000,
                   lifetime_years=MIN_LIFETIME_YEARS, alpha=10, **PAPER_ACCOUNTING)
    vals = [v for v in (*r.to_dict().values(), *r.breakdown.values()) if isinstance(v, float)]
    assert vals and all(math.isfinite(v) for v in vals)
    assert math.isclose(r.total_tco2e, r.operational_tco2e + r.embodied_tco2e, rel_tol=1e-12)
    code, out, _ = cli(capsys, "carbon", "--device", "H100", "-n", "1e12", "-u", "1", "--device-hours", "1e14",
                       "--pue", "3", "--ci", "2000", "--lifetime", "0.01", "--alpha", "10", "--power-model", "paper",
                       "--goodput", "1", "--lifetime-policy", "replace", "--allocation", "node", "--json")
    assert code == 0 and json.loads(out)["total_tco2e"] > 0


def test_d_model_past_the_preset_names_d_model(capsys):
    hi = max_preset_d_model("cs-v1")
    assert 128 < hi < 10_000_000
    from_preset("cs-v1", hi)  # the largest valid width builds
    assert hi % 128 == 0 and 128 <= hi < 10_000_000
    for bad, implied in ((hi + 128, "tokens"), (hi - 1, "head_dim")):
        with pytest.raises(InputError) as err:
            from_preset("cs-v1", bad)
        assert err.value.field == "d_model" and str(hi) in err.value.message and implied in err.value.message
    code, _, err = cli(capsys, "estimate", "--preset", "cs-v1", "--d-model", "10000000")
    assert code == 2 and err.startswith("error: d_model (--d-model): 10000000 implies tokens") and str(hi) in err


@pytest.mark.parametrize("argv,field", [
    (["carbon", "--device", "", "-n", "8", "-u", "0.5", "--duration-hours", "1"], "device"),
    (["carbon", "--device", "  ", "-n", "8", "-u", "0.5", "--duration-hours", "1"], "device"),
    (["estimate", "--model", "llama3.1-405b", "--device", ""], "device"),
    (["estimate", "--model", "", "--device", "H100"], "model"),
    ([*BASE, "--region", ""], "region"),
])
def test_empty_names_are_errors_not_defaults(capsys, argv, field):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == "" and err.startswith(f"error: {field}") and err.count("\n") == 1, err


@pytest.mark.parametrize("text,value", [("12", 12.0), (" 12 ", 12.0), ("1_000", 1000.0), ("1e3", 1000.0),
                                        ("١٢", "١٢"), ("１２", "１２"), ("1__0", "1__0"), ("12x", "12x")])
def test_cli_numbers_are_ascii(text, value):
    assert number(text) == value


@pytest.mark.parametrize("opt,text", [("-n", "١٢"), ("-u", "٠.٥"), ("--pue", "１.２"), ("--ci", "５７"),
                                      ("-n", "1__000"), ("-n", "nan"), ("-n", "inf"), ("--pue", "-0")])
def test_non_ascii_digits_and_bad_numbers_are_one_line(capsys, opt, text):
    argv = [a for a in BASE]
    if opt in argv:
        i = argv.index(opt)
        argv[i + 1] = text
    else:
        argv += [opt, text]
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, err


def test_underscore_grouping_is_read_like_python(capsys):
    code, out, _ = cli(capsys, *[("1_000" if a == "1" else a) for a in BASE], "--json")
    assert code == 0 and json.loads(out)["breakdown"]["n_devices"] == 1000


def test_model_file_numbers_are_ascii(tmp_path, capsys):
    p = tmp_path / "m.yaml"
    p.write_text("d_model: '٤٠٩٦'\nn_layers: 32\nn_heads: 32\nd_ff: 16384\nvocab: 32000\ntokens: 1e12\n",
                 encoding="utf-8")
    code, _, err = cli(capsys, "estimate", "--model-file", str(p))
    assert code == 2 and err.startswith("error: model_file.d_model")
