"""Decision commands: ``uncertainty``, ``pareto deadline|loss``, ``inverse loss|deadline|where``
and ``footprint`` (location/market-based and water); ``grid integrate|suggest`` are in
:mod:`carbonscaling.cli_grid`, with the same shared options and helpers (``_kw``, ...).

Every command runs :func:`carbonscaling.chain.estimate` underneath with the same model,
device and carbon options as ``estimate``; ``--json`` prints the API's dict, ``--out DIR``
writes it with CSV tables and PNG figures. Methods: docs/decisions.md.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .cli import (OPTION_OF, CiOpt, DeadlineDaysOpt, DModelOpt, EmbodiedModeOpt, JsonOpt, LifetimeYearsOpt, Num,
                  PrecisionOpt, PresetOpt, PueOpt, RegionOpt, YearOpt, app, emit_json, integer, number, print_table)
from ._output import staged_dir
from .errors import InputError

pareto_app = typer.Typer(help="Pareto fronts: deadline x carbon x devices, loss x carbon.", no_args_is_help=True)
inverse_app = typer.Typer(help="Inverse questions: best loss or shortest deadline within a budget; where to train.",
                          no_args_is_help=True)
app.add_typer(pareto_app, name="pareto")
app.add_typer(inverse_app, name="inverse")
OPTION_OF.update({"budget_tco2e": "--budget", "samples": "--samples", "seed": "--seed", "contractual_ci": "--contractual-ci",
                  "renewable_share": "--renewable-share", "residual_ci": "--residual-ci", "wue_l_per_kwh": "--wue",
                  "ewif_l_per_kwh": "--ewif", "out": "--out", "deadlines": "--deadlines", "d_models": "--d-models",
                  "tokens": "--tokens", "uncertainty_file": "--inputs-file"})

# The run's options (--preset --d-model --deadline-days --ci --region --year --pue --lifetime
# --embodied-mode --precision) are the option types generated from the specs into cli.py;
# these are the decision commands' own.
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME|PATH", help="Catalog model or YAML file.")]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", metavar="NAME", help="Catalog device.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR", help="Write JSON, CSV and PNG here.")]
BudgetOpt = Annotated[str, typer.Option("--budget", metavar="TCO2E", help="Carbon budget in tCO2e (total).")]
SamplesOpt = Annotated[Num, typer.Option("--samples", metavar="N", help="Monte-Carlo samples (default 4096).")]
SeedOpt = Annotated[Num, typer.Option("--seed", metavar="S", help="Random seed (default 0).")]


def _kw(scope: dict[str, Any], skip: tuple[str, ...] = (), device: str | None = None) -> dict[str, Any]:
    """``estimate`` keywords from a command's ``locals()``: its generated run options (numbers
    converted as the spec reads them), ``--model`` (a name or a YAML path) and ``--device``."""
    from .specs import cli_types, cli_values

    names = [n for n in cli_types()["shared"][1] if n in scope and n not in skip and n != "year"]
    kw: dict[str, Any] = {**cli_values(scope, names=names), "device": device or scope.get("device", "H100"),
                          "uncertainty": False}
    model = scope.get("model")
    if model is not None and "model" not in skip:
        kw["model"] = Path(model) if model.endswith((".yaml", ".yml")) else model
    return {k: v for k, v in kw.items() if v is not None}


def _out(out: Path | None) -> Path | None:
    """``--out`` checked before any work (written later through ``_output.staged_dir``: all or nothing)."""
    if out is None:
        return None
    from ._output import check_target
    return check_target(out, "out")


def _write(out: Path, name: str, obj: Any, rows: list[dict] | None = None) -> None:
    (out / f"{name}.json").write_text(json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with (out / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)


def _report(out: Path, title: str, lines: list[str]) -> None:
    """A short ``report.md`` beside the JSON/CSV/PNG: what was run, the answer, the figures."""
    (out / "report.md").write_text(f"# {title}\n\n" + "\n".join(lines) + "\n", encoding="utf-8")


def _md_table(cols: list[str], rows: list[list[Any]]) -> list[str]:
    fmt = lambda v: f"{v:,.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    return ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols),
            *("| " + " | ".join(fmt(v) for v in r) + " |" for r in rows), ""]


def _num_list(text: str | None, field: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(field, f"must be a comma-separated list of numbers, got {text!r}") from None


# ---- uncertainty ---------------------------------------------------------------------------
@app.command()
def uncertainty(model: ModelOpt = None, preset: PresetOpt = None, d_model: DModelOpt = None, device: DeviceOpt = "H100",
                deadline_days: DeadlineDaysOpt = None, ci: CiOpt = None, region: RegionOpt = None, pue: PueOpt = None,
                lifetime_years: LifetimeYearsOpt = None, embodied_mode: EmbodiedModeOpt = None, precision: PrecisionOpt = None,
                samples: SamplesOpt = None, seed: SeedOpt = None,
                inputs_file: Annotated[Optional[Path], typer.Option("--inputs-file", metavar="PATH",
                                       help="YAML of input distributions (shape of data/uncertainty.yaml).")] = None,
                out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """p5/p50/p95 of energy and carbon, and which input moves the total most (tornado with --out)."""
    o = _out(out)
    from .chain import estimate
    from .uncertainty import DEFAULT_SAMPLES, load_inputs, propagate, tornado_figure

    specs = load_inputs(inputs_file) if inputs_file is not None else None
    est = estimate(**_kw(locals()))
    unc = propagate(est.carbon, samples=integer(samples) if samples is not None else DEFAULT_SAMPLES,
                    seed=integer(seed) if seed is not None else 0, inputs=specs, model=est.model)
    d = {"model": est.model.name, "device": est.system.device.name, "devices": est.result.layout.devices,
         "duration_days": est.result.duration_s / 86400, **unc.to_dict()}
    if o is not None:
        with staged_dir(o) as tmp:
            _write(tmp, "uncertainty", d, unc.sensitivity)
            tornado_figure(unc, tmp / "tornado.png", f"{est.model.name} on {est.system.device.name}: total tCO2e")
            _report(tmp, f"Uncertainty: {est.model.name} on {est.result.layout.devices:,} x {est.system.device.name}", [
                f"{unc.samples} Monte-Carlo samples, seed {unc.seed}; inputs and sources: data/uncertainty.yaml "
                "(docs/decisions.md).", "", *(f"{line}." for line in unc.pool_lines()), "",
                *_md_table(["quantity", "point", "p5", "p50", "p95"],
                           [[q, unc.point[q], *(unc.bands[q][k] for k in ("p5", "p50", "p95"))] for q in unc.bands]),
                "Sensitivity (one input at its 5th / 95th percentile, the others at the point):", "",
                *_md_table(["input", "total at p5 (t)", "total at p95 (t)", "swing"],
                           [[r["input"], r["total_at_low_tco2e"], r["total_at_high_tco2e"], f"{r['swing_fraction']:.1%}"]
                            for r in unc.sensitivity]),
                "![tornado](tornado.png)"])
    if as_json:
        emit_json(d)
        return
    _print_bands(d["model"], d["device"], unc)


def _print_bands(model: str, device: str, unc) -> None:
    rows = [[q, unc.point[q], unc.bands[q]["p5"], unc.bands[q]["p50"], unc.bands[q]["p95"]] for q in unc.bands]
    print_table(f"{model} on {device}: {unc.samples} samples, seed {unc.seed}", ["quantity", "point", "p5", "p50", "p95"], rows)
    for line in unc.pool_lines():
        typer.echo(line)
    print_table("sensitivity (one input at its p5 / p95, the others at the point)",
                ["input", "p5 value", "p95 value", "total at p5 (t)", "total at p95 (t)", "swing"],
                [[s["input"], s["low_value"], s["high_value"], s["total_at_low_tco2e"], s["total_at_high_tco2e"],
                  f"{s['swing_fraction']:.1%}"] for s in unc.sensitivity])


# ---- pareto ----------------------------------------------------------------------------------
@pareto_app.command("deadline")
def pareto_deadline(model: ModelOpt = None, preset: PresetOpt = None, d_model: DModelOpt = None,
                    device: DeviceOpt = "H100", ci: CiOpt = None, region: RegionOpt = None, pue: PueOpt = None,
                    lifetime_years: LifetimeYearsOpt = None, embodied_mode: EmbodiedModeOpt = None,
                    precision: PrecisionOpt = None,
                    deadlines: Annotated[Optional[str], typer.Option("--deadlines", metavar="D1,D2,...",
                                         help="Deadlines in days (default: 10 from 30 to 365).")] = None,
                    points: Annotated[Num, typer.Option("--points", metavar="N", help="Points per sweep (default 10).")] = None,
                    out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """Front over (duration, total carbon, devices) for one model: what a longer deadline saves."""
    o = _out(out)
    from .pareto import deadline_figure, deadline_front

    kw = _kw(locals())
    front = deadline_front(deadlines=_num_list(deadlines, "deadlines"), points=integer(points) or 10, **kw)
    if o is not None:
        with staged_dir(o) as tmp:
            _write(tmp, "pareto_deadline", front, front["rows"])
            deadline_figure(front, tmp / "pareto_deadline.png", f"{model or preset} on {device}")
            on = sorted((r for r in front["rows"] if r["on_front"]), key=lambda r: r["duration_days"])
            _report(tmp, f"Pareto front: {model or preset} on {device}", [
                "Points on the front over (duration, total carbon, devices); all points in pareto_deadline.csv.", "",
                *_md_table(["sweep", "deadline (d)", "devices", "duration (d)", "total tCO2e"],
                           [[r["sweep"], r["deadline_days"] or "", r["devices"], r["duration_days"], r["total_tco2e"]]
                            for r in on]), "![front](pareto_deadline.png)"])
    if as_json:
        emit_json(front)
        return
    rows = sorted(front["rows"], key=lambda r: r["duration_days"])
    print_table(f"{model or preset} on {device}: duration x carbon x devices (* = on the front)",
                ["sweep", "deadline (d)", "devices", "duration (d)", "total tCO2e", "MFU", "front"],
                [[r["sweep"], r["deadline_days"], r["devices"], r["duration_days"], r["total_tco2e"], f"{r['mfu']:.3f}",
                  "*" if r["on_front"] else ""] for r in rows])
    for name, r in front["extremes"].items():
        typer.echo(f"{name.replace('_', ' ')}: {r['devices']:,} devices, {r['duration_days']:.1f} days, "
                   f"{r['total_tco2e']:,.4g} tCO2e ({r['layout']})")
    for s in front["skipped"]:
        typer.echo(f"skipped {s}")


@pareto_app.command("loss")
def pareto_loss(preset: PresetOpt = "cs-v2", device: DeviceOpt = "H100",
                deadline_days: DeadlineDaysOpt = None, ci: CiOpt = None, region: RegionOpt = None, pue: PueOpt = None,
                lifetime_years: LifetimeYearsOpt = None, embodied_mode: EmbodiedModeOpt = None, precision: PrecisionOpt = None,
                d_models: Annotated[Optional[str], typer.Option(
                    "--d-models", metavar="D1,D2,...", help="Model widths (default: --points widths spaced "
                    "geometrically over the preset's sweep range, data/scaling_laws.yaml).")] = None,
                points: Annotated[Num, typer.Option("--points", metavar="N", help="Number of widths when --d-models is not given (default 9).")] = None,
                budget: Annotated[Num, typer.Option("--budget", metavar="TCO2E", help="Draw a budget line.")] = None,
                out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """Front over (scaling-law loss, total carbon) across the widths of a preset."""
    o = _out(out)
    from .pareto import loss_figure, loss_front

    kw = _kw(locals(), skip=("preset",))
    ds = _num_list(d_models, "d_models")
    front = loss_front(preset, d_models=[int(x) for x in ds] if ds else None, points=integer(points) or 9, **kw)
    if o is not None:
        with staged_dir(o) as tmp:
            _write(tmp, "pareto_loss", front, front["rows"])
            loss_figure(front, tmp / "pareto_loss.png", f"{preset} on {device}", budget_tco2e=number(budget))
    if as_json:
        emit_json(front)
        return
    print_table(f"{preset} on {device}: loss x carbon (* = on the front)",
                ["d_model", "params", "tokens", "loss", "devices", "days", "total tCO2e", "front"],
                [[r["d_model"], f"{r['params']:.3g}", f"{r['tokens']:.3g}", f"{r['loss']:.4f}", r["devices"],
                  r["duration_days"], r["total_tco2e"], "*" if r["on_front"] else ""] for r in front["rows"]])
    for s in front["skipped"]:
        typer.echo(f"skipped d_model={s['d_model']}: {s['reason']}")


# ---- inverse ---------------------------------------------------------------------------------
@inverse_app.command("loss")
def inverse_loss(budget: BudgetOpt, preset: PresetOpt = "cs-v2",
                 device: DeviceOpt = "H100", deadline_days: DeadlineDaysOpt = None, ci: CiOpt = None,
                 region: RegionOpt = None, pue: PueOpt = None, lifetime_years: LifetimeYearsOpt = None,
                 embodied_mode: EmbodiedModeOpt = None, precision: PrecisionOpt = None,
                 tokens: Annotated[str, typer.Option("--tokens", metavar="preset|free",
                                   help="Keep the preset's D = 20 N, or search the token count too.")] = "preset",
                 out: OutOpt = None, as_json: JsonOpt = False) -> None:
    """Lowest scaling-law loss reachable within a carbon budget."""
    o = _out(out)
    from .inverse import best_loss_within
    from .pareto import loss_figure, loss_front

    kw = _kw(locals(), skip=("preset",))
    kw.pop("device")
    res = best_loss_within(number(budget), preset, device, tokens=tokens, **kw)
    if o is not None:
        with staged_dir(o) as tmp:
            front = loss_front(preset, device, **kw)
            res["front"] = front
            _write(tmp, "inverse_loss", res, front["rows"])
            loss_figure(front, tmp / "inverse_loss.png", f"{preset} on {device}: lowest loss within {number(budget):,.0f} t",
                        budget_tco2e=res["budget_tco2e"], answer=res.get("answer_free") or res["answer"])
            picks = [("answer", res["answer"]), ("next width (over budget)", res["next"]),
                     ("answer, free token count", res.get("answer_free"))]
            _report(tmp, f"Lowest loss within {res['budget_tco2e']:,.4g} tCO2e: {preset} on {device}", [
                *_md_table(["", "d_model", "params", "tokens", "loss", "devices", "days", "total tCO2e"],
                           [[k, r["d_model"], r["params"], r["tokens"], r["loss"], r["devices"], r["duration_days"],
                             r["total_tco2e"]] for k, r in picks if r]), "![front](inverse_loss.png)"])
    if as_json:
        emit_json(res)
        return
    rows = [["answer (largest width within budget)", res["answer"]]]
    if res["next"]:
        rows.append(["next width (over budget)", res["next"]])
    if res.get("answer_free"):
        rows.append(["answer with free token count", res["answer_free"]])
    print_table(f"{preset} on {device}: lowest loss within {res['budget_tco2e']:,.4g} tCO2e",
                ["", "d_model", "params", "tokens", "loss", "devices", "days", "total tCO2e"],
                [[k, r["d_model"], f"{r['params']:.3g}", f"{r['tokens']:.3g}", f"{r['loss']:.4f}", r["devices"],
                  r["duration_days"], r["total_tco2e"]] for k, r in rows])


@inverse_app.command("deadline")
def inverse_deadline(budget: BudgetOpt, model: ModelOpt = None, preset: PresetOpt = None, d_model: DModelOpt = None,
                     device: DeviceOpt = "H100", ci: CiOpt = None, region: RegionOpt = None, pue: PueOpt = None,
                     lifetime_years: LifetimeYearsOpt = None, embodied_mode: EmbodiedModeOpt = None,
                     precision: PrecisionOpt = None, as_json: JsonOpt = False) -> None:
    """Shortest deadline whose least-carbon run stays within a carbon budget."""
    from .inverse import shortest_deadline_within

    kw = _kw(locals())
    res = shortest_deadline_within(number(budget), **kw)
    if as_json:
        emit_json(res)
        return
    a, s = res["answer"], res["shorter"] or {}
    print_table(f"shortest deadline within {res['budget_tco2e']:,.4g} tCO2e ({res['evaluated']} searches)",
                ["", "deadline (d)", "devices", "duration (d)", "total tCO2e"],
                [["answer", a["deadline_days"], a["devices"], a["duration_days"], a["total_tco2e"]],
                 ["1 % shorter", s.get("deadline_days"), s.get("devices"), s.get("duration_days"),
                  s.get("total_tco2e", s.get("reason"))]])


@inverse_app.command("where")
def inverse_where(model: ModelOpt = None, preset: PresetOpt = None, d_model: DModelOpt = None,
                  deadline_days: DeadlineDaysOpt = None, pue: PueOpt = None, lifetime_years: LifetimeYearsOpt = None,
                  embodied_mode: EmbodiedModeOpt = None, precision: PrecisionOpt = None,
                  devices: Annotated[Optional[str], typer.Option("--device-types", "--devices", metavar="A,B", help="Device types to compare, comma-separated (default: all; --devices is the older spelling).")] = None,
                  regions: Annotated[Optional[str], typer.Option("--regions", metavar="R1,R2", help="Regions (default: all).")] = None,
                  year: YearOpt = None,
                  top: Annotated[Num, typer.Option("--top", metavar="N", help="Rows to print (default 10).")] = None,
                  as_json: JsonOpt = False) -> None:
    """Device type and region that minimise total carbon for a model and deadline."""
    from .inverse import cleanest_choice

    kw = _kw(locals(), skip=("deadline_days",), device="H100")
    res = cleanest_choice(deadline_days=number(deadline_days) or 90.0,
                          devices=devices.split(",") if devices else None,
                          regions=regions.split(",") if regions else None, year=integer(year), **kw)
    if as_json:
        emit_json(res)
        return
    n = integer(top) or 10
    print_table(f"device x region by total carbon ({res['year']} grid, {res['deadline_days']:g}-day deadline)",
                ["device", "region", "CI g/kWh", "devices", "days", "operational t", "embodied t", "total t"],
                [[r["device"], r["region"], r["ci_g_per_kwh"], r["devices"], r["duration_days"],
                  r["operational_tco2e"], r["embodied_tco2e"], r["total_tco2e"]] for r in res["rows"][:n]])
    for s in res["skipped"]:
        typer.echo(f"skipped {s['device']}: {s['reason']}")


# ---- footprint (accounting modes + water) -------------------------------------------------------
@app.command()
def footprint(model: ModelOpt = None, preset: PresetOpt = None, d_model: DModelOpt = None, device: DeviceOpt = "H100",
              deadline_days: DeadlineDaysOpt = None, ci: CiOpt = None, region: RegionOpt = None, pue: PueOpt = None,
              lifetime_years: LifetimeYearsOpt = None, embodied_mode: EmbodiedModeOpt = None,
              contractual_ci: Annotated[Num, typer.Option("--contractual-ci", metavar="G", help="Market-based: contract intensity g/kWh.")] = None,
              renewable_share: Annotated[Optional[str], typer.Option("--renewable-share", metavar="F|cfe",
                                         help="Market-based: share covered by certificates (0-1), or 'cfe' (Google CFE of --region).")] = None,
              residual_ci: Annotated[Num, typer.Option("--residual-ci", metavar="G", help="Residual-mix g/kWh for uncovered use.")] = None,
              wue: Annotated[Num, typer.Option("--wue", metavar="L/KWH", help="On-site water per IT kWh (default: data/water.yaml).")] = None,
              ewif: Annotated[Num, typer.Option("--ewif", metavar="L/KWH", help="Off-site water per facility kWh (default: data/water.yaml).")] = None,
              as_json: JsonOpt = False) -> None:
    """Location- and market-based carbon side by side (GHG Protocol Scope 2), and water."""
    from .chain import estimate
    from .footprint import scope2, water_footprint

    est = estimate(**_kw(locals()))
    share = renewable_share if renewable_share in (None, "cfe") else number(renewable_share)
    s2 = scope2(est.carbon, contractual_ci=number(contractual_ci), renewable_share=share,
                residual_ci=number(residual_ci), region=region)
    w = water_footprint(est.carbon, wue_l_per_kwh=number(wue), ewif_l_per_kwh=number(ewif))
    if as_json:
        emit_json({"scope2": s2, "water": w})
        return
    print_table(f"{est.model.name} on {est.result.layout.devices} x {est.system.device.name}",
                ["quantity", "value"],
                [["facility energy (kWh)", s2["energy_kwh"]],
                 ["location-based (tCO2e)", s2["location_tco2e"]], ["  grid intensity (g/kWh)", s2["location_ci_g_per_kwh"]],
                 ["market-based (tCO2e)", s2["market_tco2e"]], ["  effective intensity (g/kWh)", s2["market_ci_g_per_kwh"]],
                 ["  method", s2["market_method"]], ["embodied (tCO2e, Scope 3)", s2["embodied_tco2e_scope3"]],
                 ["water on-site (m3)", w["onsite_l"] / 1000], ["water off-site (m3)", w["offsite_l"] / 1000],
                 ["water total (m3)", w["total_m3"]]])
    for n in s2["notes"]:
        typer.echo(f"note: {n}")
    typer.echo(f"water: WUE {w['wue_l_per_kwh']:g} L/kWh, EWIF {w['ewif_l_per_kwh']:g} L/kWh ({w['source']})")


# ``grid`` (cli_grid.py) uses this module's options and helpers, so it is registered from here, last;
# its names lived here before it had its own module and are looked up there when asked for.
from . import cli_grid  # noqa: E402,F401

_MOVED = ("grid_app", "grid_integrate", "grid_suggest", "ProfileOpt", "BasisOpt", "_wall_days", "_profiles")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module("carbonscaling.cli_grid"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
