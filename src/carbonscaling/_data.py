"""Access to the package's cited data files (``carbonscaling/data``)."""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


def data_path(name: str):
    return resources.files("carbonscaling") / "data" / name


@lru_cache(maxsize=None)
def load_yaml(name: str) -> Any:
    with data_path(name).open("r", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@lru_cache(maxsize=None)
def load_csv(name: str) -> tuple[dict[str, str], ...]:
    with data_path(name).open("r", encoding="utf-8", newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if not (row and next(iter(row.values()), "").startswith("#"))]
    return tuple(rows)
