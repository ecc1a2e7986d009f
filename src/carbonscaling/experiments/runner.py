"""Run scenarios: expand them into points, search each distinct training run once, account carbon.

Work is shared at two levels:

* **searches** (the expensive part) depend only on the model's architecture and
  budget, the (projected) device, the training options, the deadline and the
  infeasibility policy. Points of any scenario that agree on those share one
  search (:class:`Job`), so cs-v1 and cs-v2 sweeps on the same device, or a
  B100 curve drawn in six figures, cost one search per width. Jobs run in a
  process pool (``jobs`` workers, default the usable cores), largest models first.
* **carbon variants** (no embodied, low static power, other grid, CPA growth,
  median layout) never change the search: the main process re-accounts the
  searched devices x duration x utilization with :func:`carbon.run_carbon`.

``on_infeasible: extend`` doubles the deadline until some layout meets it
(in one step: the search reports the fastest duration it found), capped at the
search's 100-year limit; ``skip`` records the point as infeasible with the reason.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from ..chain import STEP_PARTS
from ..serialize import layout_record
from ..errors import InfeasibleError
from .accounting import model_spec as _model, point_row, system_spec
from .scenario import MAX_DEADLINE_DAYS, Scenario, model_widths

WORKER_MEMORY_GB = 4.0      # address-space cap per search worker


@dataclass(frozen=True)
class Job:
    """One search: everything the parallelism search depends on, as plain values."""

    preset: str
    d_model: int
    device: str
    years_ahead: float
    options: tuple[tuple[str, Any], ...]
    deadline_days: float
    on_infeasible: str
    pins: tuple[tuple[str, Any], ...] = ()
    objective: str = "fastest"
    carbon: tuple[tuple[str, Any], ...] = ()   # only with objective "carbon" (it prices the layouts),
    cpa_growth: float = 0.0                    # as is the CPA growth of the embodied price


@dataclass(frozen=True)
class Point:
    """One reported point: a scenario's series at one model width."""

    scenario: str
    series: str
    kind: str
    d_model: int
    settings: dict = field(hash=False, compare=False)
    job: Job | None = None


@dataclass
class RunResult:
    rows: dict[str, list[dict]]              # scenario name -> rows (one per point)
    solved: dict[Job, dict]                  # search results by job
    stats: dict[str, Any]


# ---- searches ------------------------------------------------------------------------------
def arch_key(preset: str, d_model: int) -> tuple:
    """What the search sees of a model: every field except its name, preset and loss law."""
    spec = _model(preset, d_model)
    return tuple(sorted(spec.model_dump(exclude={"name", "preset", "loss_law"}).items()))


def extended_deadline(deadline_days: float, best_days: float) -> float | None:
    """The smallest ``deadline * 2^k`` (k >= 1) not shorter than the fastest layout's duration,
    capped at 100 years; ``None`` if even the fastest layout takes longer than that."""
    if best_days > MAX_DEADLINE_DAYS:
        return None
    k = max(1, math.ceil(math.log2(best_days / deadline_days) - 1e-12))
    return min(deadline_days * 2.0**k, MAX_DEADLINE_DAYS)


def next_deadline(deadline_days: float, failed_days: float, best_days: float | None) -> float:
    """The next deadline to try after a search failed at ``failed_days``: the smallest
    ``deadline * 2^k`` above it that is not shorter than the fastest layout that failed search
    found (a later failing search often finds a much slower fastest layout than the first one's
    lower bound, so doubling blindly would run another, costly, failing search), capped at 100 years."""
    k = math.floor(math.log2(failed_days / deadline_days) + 1e-9) + 1
    nxt = deadline_days * 2.0**k
    if best_days is not None and math.isfinite(best_days) and best_days > nxt:
        nxt = deadline_days * 2.0**max(k, math.ceil(math.log2(best_days / deadline_days) - 1e-12))
    return min(nxt, MAX_DEADLINE_DAYS)


def job_search(job: Job):
    """``search(deadline_days=...)`` of one job: its model, system, recipe, pins and objective."""
    from functools import partial

    from ..chain import carbon_scorer, search_pins
    from ..search import search
    from ..specs import CarbonSettings, LayoutPins, Recipe

    model = _model(job.preset, job.d_model)
    system = system_spec(job.device, job.years_ahead)
    score = None
    if job.objective == "carbon":
        from ..carbon import PAPER_ACCOUNTING  # scenarios account as the papers (experiments/accounting.py)

        score = carbon_scorer(system_spec(job.device, job.years_ahead, job.cpa_growth),
                              {**PAPER_ACCOUNTING, **CarbonSettings(**dict(job.carbon)).carbon_kwargs()})
    return partial(search, model, system, options=Recipe(**dict(job.options)),
                   pinned=search_pins(LayoutPins(**dict(job.pins)), model), objective=job.objective,
                   carbon_score=score)


