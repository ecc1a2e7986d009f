"""Public functions of the physics modules carry numpydoc docstrings (issue 13, item 11).

Rules (numpydoc's): a function or method has a ``Returns`` (or ``Yields``) section and, if
it takes arguments, a ``Parameters`` section that names every one of them; a property has a
one-line summary (numpydoc documents properties as attributes). "Public" means defined in
the module (not re-exported) with a name that does not start with ``_``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from functools import cached_property

import pytest

import carbonscaling.perf

MODULES = sorted(["carbonscaling.carbon", "carbonscaling.scaling", "carbonscaling.model_spec", "carbonscaling.model_rules",
                  "carbonscaling.scaling_laws", "carbonscaling.model_catalog", "carbonscaling.carbon_operational",
                  "carbonscaling.carbon_embodied", "carbonscaling.carbon_result",
                  *(f"carbonscaling.perf.{m.name}" for m in pkgutil.iter_modules(carbonscaling.perf.__path__))])


def sections(doc: str) -> dict[str, list[str]]:
    """``{title: lines}`` of a numpydoc docstring (a title is underlined with dashes)."""
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, list[str]] = {}
    current = None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line.strip() and re.fullmatch(r"-{3,}", lines[i + 1].strip()) \
                and len(lines[i + 1].strip()) == len(line.strip()):
            current = line.strip()
            out[current] = []
        elif current is not None and not re.fullmatch(r"-{3,}", line.strip()):
            out[current].append(line)
    return out


def documented_names(param_lines: list[str]) -> set[str]:
    """Parameter names of a Parameters section: unindented ``a, b : type`` (or bare ``a``) lines."""
    names: set[str] = set()
    for line in param_lines:
        if line and not line[0].isspace():
            head = line.split(" : ")[0]
            names |= {n.strip().lstrip("*") for n in head.split(",") if n.strip()}
    return names


def public_callables():
    """``(qualified name, object, kind)`` for every public function, method and property."""
    for modname in MODULES:
        mod = importlib.import_module(modname)
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != modname:
                continue
            if inspect.isfunction(obj):
                yield f"{modname}.{name}", obj, "function"
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or getattr(member, "__name__", attr).startswith("_"):
                        continue  # private, or a public alias of a private helper (FrozenDict.update)
                    qual = f"{modname}.{name}.{attr}"
                    if isinstance(member, (property, cached_property)):
                        yield qual, member, "property"
                    elif isinstance(member, (classmethod, staticmethod)):
                        yield qual, member.__func__, "function"
                    elif inspect.isfunction(member):
                        yield qual, member, "function"


CALLABLES = list(public_callables())


def test_the_modules_have_many_public_functions():
    # a guard against the collection silently finding nothing (e.g. a renamed package)
    kinds = [k for _, _, k in CALLABLES]
    assert kinds.count("function") >= 60 and kinds.count("property") >= 20


def problems(qual: str, obj, kind: str) -> list[str]:
    """What is missing from ``obj``'s docstring under the rules above."""
    doc = obj.__doc__ or ""
    if not doc.strip():
        return [f"{qual}: no docstring"]
    if kind == "property":
        return []
    secs = sections(doc)
    out = [] if ("Returns" in secs or "Yields" in secs) else [f"{qual}: no Returns section"]
    params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
    if params and "Parameters" not in secs:
        out.append(f"{qual}: no Parameters section for {params}")
    elif params:
        missing = set(params) - documented_names(secs["Parameters"])
        if missing:
            out.append(f"{qual}: parameters not documented: {sorted(missing)}")
    return out


@pytest.mark.parametrize("qual,obj,kind", CALLABLES, ids=[q for q, _, _ in CALLABLES])
def test_numpydoc_docstring(qual, obj, kind):
    assert problems(qual, obj, kind) == []


def test_the_rules_catch_a_bad_docstring():
    def no_doc(x):
        return x

    def one_liner(x, y):
        """Sum."""
        return x + y

    def half_documented(x, y):
        """Sum.

        Parameters
        ----------
        x : float
            A number.

        Returns
        -------
        float
            The sum.
        """
        return x + y

    assert problems("f", no_doc, "function") == ["f: no docstring"]
    assert problems("f", one_liner, "function") == ["f: no Returns section", "f: no Parameters section for ['x', 'y']"]
    assert problems("f", half_documented, "function") == ["f: parameters not documented: ['y']"]
    assert problems("p", one_liner, "property") == []


def test_the_parser_on_a_hand_written_docstring():
    doc = """Summary.

    Parameters
    ----------
    a, b : float
        Two numbers (m).
    **kw : float
        More.

    Returns
    -------
    float
        Their sum (m).
    """
    secs = sections(doc)
    assert set(secs) == {"Parameters", "Returns"}
    assert documented_names(secs["Parameters"]) == {"a", "b", "kw"}
    assert sections("Summary only.") == {}
