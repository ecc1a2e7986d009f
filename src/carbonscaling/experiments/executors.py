"""Where sweep work runs: the local process pool (default) or a Dask distributed cluster.

An executor here is anything with ``submit(fn, *args) -> future`` whose futures give
``result()``: a :class:`concurrent.futures.ProcessPoolExecutor` or a
:class:`distributed.Client`. :func:`open_executor` makes one from what the user typed:

* ``None`` / ``"pool"``: a local process pool of ``jobs`` workers (fork, memory-capped);
* ``"local"``: a Dask ``LocalCluster`` of ``jobs`` single-threaded worker processes;
* ``"tcp://HOST:PORT"`` (any Dask scheduler address): that cluster (needs ``[dask]``).

:func:`as_finished` yields futures as they finish for either kind, so callers stream
results (write a chunk, print a line) the moment they are ready.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator

from ..errors import InputError


def is_dask(executor: Any) -> bool:
    return type(executor).__module__.startswith("distributed")


def describe(executor: Any) -> str:
    """A short human description (``process pool, 2 workers`` / ``Dask tcp://..., 2 workers``)."""
    if is_dask(executor):
        n = len(executor.scheduler_info().get("workers", {}))
        return f"Dask {executor.scheduler.address}, {n} worker{'s' * (n != 1)}"
    return f"process pool, {getattr(executor, '_max_workers', '?')} workers"


def check_scheduler(scheduler: str | None) -> str:
    """``pool``, ``local`` or ``address`` for what the user typed; anything else is an InputError."""
    if scheduler in (None, "", "pool"):
        return "pool"
    if isinstance(scheduler, str) and scheduler == "local":
        return "local"
    if isinstance(scheduler, str) and ("://" in scheduler or ":" in scheduler) and " " not in scheduler:
        return "address"
    raise InputError("scheduler", f"must be 'pool', 'local' or a Dask scheduler address (tcp://HOST:PORT), "
                                  f"got {scheduler!r}")


@contextlib.contextmanager
def open_executor(scheduler: str | None = None, jobs: int | None = None) -> Iterator[Any]:
    """The executor named by ``scheduler`` (see the module docstring), closed on exit."""
    from .runner import default_jobs, worker_pool

    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    if check_scheduler(scheduler) == "pool":
        with worker_pool(jobs) as pool:  # Ctrl-C or an error stops the workers at once
            yield pool
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("scheduler", "Dask needs the dask extra: pip install 'carbonscaling[dask]'") from None
    if scheduler == "local":
        with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            yield client
        return
    address = scheduler if "://" in scheduler else f"tcp://{scheduler}"
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as err:
        raise InputError("scheduler", f"cannot reach the Dask scheduler at {address}: {err}") from None
    try:
        yield client
    finally:
        client.close()


def as_finished(executor: Any, futures: Iterable[Any]) -> Iterator[Any]:
    """The futures in the order they finish (Dask or concurrent.futures)."""
    futures = list(futures)
    if is_dask(executor):
        from distributed import as_completed

        yield from as_completed(futures)
    else:
        from concurrent.futures import as_completed

        yield from as_completed(futures)


def submit(executor: Any, fn: Callable, *args: Any) -> Any:
    """``executor.submit(fn, *args)``; Dask tasks are marked impure (never merged by key)."""
    if is_dask(executor):
        return executor.submit(fn, *args, pure=False)
    return executor.submit(fn, *args)
