"""Each CLI module can be the first one imported, and names that moved out of cli.py still resolve there."""

from __future__ import annotations

import subprocess
import sys

import pytest

from carbonscaling.cli import COMMAND_MODULES

MOVED = {"carbon": "carbonscaling.cli_carbon", "CARBON_TERMS": "carbonscaling.cli_carbon",
         "models": "carbonscaling.cli_catalog", "devices": "carbonscaling.cli_catalog",
         "regions": "carbonscaling.cli_catalog", "glossary": "carbonscaling.cli_catalog"}


@pytest.mark.parametrize("module", ["carbonscaling.cli", *COMMAND_MODULES, "carbonscaling.cli_grid"])
def test_importable_first(module):
    code = (f"import {module}\nimport carbonscaling.cli as cli\n"
            f"from carbonscaling.cli import carbon, models\n"
            f"print(sorted(c.name or c.callback.__name__ for c in cli.app.registered_commands))\n"
            f"print([g.name for g in cli.app.registered_groups])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "'carbon'" in out.stdout and "'estimate'" in out.stdout and "'footprint'" in out.stdout
    assert "['pareto', 'inverse', 'grid']" in out.stdout


def test_grid_names_resolve_in_cli_decide():
    import carbonscaling.cli_decide as decide
    import carbonscaling.cli_grid as grid

    for name in decide._MOVED:
        assert getattr(decide, name) is getattr(grid, name)
    with pytest.raises(AttributeError):
        decide.not_a_name  # noqa: B018


@pytest.mark.parametrize("name", sorted(MOVED))
def test_moved_names_resolve_in_cli(name):
    import importlib

    import carbonscaling.cli as cli

    assert getattr(cli, name) is getattr(importlib.import_module(MOVED[name]), name)
    with pytest.raises(AttributeError):
        cli.not_a_name  # noqa: B018
