"""Command-line interface: ``carbonscaling COMMAND [OPTIONS]``.

Layout, so that commands can live in their own modules:

* ``app`` is the one :class:`typer.Typer`; a command module does
  ``from .cli import app, DevicesOpt, ...`` and decorates its functions with
  ``@app.command()``; add the module's name to :data:`COMMAND_MODULES` below.
* Shared options (``DeviceOpt``, ``UtilizationOpt``, ...) are ``Annotated`` types,
  and the helpers (:func:`resolve_system_opts`, :func:`resolve_model_opts`,
  :func:`emit_json`, :func:`print_table`) turn them into specs and output.
* Only ``typer`` is imported at start-up: the package's modules (pydantic, yaml),
  pandas and matplotlib are imported inside the commands that use them.
* Commands: ``carbon`` in :mod:`carbonscaling.cli_carbon`; ``models``, ``devices``,
  ``regions``, ``glossary`` in :mod:`carbonscaling.cli_catalog`; ``estimate``, ``paper`` /
  ``sweep``, ``validate``, the decision commands and ``serve`` in the other ``cli_*`` modules.
  This module keeps ``app``, the shared options and helpers, and the entry point.

:func:`main` is the console script. Every :class:`CarbonScalingError` and every
usage error becomes one line ``error: ...`` on stderr and exit status 2 (bad input)
or 3 (infeasible request); nothing is printed to stdout in that case.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .errors import CarbonScalingError, InputError

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as _click_exc
_NoArgsIsHelp = getattr(_click_exc, "NoArgsIsHelpError", ())

app = typer.Typer(
    name="carbonscaling",
    help="What an LLM training run costs the climate: device count and layout that meet a deadline, step "
         "time, energy, operational and embodied carbon. Start with: carbonscaling estimate --model llama3.1-70b "
         "--device H100 --region us-east5 (catalogs: models, devices, regions; abbreviations: glossary).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Other modules that register commands on ``app`` (e.g. "carbonscaling.cli_estimate").
# Their order is the order of `carbonscaling --help`'s command list.
COMMAND_MODULES: tuple[str, ...] = ("carbonscaling.cli_carbon", "carbonscaling.cli_catalog", "carbonscaling.cli_estimate",
                                   "carbonscaling.cli_paper", "carbonscaling.cli_validate", "carbonscaling.cli_decide",
                                   "carbonscaling.cli_serve")

# API field name -> CLI option, so that error lines name what the user typed. Fields of
# a run (carbonscaling.specs.RunSpec: --tp, --pue, ...) are looked up in the specs
# themselves (imported only when an error is worded); these are the other commands' fields.
OPTION_OF = {
    "n_devices": "--devices", "duration_h": "--duration-hours/--duration-days/--device-hours",
    "device_hours": "--device-hours", "utilization": "--utilization", "country": "--ci",
    "device": "--device", "model": "--model", "duration_days": "--duration-days", "model_file": "--model-file",
    "device_file": "--device-file", "cpa_growth_per_year": "--cpa-growth",
    "out": "--out", "jobs": "--jobs", "only": "--only", "runs_file": "--runs", "example": "--example",
}

# ---- shared options --------------------------------------------------------------------
# Numeric options are read as text and converted by :func:`number`, so that the API's
# validation (one source of truth for ranges) words every error, "abc" and "nan" included.
Num = Optional[str]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME", help="Catalog model name (see `models`).")]
ModelFileOpt = Annotated[Optional[Path], typer.Option("--model-file", metavar="PATH", help="YAML file of ModelSpec fields.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", "-d", metavar="NAME", help="Catalog device name (see `devices`).")]
DeviceFileOpt = Annotated[Optional[Path], typer.Option("--device-file", metavar="PATH", help="YAML file of device (+ system) fields.")]
DevicesOpt = Annotated[str, typer.Option("--devices", "-n", metavar="N", help="Number of accelerators, 1..1e12.")]
UtilizationOpt = Annotated[str, typer.Option("--utilization", "-u", metavar="U", help="Utilization in (0, 1]: the accelerators' busy share "
                                                            "(default --power-model measured) or MFU (--power-model paper).")]
# BEGIN generated shared option types (python -m carbonscaling.specs --write-cli)
PresetOpt = Annotated[Optional[str], typer.Option('--preset', metavar='NAME', help='Scaling-law preset: cs-v1, cs-v1-aggressive-batch, cs-v2.')]
DModelOpt = Annotated[Optional[str], typer.Option('--d-model', metavar='N', help='Model width for --preset. A whole number in [1, 1e9].')]
DeadlineDaysOpt = Annotated[Optional[str], typer.Option('--deadline-days', metavar='DAYS', help='Maximum training duration in days. A finite number in (0, 36500]. Default: 90.')]
CiOpt = Annotated[Optional[str], typer.Option('--ci', metavar='CI|REGION|ISO3', help='Grid intensity: g/kWh in [0, 2000], a region (us-east5) or, with codecarbon, an ISO3 country (FRA); default: 323.05 g/kWh, data/power.yaml.')]
RegionOpt = Annotated[Optional[str], typer.Option('--region', metavar='REGION', help='Google Cloud region (see `regions`); like --ci.')]
YearOpt = Annotated[Optional[str], typer.Option('--year', metavar='YYYY', help='Year of the region table (default: latest). A whole number in [1900, 2200].')]
PueOpt = Annotated[Optional[str], typer.Option('--pue', metavar='X', help='Power usage effectiveness (default: 1.1, data/power.yaml). A finite number in [1, 3].')]
LifetimeYearsOpt = Annotated[Optional[str], typer.Option('--lifetime', metavar='YEARS', help='Hardware lifetime in years (default: 6 years, data/power.yaml). A finite number in [0.01, 50].')]
EmbodiedModeOpt = Annotated[Optional[str], typer.Option('--embodied-mode', metavar='paper|vendor', help='Embodied carbon method: paper (die area x carbon per area + HBM per GB, v1/v2) or vendor (--vendor-kg per device). Default: paper.')]
PrecisionOpt = Annotated[Optional[str], typer.Option('--precision', metavar='NAME', help='GEMM number format: bf16, fp16, fp8 (fp8-cs), fp8-delayed, fp8-blockwise, mxfp8 (fp8-mx), nvfp4, mxfp4; the device must run it. Default: bf16.')]
# END generated shared option types
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def number(text: str | None) -> float | str | None:
    """Option text as a float; text that is not a number is returned as is, for the API to reject.

    Numbers are ASCII: ``12``, ``1.5e3``, ``1_000`` (underscores between digits, as in Python
    and YAML); non-ASCII digits (``'١٢'``) are rejected rather than silently read.
    """
    if text is None:
        return None
    if not isinstance(text, str):  # already a number (e.g. --duration-days converted to hours)
        return text
    if not text.isascii():  # Python's float() reads '١٢' (Arabic-Indic) as 12: we do not
        return text
    try:
        return float(text)
    except ValueError:
        return text


def integer(text: str | None) -> int | str | None:
    """Option text as an int (``"2024"``, ``"2024.0"``); anything else returned as is."""
    x = number(text)
    return int(x) if isinstance(x, float) and x.is_integer() and abs(x) < 2**53 else x


def option_name(field: str) -> str | None:
    """The CLI option of an API field (``lifetime_years`` -> ``--lifetime``), or None."""
    head = field.split(".")[0]
    if field in OPTION_OF or head in OPTION_OF:
        return OPTION_OF.get(field) or OPTION_OF[head]
    from .specs import ALIASES, cli_option, flat_fields

    name = ALIASES.get(head, head)
    return cli_option(name) if name in flat_fields() else None


def resolve_system_opts(device: str | None, device_file: Path | None):
    """A ``hardware.System`` from ``--device`` or ``--device-file`` (exactly one)."""
    from .hardware import load_system, system_from_file

    if (device is None) == (device_file is None):
        raise InputError("device", "give exactly one of --device NAME and --device-file PATH")
    return load_system(device) if device is not None else system_from_file(device_file)


def resolve_model_opts(model: str | None, model_file: Path | None, *, required: bool = False):
    """A ``ModelSpec`` from ``--model`` or ``--model-file``; ``None`` if neither and not required."""
    if model is not None and model_file is not None:
        raise InputError("model", "give at most one of --model NAME and --model-file PATH")
    if model is None and model_file is None:
        if required:
            raise InputError("model", "give --model NAME or --model-file PATH")
        return None
    from .scaling import model_from_file, named_model

    if model_file is None:
        return _with_catalog(lambda: named_model(model))
    try:
        return model_from_file(model_file)
    except InputError as err:
        if err.field.startswith("model_file"):
            raise
        raise InputError(f"model_file.{err.field}", err.message) from None


def _with_catalog(fn):
    try:
        return fn()
    except FileNotFoundError:
        raise InputError("model", "the model catalog (data/models.yaml) is not installed") from None


def emit_json(obj: Any) -> None:
    """Strict JSON (no NaN/Infinity) on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False, default=str) + "\n")


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A rich table on stdout (rich imported here, not at start-up)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    console = Console()
    if not console.is_terminal:  # pipes and files: no truncated columns
        console.width = max(console.width, 160)
    console.print(table)


