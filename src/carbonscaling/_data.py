"""Access to the package's cited data files (``carbonscaling/data``)."""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError


def data_path(name: str):
    return resources.files("carbonscaling") / "data" / name


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader (libyaml's C parser where installed: 10x faster on the catalogs,
    which `carbonscaling devices` start-up paid for), reading ``1e11`` and ``2.5E-3`` as
    numbers (YAML 1.2), not text."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


@lru_cache(maxsize=None)
def load_yaml(name: str) -> Any:
    return parse_yaml(data_path(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def load_csv(name: str) -> tuple[dict[str, str], ...]:
    with data_path(name).open("r", encoding="utf-8", newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if not (row and next(iter(row.values()), "").startswith("#"))]
    return tuple(rows)


def read_user_yaml(path: str | Path, field: str) -> Any:
    """Parse a user's YAML file; a missing or malformed file is an InputError naming ``field``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(field, f"no such file: {str(p)!r}")
    try:
        return parse_yaml(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise InputError(field, f"{p.name} is not valid YAML{where}") from None
