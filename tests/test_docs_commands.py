"""The commands README.md and docs/*.md show exist as written, and a planner's typical slips
(wrong case, a misspelt key, a unit on a number) get one line naming the field.

Every ``carbonscaling ...`` line of a code block (and every inline ``carbonscaling
SUBCOMMAND --option ...`` span, also in the example files' comments) is parsed by the real CLI with ``--help`` appended: the
command must exist and every option it names must be one the command takes, so the docs
cannot drift from the CLI. Parsing only, nothing runs (well under a second in all).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from carbonscaling.cli import app, main

from helpers import cli

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "src" / "carbonscaling" / "examples").glob("*.yaml"))]  # their comments say how to print them


def _doc_lines(text: str) -> list[str]:
    """Command lines of fenced blocks (continuations joined) and inline code spans."""
    out, in_block, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            out.append(pending)
            pending = ""
        else:
            out += [m for m in re.findall(r"`(carbonscaling [a-z][^`]*)`", line) if " --" in m]
    return out


def _argvs(line: str) -> list[list[str]]:
    """The argument lists one documented line stands for ([] if it shows no command).

    Placeholders are filled so that only the command and option names are checked:
    ``[--out DIR]`` -> ``--out DIR``, ``a|b`` -> ``a``, ``--devices ...`` -> ``--devices X``,
    ``models | devices | regions`` -> three commands; ``...`` elsewhere and ``> file`` end
    the line; a trailing ``# comment`` is dropped.
    """
    m = re.search(r"(?:^|&& |\$ )carbonscaling (.*)", line)
    if not m:
        return []
    rest = re.split(r"\s#\s|\s{2,}\(", m.group(1))[0].replace("[", " ").replace("]", " ")
    pieces = [p.strip() for p in re.split(r"\s\|\s", rest)]
    if len(pieces) > 1 and all(re.fullmatch(r"[a-z]+", p) for p in pieces):  # models | devices | regions
        return [[p] for p in pieces]
    tokens: list[str] = []
    for t in shlex.split(" ".join(pieces[:1] + [p for p in pieces[1:] if p.startswith("--")])):
        if t == ">" or t.startswith("(") or (t == "..." and not (tokens and tokens[-1].startswith("--"))):
            break
        tokens.append("X" if "..." in t else t.split("|")[0])
    return [tokens]


def _with_help(argv: list[str]) -> list[str]:
    """``argv`` with ``--help`` right after the (sub)command path, where no option can take it
    as its value: the command is parsed, never run."""
    import typer

    cmd, i = typer.main.get_command(app), 0
    while i < len(argv) and argv[i] in getattr(cmd, "commands", {}):  # a group (click or typer's own)
        cmd, i = cmd.commands[argv[i]], i + 1
    return [*argv[:i], "--help", *argv[i:]]


DOC_COMMANDS = sorted({(p.relative_to(ROOT).as_posix(), " ".join(argv))
                       for p in DOC_FILES for line in _doc_lines(p.read_text(encoding="utf-8"))
                       for argv in _argvs(line) if argv})


def test_the_docs_show_commands():
    files = {f for f, _ in DOC_COMMANDS}
    assert "README.md" in files and len(DOC_COMMANDS) >= 30, DOC_COMMANDS
    shown = {cmd.split()[0] for _, cmd in DOC_COMMANDS}
    assert {"estimate", "carbon", "paper", "validate", "sweep", "serve", "pareto", "inverse"} <= shown


@pytest.mark.parametrize("where,command", DOC_COMMANDS)
def test_documented_command_parses(capsys, where, command):
    code = main(_with_help(shlex.split(command)))
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("Usage:"), f"{where}: `carbonscaling {command}`: {err.strip()}"


def test_extractor_fills_placeholders():
    assert _argvs("carbonscaling models | devices | regions      # the catalogs") == [["models"], ["devices"],
                                                                                   ["regions"]]
    assert _argvs("carbonscaling paper [--out DIR] [--jobs N]") == [["paper", "--out", "DIR", "--jobs", "N"]]
    assert _argvs("    [--power-model measured|nameplate|paper]") == []
    assert _argvs("x && carbonscaling serve     # then open") == [["serve"]]
    assert _argvs("carbonscaling inverse where [--devices ...] [--deadlines 30,60,...]") == \
        [["inverse", "where", "--devices", "X", "--deadlines", "X"]]
    assert _argvs("carbonscaling devices GB200 --json > gb200.json") == [["devices", "GB200", "--json"]]
    assert _with_help(["pareto", "deadline", "--devices"]) == ["pareto", "deadline", "--help", "--devices"]


def test_a_wrong_option_in_the_docs_would_fail(capsys):
    code = main(_with_help(["estimate", "--deadline", "30"]))
    assert code == 2 and "No such option" in capsys.readouterr().err


# ---- what a planner types -------------------------------------------------------------------
def _err(capsys, *argv: str) -> str:
    code, out, err = cli(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, (code, out, err)
    return err


CARBON = ["carbon", "--device", "H100", "--devices", "8", "--utilization", "0.5", "--duration-days", "3"]


def test_ci_with_a_unit_names_ci_not_region(capsys):
    err = _err(capsys, *CARBON, "--ci", "57g")
    assert err.startswith("error: ci (--ci): must be a number of g/kWh") and "'57g'" in err


def test_lower_case_country_code_says_how_to_spell_it(capsys):
    err = _err(capsys, *CARBON, "--ci", "fra")
    assert "'FRA'" in err and "countries" in err


def test_choices_ignore_case_like_device_names(capsys):
    from carbonscaling.specs import RunSpec

    spec = RunSpec.from_kwargs(model="llama3.1-8b", recompute="Full", objective="CARBON", ep_convention="Megatron",
                               embodied_mode="Paper")
    assert (spec.pins.recompute, spec.search.objective, spec.recipe.ep_convention,
            spec.carbon.embodied_mode) == ("full", "carbon", "megatron", "paper")
    err = _err(capsys, "estimate", "--model", "llama3.1-8b", "--recompute", "fulll")
    assert err.startswith("error: recompute (--recompute):") and "'full'" in err


def test_misspelt_model_file_key_is_named_with_a_suggestion(capsys, tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("name: my\nd_model: 4096\nn_layer: 32\nn_heads: 32\n")
    err = _err(capsys, "estimate", "--model-file", str(f))
    assert err.startswith("error: model_file.n_layer (--model-file): unknown field; did you mean 'n_layers'?")
    f.write_text("name: my\nd_model: 4096\nn_layers: 32\nn_heads: 32\nseqlen: 4096\n")
    assert "did you mean 'seq_len'?" in _err(capsys, "estimate", "--model-file", str(f))


def test_misspelt_device_file_key_is_named_with_a_suggestion(capsys, tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("name: mine\npeak_tflops: 900\nhbm_gb: 80\nhbm_gb_s: 3350\ntdp: 700\n")
    err = _err(capsys, "estimate", "--model", "llama3.1-8b", "--device-file", str(f))
    assert "tdp" in err and "did you mean 'tdp_w'?" in err


def test_glossary_suggests_a_close_term(capsys):
    assert "did you mean 'MFU'?" in _err(capsys, "glossary", "mfux")
    assert "did you mean 'busy share'?" in _err(capsys, "glossary", "busy")


@pytest.mark.parametrize("term", ["busy share", "device slot", "market-based", "location-based", "WUE", "EWIF"])
def test_glossary_defines_the_estimate_tables_words(capsys, term):
    assert main(["glossary", term]) == 0 and capsys.readouterr().out.startswith(f"{term}: ")


@pytest.mark.parametrize("argv,field", [
    (["estimate", "--model", "llama3.1-70b", "--deadline-days", "30d"], "deadline_days (--deadline-days)"),
    (["estimate", "--model", "llama3.1-70b", "--pue", "0.9"], "pue (--pue)"),
    (["estimate", "--model", "llama3.1-70b", "--region", "us-east-5"], "region (--region)"),
    (["estimate", "--model", "lama3.1-70b"], "model (--model)"),
    (["estimate", "--model", "llama3.1-70b", "--device", "H100-SMX"], "device (--device)"),
    (CARBON[:-2] + ["--duration-days", "3d"], "duration_days (--duration-days)"),
])
def test_typical_slips_name_the_field(capsys, argv, field):
    err = _err(capsys, *argv)
    assert err.startswith(f"error: {field}:"), err
    if "unknown" in err:
        assert "did you mean" in err


def test_help_states_defaults_from_the_data_files():
    from carbonscaling.carbon_settings import defaults
    from carbonscaling.specs import HardwareSpec, help_text

    d = defaults()
    assert f"default: {d['pue']:g}, data/power.yaml" in help_text("pue")
    assert f"default: {d['ci_g_per_kwh']:g} g/kWh" in help_text("ci")
    assert help_text("infrastructure").endswith("Default: on.")
    from carbonscaling.cli_estimate import EstimateDeviceOpt

    assert f"Default: {HardwareSpec.model_fields['device'].default}." in EstimateDeviceOpt.__metadata__[0].help


def test_table_numbers_are_rounded_for_reading():
    from carbonscaling.cli import num

    assert [num(x) for x in (8.20596, 9340.37, 0.48912, 1082990.0, 999.96, 1.3e13)] == \
        ["8.206", "9,340", "0.4891", "1,082,990", "1,000", "1.300e+13"]


def test_grid_intensity_source_says_where_the_number_came_from(capsys):
    main([*CARBON])
    assert "grid intensity source: default of data/power.yaml (" in capsys.readouterr().out
    main([*CARBON, "--ci", "57"])
    assert "grid intensity source: given as a number" in capsys.readouterr().out


def test_empty_model_or_device_file_says_so(capsys, tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert "got an empty file" in _err(capsys, "estimate", "--model-file", str(f))
    assert "got an empty file" in _err(capsys, "estimate", "--model", "llama3.1-8b", "--device-file", str(f))


def test_readme_api_carbon_example_matches_its_cli_example(capsys):
    """README shows the BLOOM run through the CLI and the API: the two give the same tonnes."""
    import json

    import carbonscaling as cs

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "utilization=0.87, pue=1.2, ci=57, goodput=1" in text
    api = cs.run_carbon("bloom-176b", "A100-80GB", n_devices=384, device_hours=1_082_990, utilization=0.87,
                        pue=1.2, ci=57, goodput=1)
    main(["carbon", "--model", "bloom-176b", "--device", "A100-80GB", "--devices", "384", "--device-hours",
          "1082990", "--utilization", "0.87", "--pue", "1.2", "--ci", "57", "--goodput", "1", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["total_tco2e"] == api.total_tco2e
    assert round(d["operational_tco2e"], 1) == 45.6 and round(d["embodied_tco2e"], 1) == 5.9  # README's figures
