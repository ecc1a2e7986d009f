"""Set-up the test files share: one-layout grids for the step-time model, the CLI run in-process,
and the measured step-time rows picked by their columns.

pytest puts this folder on ``sys.path`` (rootdir conftest, the default ``prepend`` import mode), so
test files ``from helpers import ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from carbonscaling.perf.layout import Layout, LayoutGrid


# ---- layouts ----------------------------------------------------------------------------------
def one_layout(**fields) -> LayoutGrid:
    """The grid of the one :class:`Layout` that ``fields`` describe (what ``search`` evaluates)."""
    return LayoutGrid.from_layouts([Layout(**fields)])


def layout_grids(**base) -> Callable[..., LayoutGrid]:
    """A file's reference layout: ``grid(**kw)`` is the one-layout grid of ``base`` with ``kw`` changed."""
    return lambda **kw: one_layout(**{**base, **kw})


# ---- the CLI ----------------------------------------------------------------------------------
def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``carbonscaling ARGV`` run in this process."""
    from carbonscaling.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_file(tmp_path: Path, name: str, text: str) -> Path:
    """``tmp_path / name`` holding ``text`` (a model, scenario or profile file for the CLI)."""
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return f


# ---- the measured step-time rows --------------------------------------------------------------
def bench_rows(model: str, system: str, container: str, precision: str, note: str | None = None) -> list[dict]:
    """The validation rows (``pretrain_rows``: nemo_performance.csv) of ``model`` on ``system`` in
    ``container`` at ``precision`` (and whose notes hold ``note``), in file order; at least one (a
    test never passes on an empty pick)."""
    from carbonscaling.validation.throughput import pretrain_rows

    key = (model, system, container, precision)
    rows = [r for r in pretrain_rows() if (r["model"], r["system"], r["container"], r["precision"]) == key
            and (note is None or note in r["notes"])]
    assert rows, f"no validation row {key} with note {note!r}"
    return rows


def bench_row(model: str, system: str, container: str, precision: str, note: str | None = None) -> dict:
    """The first of :func:`bench_rows`."""
    return bench_rows(model, system, container, precision, note)[0]
