"""What a spec field is and what it says about itself: the base of :mod:`carbonscaling.specs`.

* :func:`option` declares a field (description = CLI help, CLI name, metavar, alias, range);
  :class:`SpecModel` is the frozen base class of the parts (numbers must be numbers, choices
  folded to the field's spelling);
* pure readers of one field's metadata: :func:`number_kind`, :func:`bounds`, :func:`range_text`,
  :func:`choices`, :func:`fold_choice`, :func:`metavar`, :func:`data_default_text`;
* derived schemas: :func:`partial` / :func:`partial_fields`, a part with every field optional
  (a scenario's overrides).

Nothing here knows the parts of a run (:class:`~carbonscaling.specs.RunSpec`); what needs them
(flat names, help text, error lines, the CLI blocks) is in :mod:`carbonscaling.specs`, which
re-exports every name defined here.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal, Optional, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic.fields import FieldInfo

_CONFIG = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, populate_by_name=True,
                     arbitrary_types_allowed=True)


def option(default: Any, help: str, *, cli: str | None = None, metavar: str | None = None,
           alias: tuple[str, str] | None = None, **constraints: Any) -> Any:
    """A spec field: ``help`` is its description (CLI help, docs, scenario schema); ``cli``
    its option name (default ``--`` + the name with dashes); ``alias`` a second accepted name."""
    extra = {k: v for k, v in (("cli", cli), ("metavar", metavar), ("alias", alias and alias[1])) if v}
    if alias:  # (field name, second name)
        constraints["validation_alias"] = AliasChoices(*alias)
    return Field(default, description=help, json_schema_extra=extra or None, **constraints)


class SpecModel(BaseModel):
    """Frozen, no unknown fields, no inf/NaN; numbers must be numbers (not text or booleans)."""

    model_config = _CONFIG

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info) -> Any:
        field = cls.model_fields[info.field_name]
        kind = number_kind(field)
        if kind and value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise ValueError(f"must be {_kind_text(kind)}")
        return fold_choice(field, value)


# ---- field metadata ------------------------------------------------------------------------
def number_kind(info: FieldInfo) -> str | None:
    """``"int"`` / ``"float"`` for a numeric field (optional or not), else None."""
    ann = info.annotation
    args = [a for a in get_args(ann) if a is not type(None)] if get_origin(ann) is Union else [ann]
    if len(args) == 1 and args[0] in (int, float):
        return args[0].__name__
    return None


def bounds(info: FieldInfo) -> tuple[float | None, float | None, bool, bool]:
    """``(lo, hi, lo_open, hi_open)`` of a numeric field's constraints."""
    lo = hi = None
    lo_open = hi_open = False
    for m in info.metadata:
        for attr, is_lo, is_open in (("ge", True, False), ("gt", True, True), ("le", False, False),
                                     ("lt", False, True)):
            v = getattr(m, attr, None)
            if v is None:
                continue
            if is_lo:
                lo, lo_open = v, is_open
            else:
                hi, hi_open = v, is_open
    return lo, hi, lo_open, hi_open


def _fmt(x: float) -> str:
    return f"{x:g}".replace("e+0", "e").replace("e+", "e")


def range_text(info: FieldInfo) -> str:
    """``[1, 3]``, ``(0, 50]``, ... or ``""`` for a field without numeric bounds."""
    lo, hi, lo_open, hi_open = bounds(info)
    if lo is None and hi is None:
        return ""
    return (f"{'(' if lo_open or lo is None else '['}{'-inf' if lo is None else _fmt(lo)}, "
            f"{'inf' if hi is None else _fmt(hi)}{')' if hi_open or hi is None else ']'}")


def choices(info: FieldInfo) -> tuple[Any, ...]:
    """The allowed values of a ``Literal`` field (optional or not), else ``()``."""
    ann = info.annotation
    args = [a for a in get_args(ann) if a is not type(None)] if get_origin(ann) is Union else [ann]
    return get_args(args[0]) if len(args) == 1 and get_origin(args[0]) is Literal else ()


