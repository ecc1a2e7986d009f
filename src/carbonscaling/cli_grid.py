"""``carbonscaling grid integrate|suggest``: a run's operational carbon on a time-varying grid.

Runs :func:`carbonscaling.chain.estimate` with the decision commands' options
(:mod:`carbonscaling.cli_decide`), then integrates the run over its calendar window
(:mod:`carbonscaling.grid`). Methods: docs/decisions.md.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .cli import (OPTION_OF, DeadlineDaysOpt, DModelOpt, JsonOpt, Num, PresetOpt, PueOpt, RegionOpt, app, emit_json,
                  integer, print_table)
from .cli_decide import DeviceOpt, ModelOpt, _kw
from .errors import InputError

grid_app = typer.Typer(help="Time-varying grid intensity: integrate a run over its window; suggest a start.",
                       no_args_is_help=True)
app.add_typer(grid_app, name="grid")
OPTION_OF.update({"profile": "--profile", "start": "--start", "basis": "--basis", "from": "--from", "to": "--to"})

# ---- grid ------------------------------------------------------------------------------------
ProfileOpt = Annotated[Optional[list[str]], typer.Option(
    "--profile", metavar="[NAME=]CSV", help="Intensity CSV (Electricity Maps, WattTime or datetime,ci_g_per_kwh); repeatable.")]
BasisOpt = Annotated[str, typer.Option("--basis", metavar="lca|direct", help="Electricity Maps column.")]


def _wall_days(est) -> float:
    b = est.carbon.breakdown
    return float(b.get("expected_duration_h") or b["duration_h"]) / 24.0


def _profiles(profile: list[str] | None, regions: str | None, basis: str) -> dict:
    from .grid import read_profile_csv, region_profile

    out = {}
    for item in profile or []:
        name, _, path = item.rpartition("=")
        prof = read_profile_csv(path, basis=basis, name=name or None)
        out[prof.name] = prof
    for reg in (regions.split(",") if regions else []):
        out[reg] = region_profile(reg)
    if not out:
        raise InputError("profile", "give --profile CSV or --regions R1,R2 (yearly table)")
    return out


@grid_app.command("integrate")
def grid_integrate(start: Annotated[list[str], typer.Option("--start", metavar="YYYY-MM[-DD]", help="Start; repeatable.")],
                   model: ModelOpt = None, preset: PresetOpt = None, d_model: DModelOpt = None,
                   device: DeviceOpt = "H100", deadline_days: DeadlineDaysOpt = None, pue: PueOpt = None,
                   region: RegionOpt = None,
                   profile: ProfileOpt = None, basis: BasisOpt = "lca", as_json: JsonOpt = False) -> None:
    """Operational carbon of a run integrated over its calendar window, for each start."""
    from .chain import estimate
    from .grid import on_grid

    profs = _profiles(profile, region, basis)
    est = estimate(**_kw(locals()))
    res = [on_grid(est.carbon, p, s) for p in profs.values() for s in start]
    if as_json:
        emit_json(res)
        return
    print_table(f"{est.model.name} on {est.result.layout.devices} x {est.system.device.name}: "
                f"{_wall_days(est):.1f} days on the calendar", ["profile", "start", "end", "mean CI g/kWh",
                                                                        "operational t", "total t"],
                [[r["profile"], r["start"], r["end"], r["ci_g_per_kwh"], r["operational_tco2e"], r["total_tco2e"]]
                 for r in res])


@grid_app.command("suggest")
def grid_suggest(first: Annotated[str, typer.Option("--from", metavar="YYYY-MM", help="Earliest start month.")],
                 last: Annotated[str, typer.Option("--to", metavar="YYYY-MM", help="Latest start month.")],
                 model: ModelOpt = None, preset: PresetOpt = None, d_model: DModelOpt = None,
                 device: DeviceOpt = "H100", deadline_days: DeadlineDaysOpt = None, pue: PueOpt = None,
                 regions: Annotated[Optional[str], typer.Option(
                     "--regions", metavar="R1,R2",
                     help="Regions whose yearly intensity table is a profile (see `regions`); or --profile.")] = None,
                 profile: ProfileOpt = None, basis: BasisOpt = "lca",
                 top: Annotated[Num, typer.Option("--top", metavar="N", help="Rows to print (default 12).")] = None,
                 as_json: JsonOpt = False) -> None:
    """Carbon-aware start month (and region/profile): every start ranked by total carbon."""
    from .chain import estimate
    from .grid import month_starts, suggest_start

    profs = _profiles(profile, regions, basis)
    est = estimate(**_kw(locals()))
    res = suggest_start(est.carbon, profs, month_starts(first, last))
    if as_json:
        emit_json(res)
        return
    print_table(f"start months ranked ({_wall_days(est):.1f}-day run); saving vs worst "
                f"{res['saving_vs_worst_tco2e']:,.4g} t", ["profile", "start", "end", "mean CI", "operational t", "total t"],
                [[r["profile"], r["start"], r["end"], r["ci_g_per_kwh"], r["operational_tco2e"], r["total_tco2e"]]
                 for r in res["rows"][: integer(top) or 12]])