def _cell(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    return num(v)


def num(v: float, digits: int = 4) -> str:
    """A measured quantity as people read it: ``digits`` significant digits (the models are
    not more precise than that), thousands separated, no exponent between 1e-3 and 1e12
    (``9,340``, ``8.206``, ``0.4891``; ``1.2e+13`` beyond)."""
    import math

    v = float(v)
    if not math.isfinite(v) or v == 0:
        return f"{v:g}"
    if 10 ** (digits - 1) <= abs(v) < 1e12:  # whole units (device-hours as given: 1,082,990)
        return f"{v:,.0f}"
    v = float(f"{v:.{digits}g}")  # round first: 999.96 -> 1000 -> '1,000'
    a = abs(v)
    if a >= 1e12 or a < 1e-3:
        return f"{v:.{digits - 1}e}"
    if a >= 10 ** (digits - 1):
        return f"{v:,.0f}"
    decimals = digits - 1 - math.floor(math.log10(a))
    return f"{v:,.{decimals}f}"


# ---- commands ------------------------------------------------------------------------
def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"carbonscaling {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """What an LLM training run costs the climate (see ``app``'s help)."""


# ---- entry point -----------------------------------------------------------------------
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"error: {_one_line(message)}\n")
    return code


def error_message(err: CarbonScalingError) -> str:
    """The text after ``error:``; input errors also name the CLI option."""
    if isinstance(err, InputError):
        opt = option_name(err.field)
        return f"{err.field} ({opt}): {err.message}" if opt else f"{err.field}: {err.message}"
    return str(err)


def _warnings_as_lines():
    """The package's warnings as one line ``warning: ...`` on stderr (not Python's two-line form)."""
    import contextlib
    import warnings

    from .errors import CarbonScalingWarning

    @contextlib.contextmanager
    def scope():
        with warnings.catch_warnings():
            warnings.simplefilter("always", CarbonScalingWarning)
            plain = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, CarbonScalingWarning):
                    sys.stderr.write(f"warning: {_one_line(str(message))}\n")
                else:
                    plain(message, category, filename, lineno, file, line)

            warnings.showwarning = show
            yield

    return scope()


