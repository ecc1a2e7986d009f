"""Output directories written all at once (``paper``, ``sweep``, ``validate`` with ``--out``).

:func:`staged_dir` checks the target before any work starts, hands out a temporary
directory *next to* the target (same file system, so the final moves are renames),
and moves its contents into the target only when the block finishes without an
exception. On an error or Ctrl-C the temporary directory (and any parent directories
it had to create) is removed, so the target never holds a half-written result.

Every problem with the target (an existing file, ``/dev/null``, a place under a file,
a read-only or unwritable directory, an empty name) is an
:class:`~carbonscaling.errors.InputError` naming ``field`` (the CLI prints ``--out``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import InputError


def _fail(field: str, target: Path, why: str) -> InputError:
    return InputError(field, f"cannot write the results to {str(target)!r}: {why}")


def check_target(target: str | Path, field: str = "out") -> Path:
    """``target`` as a Path if it can become an output directory; an InputError naming ``field`` if not."""
    if target is None or str(target).strip() == "":
        raise InputError(field, "must name a directory, got an empty path")
    p = Path(target)
    if p.exists() and not p.is_dir():
        raise _fail(field, p, "it exists and is not a directory")
    anc = p if p.exists() else p.parent
    while not anc.exists():  # the nearest existing ancestor decides
        anc = anc.parent
    if not anc.is_dir():
        raise _fail(field, p, f"{str(anc)!r} is not a directory")
    try:  # can we create something there? (read-only, /proc, permissions)
        os.rmdir(tempfile.mkdtemp(prefix=".probe.", dir=anc))
    except OSError as err:
        raise _fail(field, p, f"{str(anc)!r} is not writable ({err.strerror or type(err).__name__})") from None
    return p


def _missing_parents(p: Path) -> list[Path]:
    out = []
    q = p.parent
    while not q.exists():
        out.append(q)
        q = q.parent
    return out


def _conflicts(src: Path, dst: Path) -> str | None:
    """A path in ``dst`` that a file of ``src`` cannot replace (a file where a directory goes, or vice versa)."""
    for entry in src.iterdir():
        there = dst / entry.name
        if not there.exists() and not there.is_symlink():
            continue
        if entry.is_dir() and there.is_dir() and not there.is_symlink():
            sub = _conflicts(entry, there)
            if sub:
                return sub
        elif entry.is_dir() or there.is_dir():
            return str(there)
    return None


def _merge(src: Path, dst: Path) -> None:
    """Move every entry of ``src`` into ``dst`` (replacing files of the same name)."""
    for entry in src.iterdir():
        there = dst / entry.name
        if entry.is_dir() and there.is_dir():
            _merge(entry, there)
        else:
            os.replace(entry, there)


@contextmanager
def staged_dir(target: str | Path, field: str = "out") -> Iterator[Path]:
    """Yield a temporary directory; on success its contents end up in ``target``.

    ``target`` may exist (a directory: files of the same name are replaced, others kept)
    or not (it is created, with its parents). Nothing is left behind on failure.
    """
    p = check_target(target, field)
    created = _missing_parents(p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name or 'out'}.", suffix=".partial", dir=p.parent))
        mask = os.umask(0)
        os.umask(mask)
        tmp.chmod(0o777 & ~mask)  # mkdtemp's 0700 would become the target's mode
    except OSError as err:
        _remove_dirs(created)
        raise _fail(field, p, err.strerror or type(err).__name__) from None
    try:
        yield tmp
        if p.exists():
            clash = _conflicts(tmp, p)
            if clash:
                raise _fail(field, p, f"{clash!r} is in the way (a directory where a file goes, or the reverse)")
            try:
                _merge(tmp, p)
            except OSError as err:
                raise _fail(field, p, err.strerror or type(err).__name__) from None
        else:
            try:
                os.replace(tmp, p)
            except OSError as err:
                raise _fail(field, p, err.strerror or type(err).__name__) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_dirs(created)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def _remove_dirs(dirs: list[Path]) -> None:
    for d in dirs:  # innermost first
        try:
            d.rmdir()
        except OSError:
            pass