def solve(job: Job) -> dict[str, Any]:
    """Run the search of one job (with the extend policy); a flat record of plain numbers."""
    t0 = time.perf_counter()
    search = job_search(job)
    out: dict[str, Any] = {"searches": 1, "deadline_days_used": job.deadline_days, "status": "ok", "reason": ""}
    try:
        res = search(deadline_days=job.deadline_days)
    except InfeasibleError as err:
        best = err.details.get("best_duration_days")
        out.update(reason=str(err), constraint=err.constraint, best_duration_days=best)
        new = extended_deadline(job.deadline_days, best) if best is not None else None
        if job.on_infeasible != "extend" or err.constraint != "deadline" or new is None:
            if new is None and best is not None and job.on_infeasible == "extend":
                out["reason"] += f"; even the fastest layout exceeds the {MAX_DEADLINE_DAYS:g}-day cap"
            out.update(status="infeasible", seconds=time.perf_counter() - t0)
            return out
        res = None
        while res is None:
            out["searches"] += 1
            try:
                res = search(deadline_days=new)
            except InfeasibleError as again:
                if new >= MAX_DEADLINE_DAYS:
                    out.update(status="infeasible", seconds=time.perf_counter() - t0)
                    return out
                new = next_deadline(job.deadline_days, new, again.details.get("best_duration_days"))
        out.update(status="extended", deadline_days_used=new)
    lay, st = res.layout, res.step
    out.update({
        **{k: v for k, v in layout_record(lay).items() if k != "microbatches"},
        "duration_s": res.duration_s, "mfu": res.mfu,
        "step_time_s": float(st.step_time_s), "layouts_evaluated": res.layouts_evaluated,
        **{f"step.{k}": float(getattr(st, k)) for k in STEP_PARTS},
        "mem_total_gb": float(st.mem_total_gb),
        "median_devices": res.median_layout.devices if res.median_layout else None,
        "median_duration_s": res.median_duration_s, "median_mfu": res.median_mfu,
        "seconds": time.perf_counter() - t0,
    })
    return out


def _limit_memory(nbytes: int | None) -> None:
    """Worker initializer: cap the address space so a runaway search raises MemoryError
    (reported as a skipped point) instead of taking the machine down. Workers ignore
    SIGINT: Ctrl-C reaches the whole process group, and the parent alone decides to stop
    (:func:`stop_pool`), so no worker prints a KeyboardInterrupt traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not nbytes:
        return
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = nbytes if hard == resource.RLIM_INFINITY else min(nbytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
        pass


def _safe_solve(job: Job) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        return solve(job)
    except MemoryError:
        return {"searches": 1, "deadline_days_used": job.deadline_days, "status": "infeasible",
                "constraint": "search_memory", "seconds": time.perf_counter() - t0,
                "reason": f"the layout search exceeded the {WORKER_MEMORY_GB:g} GB worker memory cap "
                          "(too many candidate layouts for this model and batch)"}


def make_pool(jobs: int):
    """A process pool of ``jobs`` workers (fork where available; memory-capped). With fork,
    every worker is started here, before the caller starts any thread (progress bars)."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp

    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx, initializer=_limit_memory,
                               initargs=(int(WORKER_MEMORY_GB * 2**30),))
    pool.submit(int).result()
    return pool