def fold_choice(info: FieldInfo, value: Any) -> Any:
    """A choice in any case as the field spells it (``'Full'`` -> ``'full'``), like device and
    region names; anything else unchanged (validation words the error)."""
    if not isinstance(value, str):
        return value
    by_lower = {c.lower(): c for c in choices(info) if isinstance(c, str)}
    return by_lower.get(value.strip().lower(), value)


#: Options whose default lives in a data file: ``{name: (file, path of keys, unit)}``; their
#: help states the value (regenerated, so the drift tests notice when a data file changes).
_DATA_DEFAULTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "ci": ("power.yaml", ("defaults", "ci_g_per_kwh"), " g/kWh"),
    "pue": ("power.yaml", ("defaults", "pue"), ""),
    "lifetime_years": ("power.yaml", ("defaults", "lifetime_years"), " years"),
    "alpha": ("power.yaml", ("alpha",), ""),
    "restart_minutes": ("goodput.yaml", ("restart_minutes", "value"), " min"),
    "checkpoint_minutes": ("goodput.yaml", ("checkpoint_minutes", "value"), " min"),
    "wue_l_per_kwh": ("water.yaml", ("defaults", "wue_l_per_kwh"), " L/kWh"),
    "ewif_l_per_kwh": ("water.yaml", ("defaults", "ewif_l_per_kwh"), " L/kWh"),
}


def data_default_text(name: str) -> str | None:
    """``"1.1, data/power.yaml"``: the value of a data-file default and where it lives."""
    if name not in _DATA_DEFAULTS:
        return None
    from ._data import load_yaml

    file, keys, unit = _DATA_DEFAULTS[name]
    value: Any = load_yaml(file)
    for k in keys:
        value = value[k]
    return f"{_fmt(float(value))}{unit}, data/{file}"


def _kind_text(kind: str) -> str:
    return "a whole number" if kind == "int" else "a finite number"


def metavar(info: FieldInfo) -> str:
    """The CLI metavar: the field's own, the choices of a Literal (``fastest|carbon``), or ``X``."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("metavar"):
        return extra["metavar"]
    ann = info.annotation
    args = [a for a in get_args(ann) if a is not type(None)] if get_origin(ann) is Union else [ann]
    if len(args) == 1 and get_origin(args[0]) is Literal:  # a short choice list, else the help lists it
        choices = get_args(args[0])
        return "|".join(str(a) for a in choices) if len(choices) <= 4 else "NAME"
    return "N" if number_kind(info) == "int" else "X"


# ---- derived schemas -----------------------------------------------------------------------
def partial_fields(cls: type[BaseModel], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """``cls``'s fields as ``create_model`` arguments, each optional with default None
    (constraints, aliases and descriptions kept): a scenario's overrides of a part."""
    fields: dict[str, Any] = {}
    for fname, info in cls.model_fields.items():
        if fname in exclude:
            continue
        ann = info.annotation
        opt = ann if get_origin(ann) is Union and type(None) in get_args(ann) else Optional[ann]
        kw: dict[str, Any] = {"description": info.description}
        if isinstance(info.validation_alias, AliasChoices):
            kw["validation_alias"] = info.validation_alias
        field = Field(None, **kw)
        field.metadata = list(info.metadata)
        fields[fname] = (opt, field)
    return fields


def partial(cls: type[BaseModel], name: str, module: str) -> type[BaseModel]:
    """``cls`` with every field optional (see :func:`partial_fields`) and its field validators
    (e.g. precision aliases), as class ``module.name`` (assign it to that name there, so that it
    pickles)."""
    return create_model(name, __base__=SpecModel, __module__=module, __validators__=_field_validators(cls),
                        **partial_fields(cls))


def _field_validators(cls: type[BaseModel]) -> dict[str, Any]:
    """``cls``'s field validators, re-decorated for another class (they are bound to ``cls``)."""
    import inspect

    out = {}
    for vname, dec in cls.__pydantic_decorators__.field_validators.items():
        bound = dec.func
        takes_info = len(inspect.signature(bound).parameters) > 1

        def call(_cls, value, info, _f=bound, _info=takes_info):
            return _f(value, info) if _info else _f(value)

        out[vname] = field_validator(*dec.info.fields, mode=dec.info.mode)(classmethod(call))
    return out
