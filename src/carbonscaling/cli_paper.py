"""``carbonscaling paper`` and ``carbonscaling sweep`` (commands registered here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import app, integer, print_table
from .errors import InputError

OutOpt = Annotated[Optional[str], typer.Option(  # str: typer reads "" as "."
    "--out", "-o", metavar="DIR", help="Output directory.")]
JobsOpt = Annotated[Optional[str], typer.Option(
    "--jobs", "-j", metavar="N", help="Worker processes for the searches (default: the usable cores).")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")]
FiguresOpt = Annotated[bool, typer.Option("--figures/--no-figures", help="Draw the PNG/SVG figures.")]


def _jobs(text: str | None) -> int | None:
    from .carbon import check_number

    return None if text is None else int(check_number("jobs", integer(text), 1, 256, integer=True))


class _Progress:
    """A rich progress bar on stderr, started at the first update (after the worker processes)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar, self.tasks = enabled, None, {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self.bar.start()
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(phase, total=total)
        self.bar.update(self.tasks[phase], completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _target(out: str | None, default: Path) -> Path:
    """``--out`` (or the default), checked before any work (``_output.check_target``)."""
    from ._output import check_target

    return check_target(default if out is None else out, "out")


def _run(scenarios, out: Path, jobs, progress: bool, figures: bool, title: str):
    from .experiments.paper import run

    bar = _Progress(progress)
    try:
        return run(scenarios, out, jobs=_jobs(jobs), progress=bar, figures=figures, title=title)
    finally:
        bar.close()


def _summary(res, out: Path) -> None:
    rows = [[c.experiment, c.id, c.verdict, c.measured[:110] + ("..." if len(c.measured) > 110 else "")]
            for c in res.claims]
    if rows:
        print_table("claims (full text: report.md)", ["experiment", "claim", "verdict", "we measure"], rows)
    t = res.timings
    typer.echo(f"{res.run.stats['unique_searches']} searches for {res.run.stats['points']} points in "
               f"{t['total_s']:.1f} s ({res.run.stats['jobs']} workers)")
    typer.echo(f"wrote {out / 'report.md'} and {out / 'report.html'}")


@app.command()
def paper(
    out: OutOpt = None,
    only: Annotated[Optional[str], typer.Option(
        "--only", metavar="NAMES", help="Comma-separated experiments, e.g. v1-fig4,v2-fig6a (default: all).")] = None,
    jobs: JobsOpt = None,
    progress: ProgressOpt = True,
    figures: FiguresOpt = True,
) -> None:
    """Reproduce every experiment of both paper versions: CSV + figure per experiment, report.md/.html.

    Each experiment is a shipped scenario (`carbonscaling/experiments/scenarios/*.yaml`); the report
    lists, per experiment, what the paper claims, what we measure and whether they agree.
    """
    from .experiments.scenario import shipped_scenarios

    names = [s.strip() for s in only.split(",") if s.strip()] if only else None
    if only is not None and not names:
        raise InputError("only", "give at least one experiment name")
    scenarios = shipped_scenarios(names)
    target = _target(out, Path("paper-out"))
    res = _run(scenarios, target, jobs, progress, figures, "CarbonScaling v1 + v2 experiments")
    _summary(res, target)


@app.command()
def sweep(
    scenario: Annotated[Path, typer.Argument(metavar="SCENARIO.yaml", help="Scenario file (see docs/experiments.md).")],
    out: OutOpt = None,
    jobs: JobsOpt = None,
    progress: ProgressOpt = True,
    figures: FiguresOpt = True,
) -> None:
    """Run one scenario file: CSV of its points, figure, report.md/.html (default --out sweep-NAME)."""
    from .experiments.scenario import load_scenario

    sc = load_scenario(scenario)
    target = _target(out, Path(f"sweep-{sc.name}"))
    res = _run([sc], target, jobs, progress, figures, sc.title)
    _summary(res, target)
