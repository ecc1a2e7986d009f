"""Model specs from the catalog, from mappings and from files.

* :func:`named_model`, :func:`catalog_entry`, :func:`model_names`: the named architectures
  of ``data/models.yaml``;
* :func:`model_from_mapping`: a mapping of ``ModelSpec`` fields, errors as :class:`InputError`;
* :func:`model_from_file`: a user YAML file (:func:`gated_shape_warning` on gated-looking
  shapes); :func:`example_model_file`: the shipped, commented examples.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ._data import load_yaml, read_user_yaml
from .errors import InputError, UnknownNameError, from_validation
from .model_spec import ModelSpec


_CATALOG_META = {"display_name", "source", "notes", "reported_params", "reported_active_params", "aliases"}


def _catalog() -> dict[str, dict]:
    return load_yaml("models.yaml")["models"]


def model_names() -> list[str]:
    """The named architectures of ``data/models.yaml``.

    Returns
    -------
    list of str
        Sorted catalog keys (aliases not included).
    """
    return sorted(_catalog())


def catalog_entry(name: str) -> dict:
    """The raw catalog record (fields plus ``source``/``notes``) of a named model.

    Parameters
    ----------
    name : str
        Catalog key or alias, case-insensitive.

    Returns
    -------
    dict
        The ``models.yaml`` entry.

    Raises
    ------
    UnknownNameError
        No such model (the message lists the known names).
    """
    cat = _catalog()
    key = name.strip().lower()
    if key in cat:
        return cat[key]
    for k, v in cat.items():
        if key in [a.lower() for a in v.get("aliases", [])]:
            return v
    raise UnknownNameError("model", name, cat)


def named_model(name: str) -> ModelSpec:
    """The ``ModelSpec`` of a named architecture.

    Parameters
    ----------
    name : str
        Catalog key or alias (:func:`model_names`).

    Returns
    -------
    ModelSpec
        Validated spec (origin ``models.yaml[key]``).
    """
    entry = catalog_entry(name)
    key = next(k for k, v in _catalog().items() if v is entry)
    fields = {k: v for k, v in entry.items() if k not in _CATALOG_META}
    return model_from_mapping({"name": key, **fields}, origin=f"models.yaml[{key}]")


def _validation_to_input_error(err: ValidationError, origin: str) -> InputError:
    names = [k for k in ModelSpec.model_fields if k not in {"preset", "law_params", "law_train_flops"}]
    e = from_validation(err, extra=f"unknown field (allowed: {', '.join(names)})", known=names)
    return InputError(e.field or origin, e.message)


def model_from_mapping(data: dict, *, origin: str = "model") -> ModelSpec:
    """Validate a mapping of ``ModelSpec`` fields; errors become :class:`InputError`.

    Parameters
    ----------
    data : dict
        ``ModelSpec`` field names to values (numeric strings are read as numbers).
    origin : str, optional
        Field name reported in errors about the whole mapping (default ``'model'``).

    Returns
    -------
    ModelSpec
        The validated spec.
    """
    if not isinstance(data, dict):
        raise InputError(origin, f"must be a mapping of ModelSpec fields, got "
                                 f"{'an empty file' if data is None else type(data).__name__}")
    clean = {k: (_coerce_number(v) if k not in {"name", "preset", "loss_law"} else v) for k, v in data.items()}
    try:
        return ModelSpec(**clean)
    except ValidationError as err:
        raise _validation_to_input_error(err, origin) from None
    except ValueError as err:  # pragma: no cover - pydantic wraps these; kept as a guard
        raise InputError(origin, str(err)) from None


def _coerce_number(v: Any) -> Any:
    """YAML reads ``1.5e12`` as a string; accept numeric strings, and floats that are integers."""
    if isinstance(v, bool):
        return str(v).lower()  # a boolean is not a number: let validation name the field
    if isinstance(v, str) and v.isascii():  # '١٢' is not read as 12 (see cli.number)
        try:
            v = float(v)
        except ValueError:
            return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def model_from_file(path: str | Path) -> ModelSpec:
    """Read a user model file (YAML, optionally under a top-level ``model:`` key).

    File size and YAML complexity are limited (:func:`carbonscaling._data.read_user_yaml`);
    a gated-looking FFN without ``ffn_gated`` warns (:func:`gated_shape_warning`).

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    ModelSpec
        Named after the file's stem unless it gives a ``name``.

    Raises
    ------
    InputError
        Naming ``model_file.FIELD``.
    """
    p = Path(path)
    data = read_user_yaml(p, "model_file")
    data = data.get("model", data) if isinstance(data, dict) else data
    try:
        spec = model_from_mapping(data, origin="model_file")
    except InputError as err:
        if err.field.startswith("model_file"):
            raise
        raise InputError(f"model_file.{err.field}", err.message) from None
    spec = spec if spec.name != "custom" else spec.model_copy(update={"name": p.stem})
    msg = gated_shape_warning(data, spec)
    if msg:
        import warnings

        from .errors import CarbonScalingWarning

        warnings.warn(f"model_file: {msg}", CarbonScalingWarning, stacklevel=2)
    return spec


EXAMPLE_MODEL_FILES = {"dense": "model.yaml", "moe": "model_moe.yaml"}


def example_model_file(kind: str = "dense") -> str:
    """The text of a shipped, commented example model file (``carbonscaling/examples/``).

    Parameters
    ----------
    kind : {'dense', 'moe'}, optional
        Llama-3.1-8B-shaped dense model (default) or Mixtral-shaped MoE.

    Returns
    -------
    str
        YAML text.
    """
    from importlib import resources

    if kind not in EXAMPLE_MODEL_FILES:
        raise InputError("example", f"must be one of {', '.join(EXAMPLE_MODEL_FILES)}, got {kind!r}")
    return (resources.files("carbonscaling") / "examples" / EXAMPLE_MODEL_FILES[kind]).read_text(encoding="utf-8")


def gated_shape_warning(data: dict, spec: ModelSpec) -> str | None:
    """A warning when a model looks gated but does not say ``ffn_gated``.

    Gated means d_ff 2.5..3.75 x d_model: SwiGLU's 8/3 rounded up, as in Llama's 2.7-3.5.

    Parameters
    ----------
    data : dict
        The mapping as the user wrote it.
    spec : ModelSpec
        The spec it validated to.

    Returns
    -------
    str or None
        The message naming both parameter counts, or None.
    """
    if not isinstance(data, dict) or "ffn_gated" in data or "d_ff" not in data:
        return None
    ratio = spec.d_ff / spec.d_model
    if not 2.5 <= ratio <= 3.75:
        return None
    gated = spec.model_copy(update={"ffn_gated": True})
    return (f"d_ff = {ratio:.2f} x d_model is a gated-FFN (SwiGLU) shape but ffn_gated is not given: read as a "
            f"plain 2-matrix FFN, {spec.params_total:.3g} parameters; with ffn_gated: true it would be "
            f"{gated.params_total:.3g}")
