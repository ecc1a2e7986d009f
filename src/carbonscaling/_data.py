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


# libyaml's C parser where installed (PyYAML wheels ship it): ~50x faster on large files
_SafeBase = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeBase):  # type: ignore[valid-type, misc]
    """PyYAML's safe loader, reading ``1e11`` and ``2.5E-3`` as numbers (YAML 1.2), not text."""


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


# Limits on what a user's file may cost before it is validated (a model, device or scenario
# file is a few kB; the largest shipped YAML, data/models.yaml, is 22 kB and 826 values).
MAX_USER_FILE_BYTES = 1_000_000
MAX_YAML_NODES = 20_000      # counted with every alias expanded (a "billion laughs" file)
MAX_YAML_DEPTH = 64          # nested mappings/sequences (PyYAML's composer recurses)


def _event_check(text: str, depth_limit: int, count_limit: int) -> str | None:
    """What is wrong with the event stream, if anything: collections nested deeper than
    ``depth_limit`` (PyYAML's composer recurses) or more than ``count_limit`` events.
    The event parser does not recurse, and this stops at the first excess."""
    depth = count = 0
    for ev in yaml.parse(text, Loader=_Loader):
        count += 1
        if count > count_limit:
            return f"has more than {MAX_YAML_NODES:,} YAML values"
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > depth_limit:
                return f"nests mappings/lists more than {depth_limit} levels deep"
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    return None


def _expanded_nodes(node: yaml.Node, limit: int) -> int:
    """How many nodes ``node`` has with every alias expanded, counting shared subtrees once per
    use (memoized, so a nine-level alias bomb is counted in microseconds); stops past ``limit``."""
    memo: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        memo[key] = limit + 1  # a recursive alias counts as too large
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in n.value)
        else:
            total = 1
        memo[key] = min(total, limit + 1)
        return memo[key]

    return size(node)


def parse_user_yaml(text: str, field: str, name: str = "the file") -> Any:
    """Parse YAML a user gave (file or request body) within the size and alias limits;
    any problem is one :class:`InputError` naming ``field``."""
    if len(text) > MAX_USER_FILE_BYTES:
        raise InputError(field, f"{name} is larger than {MAX_USER_FILE_BYTES:,} bytes")
    try:
        problem = _event_check(text, MAX_YAML_DEPTH, 2 * MAX_YAML_NODES)
        if problem:
            raise InputError(field, f"{name} {problem}")
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if _expanded_nodes(node, MAX_YAML_NODES) > MAX_YAML_NODES:
                raise InputError(field, f"{name} has more than {MAX_YAML_NODES:,} YAML values "
                                        "(counting every alias expanded)")
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except (yaml.YAMLError, RecursionError) as err:
        if "nesting depth" in str(err):  # libyaml >= 0.2.5 stops deep flow collections itself
            raise InputError(field, f"{name} nests mappings/lists more than {MAX_YAML_DEPTH} levels deep") from None
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise InputError(field, f"{name} is not valid YAML{where}") from None


def read_user_text(path: str | Path, field: str) -> str:
    """A user's text file (UTF-8, at most ``MAX_USER_FILE_BYTES``); problems name ``field``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(field, f"no such file: {str(p)!r}")
    try:
        size = p.stat().st_size
        if size > MAX_USER_FILE_BYTES:
            raise InputError(field, f"{p.name} is {size:,} bytes; the limit is {MAX_USER_FILE_BYTES:,}")
        with p.open("r", encoding="utf-8") as fh:
            text = fh.read(MAX_USER_FILE_BYTES + 1)  # a file that grew since stat()
    except UnicodeDecodeError:
        raise InputError(field, f"{p.name} is not UTF-8 text") from None
    except OSError as err:
        raise InputError(field, f"cannot read {str(p)!r}: {err.strerror or type(err).__name__}") from None
    if len(text) > MAX_USER_FILE_BYTES:
        raise InputError(field, f"{p.name} is larger than {MAX_USER_FILE_BYTES:,} bytes")
    return text


def read_user_yaml(path: str | Path, field: str) -> Any:
    """Parse a user's YAML file; a missing, oversized or malformed file is an InputError naming ``field``."""
    p = Path(path)
    return parse_user_yaml(read_user_text(p, field), field, p.name)
