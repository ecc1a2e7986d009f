"""The catalog commands: ``models``, ``devices``, ``regions`` and ``glossary``."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .cli import JsonOpt, YearOpt, _with_catalog, app, emit_json, integer, print_table
from .errors import InputError


@app.command()
def models(
    as_json: JsonOpt = False,
    example: Annotated[Optional[str], typer.Option(
        "--example", metavar="dense|moe", help="Print a documented example model file (for --model-file).")] = None,
) -> None:
    """List the named model catalog."""
    from .scaling import catalog_entry, example_model_file, model_names, named_model

    if example is not None:
        sys.stdout.write(example_model_file(example))
        return

    recs = []
    for name in _with_catalog(model_names):
        s = named_model(name).summary()
        recs.append({**s, "source": catalog_entry(name).get("source", "")})
    if as_json:
        emit_json(recs)
        return
    cols = ["name", "params_total", "params_active", "tokens", "train_flops", "d_model", "n_layers", "n_experts"]
    print_table("models (data/models.yaml)", cols, [[r[c] for c in cols] for r in recs])


@app.command()
def devices(
    name: Annotated[Optional[str], typer.Argument(metavar="[NAME]", help="One device (catalog name or alias).")] = None,
    as_json: JsonOpt = False,
    example: Annotated[bool, typer.Option("--example", help="Print the documented example device file.")] = False,
) -> None:
    """List the accelerator catalog, or one device (its --json output is a valid --device-file)."""
    from .hardware import describe, device_names, example_device_file, load_system

    if example:
        sys.stdout.write(example_device_file())
        return
    if name is not None:
        rec = describe(load_system(name))
        if as_json:
            emit_json(rec)
            return
        print_table(f"{rec['name']} (data/hardware*.yaml)", ["field", "value"],
                    [[k, v] for k, v in rec.items() if k not in ("system", "cell_flags")]
                    + [[f"system.{k}", v] for k, v in rec["system"].items()]
                    + [[f"flag {k}", v] for k, v in rec["cell_flags"].items()])
        return
    recs = [describe(load_system(n)) for n in device_names()]
    if as_json:
        emit_json(recs)
        return
    cols = ["name", "peak_tflops", "peak_tflops_fp8", "peak_tflops_fp4", "hbm_gb", "hbm_gb_s", "tdp_w",
            "process_node", "hbm_type", "kind"]
    print_table("devices (data/hardware.yaml, data/hardware_modern.yaml)", cols,
                [[r[c] for c in cols] for r in recs])


@app.command()
def regions(year: YearOpt = None, as_json: JsonOpt = False) -> None:
    """List Google Cloud regions and their grid carbon intensity."""
    from .carbon import region_table

    recs = region_table(integer(year))
    if as_json:
        emit_json(recs)
        return
    cols = ["region", "location", "year", "ci_g_per_kwh", "cfe_fraction"]
    print_table(f"grid carbon intensity, {recs[0]['year']} (Google Cloud region-carbon-info, Apache-2.0)",
                cols, [[r[c] for c in cols] for r in recs])


@app.command()
def glossary(term: Annotated[Optional[str], typer.Argument(metavar="[TERM]", help="One term (any case).")] = None,
             as_json: JsonOpt = False) -> None:
    """Abbreviations and terms of the reports (MFU, MAPE, TP, PUE, CPA, ...): docs/glossary.md."""
    from .glossary import TERMS

    terms = [t for t in TERMS if term is None or t.term.lower() == term.strip().lower()]
    if not terms:
        import difflib

        by_lower = {t.term.lower(): t.term for t in TERMS}
        low = term.strip().lower()
        close = [by_lower[c] for c in difflib.get_close_matches(low, by_lower, n=3, cutoff=0.6)] or \
            [t for k, t in by_lower.items() if low and low in k][:3]  # 'busy' -> 'busy share'
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise InputError("term", f"{term!r} is not in the glossary; {hint}known: {', '.join(by_lower.values())}")
    if as_json:
        emit_json({t.term: t.meaning for t in terms})
        return
    for t in terms:
        typer.echo(f"{t.term}: {t.meaning}")
