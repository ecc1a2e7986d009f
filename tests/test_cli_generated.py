"""Each run option is spelled once, in the specs: the option types the decision commands use
are generated (issue 13 guide weak spot: cli_decide.py had its own copies)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbonscaling import specs, specs_gen
from carbonscaling.cli import app


@pytest.mark.parametrize("group", sorted(specs.cli_types()))
def test_option_types_are_generated_from_the_specs(group):
    assert specs_gen.cli_block_in_file(group, types=True) == specs_gen.cli_types_block(group), \
        "run: python -m carbonscaling.specs --write-cli"


@pytest.mark.parametrize("module", ["cli_decide.py", "cli_grid.py"])
def test_decision_commands_spell_no_run_option_themselves(module):
    src = (Path(specs.__file__).with_name(module)).read_text(encoding="utf-8")
    code = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith("#"))
    for name in specs.cli_types()["shared"][1]:
        flag = specs.cli_option(name)
        assert not re.search(rf"[\"']{re.escape(flag)}[\"']", code), f"{flag} spelled by hand in {module}"


@pytest.mark.parametrize("command", [["uncertainty"], ["pareto", "deadline"], ["inverse", "loss"], ["footprint"]])
def test_decision_commands_show_the_specs_help(command):
    out = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "400", "TERM": "dumb"}).output
    for name in ("pue", "lifetime_years"):
        help_words = specs.help_text(name).split()[:4]
        assert specs.cli_option(name) in out and " ".join(help_words) in " ".join(out.split()), (command, name)
