"""``carbonscaling paper`` and ``carbonscaling sweep`` (commands registered here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import app, integer, print_table
from .errors import InputError

JobsOpt = Annotated[Optional[str], typer.Option(
    "--jobs", "-j", metavar="N", help="Worker processes for the searches (default: the usable cores).")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")]
FiguresOpt = Annotated[bool, typer.Option("--figures/--no-figures", help="Draw the figures (PNG).")]
SvgOpt = Annotated[bool, typer.Option("--svg/--no-svg", help="Also write each figure as SVG.")]


def _jobs(text: str | None) -> int | None:
    from .carbon import check_number

    return None if text is None else int(check_number("jobs", integer(text), 1, 256, integer=True))


class _Progress:
    """Progress on stderr: the rich bar on a terminal; otherwise (a log file, a pipe, CI) one line
    per finished unit of work (search, figure, sweep chunk) with counts and elapsed time."""

    def __init__(self, enabled: bool, stream=None) -> None:
        import sys
        import time

        self.stream = stream if stream is not None else sys.stderr
        self.enabled, self.bar, self.tasks, self.last = enabled, None, {}, {}
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if not self.tty:
            self._line(phase, done, total)
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(file=self.stream), transient=False)
            self.bar.start()
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(phase, total=total)
        self.bar.update(self.tasks[phase], completed=done, total=total)

    def _line(self, phase: str, done: int, total: int) -> None:
        import time

        if done <= self.last.get(phase, 0):
            return
        self.last[phase] = done
        elapsed = time.perf_counter() - self.t0
        self.stream.write(f"{phase} {done}/{total} done, {elapsed:.1f} s elapsed\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _target(out: str | None, default: Path) -> Path:
    """``--out`` (or the default), checked before any work (``_output.check_target``)."""
    from ._output import check_target

    return check_target(default if out is None else out, "out")


def _run(scenarios, out: Path, jobs, progress: bool, figures: bool, title: str, svg: bool = False):
    from .experiments.paper import run

    bar = _Progress(progress)
    try:
        return run(scenarios, out, jobs=_jobs(jobs), progress=bar, figures=figures, title=title, svg=svg)
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
    out: Annotated[Optional[str], typer.Option(  # str: typer reads "" as "."
        "--out", "-o", metavar="DIR", help="Output directory (default: paper-out).")] = None,
    only: Annotated[Optional[str], typer.Option(
        "--only", metavar="NAMES", help="Comma-separated experiments, e.g. v1-fig4,v2-fig6a (default: all).")] = None,
    jobs: JobsOpt = None,
    progress: ProgressOpt = True,
    figures: FiguresOpt = True,
    svg: SvgOpt = False,
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
    res = _run(scenarios, target, jobs, progress, figures, "CarbonScaling v1 + v2 experiments", svg)
    _summary(res, target)


SchedulerOpt = Annotated[Optional[str], typer.Option(
    "--scheduler", metavar="pool|local|ADDRESS",
    help="Where the work runs: the local process pool (default), 'local' (a Dask LocalCluster of --jobs "
         "workers) or a Dask scheduler address tcp://HOST:PORT (needs the dask extra).")]


@app.command()
def sweep(
    scenario: Annotated[Path, typer.Argument(metavar="FILE.yaml", help="A scenario or a grid file (docs/experiments.md, docs/service.md).")],
    out: Annotated[Optional[str], typer.Option(
        "--out", "-o", metavar="DIR", help="Output directory (default: sweep-NAME, NAME from the file).")] = None,
    jobs: JobsOpt = None,
    scheduler: SchedulerOpt = None,
    chunk_size: Annotated[Optional[str], typer.Option("--chunk-size", metavar="N", help="Grid points per task (default: the file's, else 200).")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", metavar="parquet|csv", help="Grid output format (default parquet when pyarrow is installed).")] = None,
    progress: ProgressOpt = True,
    figures: FiguresOpt = True,
    svg: SvgOpt = False,
) -> None:
    """Run a scenario (CSV, figure, report) or a grid sweep (chunks streamed to Parquet/CSV, resumable).

    A grid file has a top-level `grid:` of axes; every combination is one point. Running the same grid
    into the same --out again resumes: finished chunks are skipped.
    """
    from .experiments.grid import is_grid_file

    if is_grid_file(scenario):
        _grid(scenario, out, jobs, scheduler, chunk_size, fmt, progress)
        return
    from .experiments.scenario import load_scenario

    sc = load_scenario(scenario)
    target = _target(out, Path(f"sweep-{sc.name}"))
    if scheduler in (None, "pool"):
        res = _run([sc], target, jobs, progress, figures, sc.title, svg)
    else:
        from .experiments.executors import open_executor
        from .experiments.paper import run

        bar = _Progress(progress)
        try:
            with open_executor(scheduler, _jobs(jobs)) as ex:
                res = run([sc], target, jobs=_jobs(jobs), progress=bar, figures=figures, title=sc.title, executor=ex,
                          svg=svg)
        finally:
            bar.close()
    _summary(res, target)


def _grid(path: Path, out, jobs, scheduler, chunk_size, fmt, progress: bool) -> None:
    from .carbon import check_number
    from .experiments.grid import load_grid, run_grid

    spec = load_grid(path)
    size = None if chunk_size is None else int(check_number("chunk_size", integer(chunk_size), 1, 1_000_000, integer=True))
    target = Path(out) if out else Path(f"sweep-{spec.name}")  # an existing sweep directory is resumed
    bar = _Progress(progress)
    try:
        res = run_grid(spec, target, scheduler=scheduler, jobs=_jobs(jobs), chunk_size=size, fmt=fmt, progress=bar)
    except KeyboardInterrupt:
        bar.close()
        typer.echo(f"interrupted: the finished chunks are in {target}; run the same command again to resume", err=True)
        raise
    finally:
        bar.close()
    typer.echo(f"{res.n_points:,} points in {res.n_chunks} chunks: {res.chunks_run} run, {res.chunks_skipped} "
               f"already done (resumed); {res.seconds:.1f} s on {res.executor}")
    typer.echo(f"wrote {target}/ (manifest.json + part-*.{fmt or 'parquet'}); read with pandas.read_parquet or "
               "carbonscaling.experiments.grid.read_results")