def stop_pool(pool) -> None:
    """Cancel every queued task and terminate the workers now (Ctrl-C, errors): without this
    the executor's exit would wait for its whole queue."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    manager = getattr(pool, "_executor_manager_thread", None)  # and its manager thread
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=5)
    # The executor's manager thread marks the futures already handed to workers as failed once
    # it sees them gone; wait for it so that no future is left looking "running".
    if manager is not None:
        manager.join(timeout=5)


@contextmanager
def worker_pool(jobs: int) -> Iterator:
    """:func:`make_pool` as a context: a normal exit waits for the workers; an exception or
    Ctrl-C stops them at once (:func:`stop_pool`)."""
    pool = make_pool(jobs)
    try:
        yield pool
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def pool_map(pool, fn: Callable, items: list, tick: Callable[[], None] = lambda: None) -> list:
    """``[fn(x) for x in items]`` on ``pool`` (a process pool or a Dask client), in input order;
    ``tick()`` after each."""
    from .executors import as_finished, submit

    results: list = [None] * len(items)
    futures = [submit(pool, fn, x) for x in items]
    index = {id(f): i for i, f in enumerate(futures)}
    for fut in as_finished(pool, futures):
        results[index[id(fut)]] = fut.result()
        tick()
    return results


# ---- points ----------------------------------------------------------------------------------
def expand(sc: Scenario) -> list[Point]:
    """Every point of a scenario: each series at each model width."""
    if sc.plot == "validation":
        return []
    points = []
    for s in sc.series:
        r = sc.resolved(s)
        for d in model_widths(sc, r["preset"]):
            job = None
            if r["kind"] != "ideal":
                job = Job(preset=r["preset"], d_model=int(d), device=r["device"], years_ahead=r["years_ahead"],
                          options=tuple(sorted(r["options"].items())), deadline_days=r["deadline_days"],
                          on_infeasible=r["on_infeasible"], pins=tuple(sorted(r["pins"].items())),
                          objective=r["objective"],
                          **_carbon_objective(r))
            points.append(Point(sc.name, s.label, r["kind"], int(d), r, job))
    return points


def _carbon_objective(r: dict) -> dict[str, Any]:
    """What the search needs of the carbon settings: nothing unless it minimises carbon."""
    if r["objective"] != "carbon":
        return {}
    return {"carbon": tuple(sorted(r["carbon"].items())), "cpa_growth": r["cpa_growth"]}


def _job_key(job: Job) -> tuple:
    return (arch_key(job.preset, job.d_model), job.device, job.years_ahead, job.options, job.deadline_days,
            job.on_infeasible, job.pins, job.objective, job.carbon, job.cpa_growth)


def plan(scenarios: Iterable[Scenario]) -> tuple[list[Point], dict[tuple, Job]]:
    """All points and the distinct searches they need (keyed by what a search depends on)."""
    points = [p for sc in scenarios for p in expand(sc)]
    unique: dict[tuple, Job] = {}
    for p in points:
        if p.job is not None:
            unique.setdefault(_job_key(p.job), p.job)
    return points, unique


def run_scenarios(scenarios: list[Scenario], *, jobs: int | None = None,
                  progress: Callable[[str, int, int], None] | None = None, pool=None) -> RunResult:
    """Search every distinct job (in parallel) and account every point; rows per scenario.

    With ``on_infeasible: extend`` every series of a scenario uses, at each width, the
    longest deadline any of them needed, so the curves of one figure compare like with
    like. To avoid searching twice, each scenario's first series is searched first; the
    others start from the deadline it needed; then deadlines are aligned (<= 3 rounds).
    """
    t0 = time.perf_counter()
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    if pool is None:
        with worker_pool(jobs) as own:
            return run_scenarios(scenarios, jobs=jobs, progress=progress, pool=own)
    points, _ = plan(scenarios)
    lead = {sc.name: next((s.label for s in sc.series if s.kind != "ideal"), None) for sc in scenarios}
    by_key: dict[tuple, dict] = {}
    jobs_by_key: dict[tuple, Job] = {}
    count = {"done": 0, "total": 0}

    def tick():
        count["done"] += 1
        if progress:
            progress("search", count["done"], count["total"])

    def solve_all(pts: list[Point]) -> None:
        need = {_job_key(p.job): p.job for p in pts if p.job is not None}
        jobs_by_key.update(need)
        keys = sorted((k for k in need if k not in by_key), key=lambda k: -_cost(need[k]))
        count["total"] += len(keys)
        if progress:
            progress("search", count["done"], count["total"])
        by_key.update(zip(keys, pool_map(pool, _safe_solve, [need[k] for k in keys], tick)))

    solve_all([p for p in points if p.job is not None and (p.job.on_infeasible != "extend"
                                                          or p.series == lead[p.scenario])])
    for _round in range(3):
        points = align_deadlines(points, by_key)
        solve_all(points)
    t_search = time.perf_counter() - t0
    rows: dict[str, list[dict]] = {sc.name: [] for sc in scenarios}
    for p in points:
        res = by_key.get(_job_key(p.job)) if p.job is not None else None
        rows[p.scenario].append(point_row(p, res))
    results = list(by_key.values())
    stats = {"points": len(points), "unique_searches": len(by_key),
             "search_calls": sum(r["searches"] for r in results),
             "search_cpu_s": sum(r["seconds"] for r in results), "search_wall_s": t_search,
             "account_wall_s": time.perf_counter() - t0 - t_search, "jobs": jobs,
             "extended": sum(r["status"] == "extended" for r in results),
             "infeasible": sum(r["status"] == "infeasible" for r in results)}
    return RunResult(rows=rows, solved={jobs_by_key[k]: v for k, v in by_key.items()}, stats=stats)


def align_deadlines(points: list[Point], by_key: dict[tuple, dict]) -> list[Point]:
    """Points of an extending scenario re-targeted at the longest deadline used at their width
    (points not searched yet start from it; searched ones below it are searched again)."""
    from dataclasses import replace

    longest: dict[tuple[str, int], float] = {}
    for p in points:
        res = by_key.get(_job_key(p.job)) if p.job is not None else None
        if res and res["status"] != "infeasible" and p.job.on_infeasible == "extend":
            key = (p.scenario, p.d_model)
            longest[key] = max(longest.get(key, 0.0), res["deadline_days_used"])
    out = []
    for p in points:
        if p.job is not None and p.job.on_infeasible == "extend":
            res = by_key.get(_job_key(p.job))
            used = p.job.deadline_days if res is None else res["deadline_days_used"]
            target = longest.get((p.scenario, p.d_model))
            if target and used < target and (res is None or res["status"] != "infeasible"):
                p = replace(p, job=replace(p.job, deadline_days=target))
        out.append(p)
    return out


def default_jobs() -> int:
    """Worker processes: the usable cores (``os.sched_getaffinity`` where it exists)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def _cost(job: Job) -> float:
    """A rough relative cost to schedule big searches first (they dominate)."""
    return job.d_model * (1.0 + job.years_ahead / 10.0)