def _watch_sigint() -> tuple[Any, Any]:
    """Record Ctrl-C and SIGTERM, raising KeyboardInterrupt for both, so that output directories
    are cleaned up and worker pools stopped either way: ``(pressed, restore)`` functions."""
    import signal

    seen: list[int] = []
    installed: dict[int, Any] = {}

    def on_signal(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    for sig, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        try:
            if signal.getsignal(sig) is default:  # leave ignored signals and others' handlers alone
                installed[sig] = signal.signal(sig, on_signal)
        except (ValueError, OSError):  # not the main thread
            break

    def restore() -> None:
        for sig, prev in installed.items():
            signal.signal(sig, prev)

    return (lambda: bool(seen)), restore


def _app_for(args: list[str]) -> typer.Typer:
    """The app to run ``args``: typer builds every command's options before running one (0.1 s
    of CPU for the ~20 commands, more than `devices` itself needs), so when the first argument
    names a command, a group holding just that command (and the root callback) runs it."""
    if not args or args[0].startswith("-"):
        return app
    wanted = [c for c in app.registered_commands
              if (c.name or c.callback.__name__.lower().replace("_", "-")) == args[0]]
    if len(wanted) != 1:
        return app
    one = typer.Typer(name=app.info.name, help=app.info.help, add_completion=False, no_args_is_help=True,
                      pretty_exceptions_enable=False, rich_markup_mode=None)
    one.registered_callback = app.registered_callback
    one.registered_commands = wanted
    return one


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 3 infeasible)."""
    args = sys.argv[1:] if argv is None else list(argv)
    interrupted, restore = _watch_sigint()
    try:
        with _warnings_as_lines():
            rv = _app_for(args)(args=args, prog_name="carbonscaling", standalone_mode=False)
        if interrupted():  # typer turns Ctrl-C into a silent exit status 130
            return _fail("aborted", 130)
    except CarbonScalingError as err:
        return _fail(error_message(err), err.exit_code)
    except _NoArgsIsHelp as err:  # type: ignore[misc]
        sys.stdout.write(err.format_message() + "\n")
        return 0
    except _click_exc.UsageError as err:
        return _fail(err.format_message(), 2)
    except _click_exc.ClickException as err:
        return _fail(err.format_message(), err.exit_code or 2)
    except (typer.Abort, KeyboardInterrupt):
        return _fail("aborted", 130)
    except BrokenPipeError:  # pragma: no cover - e.g. `carbonscaling devices | head`
        return 0
    except Exception as err:  # a bug, not bad input: still one line unless debugging
        if os.environ.get("CARBONSCALING_DEBUG"):
            raise
        return _fail(f"internal error: {type(err).__name__}: {err} (set CARBONSCALING_DEBUG=1 for a traceback)", 1)
    finally:
        restore()
    return rv if isinstance(rv, int) else 0


# Names that lived here before their commands had their own modules (``carbonscaling.cli.carbon``,
# ...), looked up when asked for: importing them here would fail when a command module is the
# first one imported (it imports this module, which would import it back half-initialised).
_MOVED = {"carbon": "cli_carbon", "CARBON_TERMS": "cli_carbon", "models": "cli_catalog", "devices": "cli_catalog",
          "regions": "cli_catalog", "glossary": "cli_catalog"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"carbonscaling.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
