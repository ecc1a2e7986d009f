"""``carbonscaling carbon``: operational + embodied carbon of a run of known size and length.

The carbon options are generated from :class:`carbonscaling.specs.CarbonSettings` (the block
between the markers; ``python -m carbonscaling.specs --write-cli`` rewrites it and a test
fails when it is stale), written out so that ``carbonscaling --help`` does not import pydantic.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .cli import (DeviceFileOpt, DeviceOpt, DevicesOpt, JsonOpt, ModelFileOpt, ModelOpt, Num, UtilizationOpt, app,
                  emit_json, num, number, print_table, resolve_model_opts, resolve_system_opts)
from .errors import InputError

CARBON_TERMS = ("device", "device_static", "device_dynamic", "host", "node_other", "power_conversion", "cooling",
                "network")


@app.command()
def carbon(
    devices: DevicesOpt,
    utilization: UtilizationOpt,
    model: ModelOpt = None,
    model_file: ModelFileOpt = None,
    device: DeviceOpt = None,
    device_file: DeviceFileOpt = None,
    duration_days: Annotated[Num, typer.Option("--duration-days", metavar="DAYS",
                                                         help="Steady-state wall-clock days (give one of --duration-days, "
                                                              "--duration-hours, --device-hours).")] = None,
    duration_hours: Annotated[Num, typer.Option("--duration-hours", metavar="H",
                                                          help="Steady-state wall-clock hours.")] = None,
    device_hours: Annotated[Num, typer.Option("--device-hours", metavar="H",
                                                        help="Steady-state device-hours (devices x wall-clock hours).")] = None,
    # BEGIN generated carbon options (python -m carbonscaling.specs --write-cli)
    ci: Annotated[Optional[str], typer.Option('--ci', metavar='CI|REGION|ISO3', help='Grid intensity: g/kWh in [0, 2000], a region (us-east5) or, with codecarbon, an ISO3 country (FRA); default: 323.05 g/kWh, data/power.yaml.')] = None,
    region: Annotated[Optional[str], typer.Option('--region', metavar='REGION', help='Google Cloud region (see `regions`); like --ci.')] = None,
    year: Annotated[Optional[str], typer.Option('--year', metavar='YYYY', help='Year of the region table (default: latest). A whole number in [1900, 2200].')] = None,
    pue: Annotated[Optional[str], typer.Option('--pue', metavar='X', help='Power usage effectiveness (default: 1.1, data/power.yaml). A finite number in [1, 3].')] = None,
    lifetime_years: Annotated[Optional[str], typer.Option('--lifetime', metavar='YEARS', help='Hardware lifetime in years (default: 6 years, data/power.yaml). A finite number in [0.01, 50].')] = None,
    alpha: Annotated[Optional[str], typer.Option('--alpha', metavar='X', help='Dynamic-power scale of --power-model paper (default: 1, data/power.yaml). A finite number in [0, 10].')] = None,
    power_split: Annotated[Optional[str], typer.Option('--power-split', metavar='default|low_static', help='Device power split of --power-model paper: default (dynamic share of TDP from data/power.yaml, static the rest) or low_static (the shares swapped, v1 Fig. 4).')] = None,
    embodied_mode: Annotated[Optional[str], typer.Option('--embodied-mode', metavar='paper|vendor', help='Embodied carbon method: paper (die area x carbon per area + HBM per GB, v1/v2) or vendor (--vendor-kg per device). Default: paper.')] = None,
    vendor_kg_per_device: Annotated[Optional[str], typer.Option('--vendor-kg', metavar='KG', help='Per-device embodied kgCO2e (with --embodied-mode vendor). A finite number in (0, 100000].')] = None,
    infrastructure: Annotated[Optional[bool], typer.Option('--infrastructure/--no-infrastructure', help="Add v2's infrastructure share to embodied carbon. Default: on.")] = None,
    include_embodied: Annotated[Optional[bool], typer.Option('--embodied/--no-embodied', help='Include embodied carbon. Default: on.')] = None,
    power_model: Annotated[Optional[str], typer.Option('--power-model', metavar='measured|nameplate|paper', help='Node power: measured (metered MLPerf node power, devices driven by their busy share; default), nameplate (TDP + system maximum: upper bound) or paper (static + dynamic x MFU).')] = None,
    allocation: Annotated[Optional[str], typer.Option('--allocation', metavar='share|node', help='A run on part of a node is charged its share (cloud slice; default) or whole nodes.')] = None,
    lifetime_policy: Annotated[Optional[str], typer.Option('--lifetime-policy', metavar='refuse|whole_run|replace', help="A run longer than the hardware lifetime: refuse (default; the deadline is capped at the lifetime), whole_run (charged once) or replace (charged replacements, the papers' rule).")] = None,
    cooling: Annotated[Optional[str], typer.Option('--cooling', metavar='auto|air|liquid', help='Server cooling: air adds fan power (default auto: GPU servers air, TPUs liquid).')] = None,
    goodput: Annotated[Optional[str], typer.Option('--goodput', metavar='G', help='Fixed goodput in (0, 1]; 1 = steady state only (default: modelled from data/goodput.yaml). A finite number in (0, 1].')] = None,
    interruptions_per_device_day: Annotated[Optional[str], typer.Option('--interruptions', metavar='R', help="Job interruptions per device-day (default: Llama 3's 5.27e-4, data/goodput.yaml). A finite number in [0, 1].")] = None,
    restart_minutes: Annotated[Optional[str], typer.Option('--restart-minutes', metavar='MIN', help='Minutes lost per restart (default: 10 min, data/goodput.yaml). A finite number in [0, 10080].')] = None,
    checkpoint_minutes: Annotated[Optional[str], typer.Option('--checkpoint-minutes', metavar='MIN', help='Training stall per checkpoint save, minutes (default: 1 min, data/goodput.yaml). A finite number in [0, 1440].')] = None,
    evaluation_fraction: Annotated[Optional[str], typer.Option('--evaluation-fraction', metavar='F', help='Share of wall clock in evaluation (default 0). A finite number in [0, 0.9].')] = None,
    development_overhead: Annotated[Optional[str], typer.Option('--development-overhead', metavar='X', help='Development compute before the final run, as a multiple of its device-hours; reported separately, never added (default 0). A finite number in [0, 100].')] = None,
    # END generated carbon options
    as_json: JsonOpt = False,
) -> None:
    """Operational + embodied carbon of a training run of known size and steady-state length."""
    from .carbon import run_carbon
    from .hardware import describe

    if duration_days is not None and duration_hours is not None:
        raise InputError("duration_h", "give at most one of --duration-days and --duration-hours")
    if duration_days is not None:
        from .carbon import check_number

        duration_hours = 24.0 * check_number("duration_days", number(duration_days), 0, 1e6 / 24, lo_open=True)
    from .specs import CarbonSettings, build, cli_values

    settings = build(CarbonSettings, {k: v for k, v in cli_values(locals(), "carbon").items() if v is not None})
    spec = resolve_model_opts(model, model_file)
    system = resolve_system_opts(device, device_file)
    result = run_carbon(spec, system, n_devices=number(devices), duration_h=number(duration_hours),
                        device_hours=number(device_hours), utilization=number(utilization),
                        **settings.carbon_kwargs())
    if as_json:
        emit_json({"model": spec.summary() if spec else None, "device": describe(system), **result.to_dict()})
        return
    b = result.breakdown
    rows = [
        ["facility energy (kWh, incl. PUE)", result.energy_kwh],
        ["  device energy (kWh, IT)", result.device_energy_kwh],
        ["  node-other + network energy (kWh, IT)", result.other_energy_kwh],
        ["operational (tCO2e)", result.operational_tco2e],
        *[[f"  {k.replace('_', ' ')}", b[f"{k}_tco2e"]] for k in CARBON_TERMS if f"{k}_tco2e" in b],
        ["W per device slot (node input)", b["w_per_device_slot"]],
        ["kWh per device-hour (node, facility)", f"{num(b['node_kwh_per_device_hour'])}, {num(b['facility_kwh_per_device_hour'])}"],
        ["device-hours (steady, expected)", f"{num(b['steady_device_hours'])}, {num(b['expected_device_hours'])}"],
        [f"embodied (tCO2e, {result.embodied_mode})", result.embodied_tco2e],
        *[[f"{'    ' if k in ('die', 'hbm') else '  '}{k}", b[f"embodied_{k}_tco2e"]]  # die + hbm = accelerator
          for k in ("accelerator", "die", "hbm", "cpu", "dram", "ssd", "infrastructure")],
        ["total (tCO2e)", result.total_tco2e],
        ["total range (tCO2e)", f"{num(result.total_low_tco2e)} .. {num(result.total_high_tco2e)}"],
    ]
    title = (f"{b['model'] or 'run'} on {b['n_devices']} x {b['device']}, {b['duration_h']:,.1f} h, "
             f"PUE {b['pue']:g}, CI {b['ci_g_per_kwh']:g} g/kWh")
    print_table(title, ["quantity", "value"], rows)
    typer.echo(f"scope: {result.scope}")
    if b.get("lifetime_note"):
        typer.echo(f"lifetime: {b['lifetime_note']}")
    typer.echo(f"embodied source: {result.embodied_source}")
    typer.echo(f"grid intensity source: {result.ci_source}")
