"""Stage 1: model specs from scaling laws or named architectures.

A :class:`ModelSpec` is an immutable description of a transformer and its
training budget. It comes from

* a named architecture in ``data/models.yaml`` (:func:`named_model`),
* a scaling-law preset and ``d_model`` (:func:`from_preset`), or
* a user mapping / YAML file whose keys are ``ModelSpec`` field names
  (:func:`model_from_mapping`, :func:`model_from_file`).

:func:`resolve_model` accepts any of these. Derived quantities (parameter
counts, FLOPs, loss, critical batch) are properties, computed from the fields.

The code lives in four modules, every name importable from this one:
:mod:`carbonscaling.model_spec` (the ``ModelSpec`` type and its derived properties),
:mod:`carbonscaling.scaling_laws` (loss laws, critical batch, preset rules),
:mod:`carbonscaling.model_catalog` (the catalog, mappings and files) and this module
(the presets' models and :func:`resolve_model`).
"""

from __future__ import annotations

from functools import lru_cache

import math
from pathlib import Path

from .errors import InputError
from .model_catalog import (  # noqa: F401  (re-exported: the old home of these names)
    EXAMPLE_MODEL_FILES,
    _CATALOG_META,
    _catalog,
    _coerce_number,
    _validation_to_input_error,
    catalog_entry,
    example_model_file,
    gated_shape_warning,
    model_from_file,
    model_from_mapping,
    model_names,
    named_model,
)
from .model_spec import LossLaw, ModelSpec, PositiveInt  # noqa: F401
from .scaling_laws import (  # noqa: F401
    _preset_rules,
    chinchilla_loss,
    critical_batch_tokens,
    fine_grained_moe_loss,
    preset_names,
)


# ---- presets ---------------------------------------------------------------
def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def from_preset(preset: str, d_model: int, *, seq_len: int | None = None) -> ModelSpec:
    """Build the scaling-law model of ``preset`` at width ``d_model`` (CarbonScaling v1/v2 section 3).

    A width whose derived fields (tokens, batch...) leave their ranges is an error naming
    ``d_model`` and the preset's largest valid width (:func:`max_preset_d_model`).

    Parameters
    ----------
    preset : str
        A name from :func:`preset_names`.
    d_model : int
        Hidden size, an integer in [128, 10,000,000].
    seq_len : int, optional
        Tokens per sequence (default: the preset's).

    Returns
    -------
    ModelSpec
        Layers, experts, tokens (``tokens_per_param x N``), FLOPs ``6 N D / E``, critical
        batch and loss law of the preset at that width.

    Raises
    ------
    InputError
        ``d_model`` out of range, directly or through a derived field.

    References
    ----------
    Jiang and Chen, CarbonScaling v1 (Fig. 2) and v2 (Sec. 4, 5.1).
    """
    rule = _preset_rules(preset)
    if isinstance(d_model, bool) or not isinstance(d_model, (int, float)) or not math.isfinite(d_model):
        raise InputError("d_model", f"must be a finite integer in [128, 10000000], got {d_model!r}")
    if d_model != int(d_model) or not 128 <= d_model <= 10_000_000:
        raise InputError("d_model", f"must be an integer in [128, 10000000], got {d_model!r}")
    try:
        return _preset_model(preset, rule, int(d_model), seq_len)
    except InputError as err:  # a derived field out of range: name the field the user gave
        if err.field in ("d_model", "seq_len"):
            raise
        hi, hd = max_preset_d_model(preset), rule["head_dim"]
        raise InputError("d_model", f"{int(d_model)} implies {err.field} out of range ({err.message}); preset "
                                    f"{preset!r} allows multiples of {hd} up to {hi}") from None


@lru_cache(maxsize=None)
def max_preset_d_model(preset: str) -> int:
    """The largest width of a preset whose derived fields are all in range.

    The largest multiple of the preset's head dimension whose derived fields (tokens,
    batch...) are all in range, found by bisection (they grow with the width). Other
    widths have one head of ``d_model`` dimensions, which stops being valid past 1,000,000.

    Parameters
    ----------
    preset : str
        A name from :func:`preset_names`.

    Returns
    -------
    int
        ``d_model`` (a multiple of the preset's head dimension).
    """
    rule = _preset_rules(preset)
    hd = int(rule["head_dim"])

    def ok(k: int) -> bool:
        try:
            _preset_model(preset, rule, k * hd, None)
        except InputError:
            return False
        return True

    lo, hi = 128 // hd, 10_000_000 // hd
    if ok(hi):
        return hi * hd
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo * hd


def _preset_model(preset: str, rule: dict, d: int, seq_len: int | None) -> ModelSpec:
    d_ff = rule["d_ff_ratio"] * d
    n_layers = max(1, _round_half_up(rule["layers_coef"] * d ** rule["layers_exp"]))
    n_experts = max(1, _round_half_up(rule["expert_ref_count"] * d / rule["expert_ref_d_model"]))
    if 2 * d * d_ff * n_layers < rule["dense_below_params"]:
        n_experts = 1
    n_law = 2.0 * d * d_ff * n_layers * n_experts
    tokens = rule["tokens_per_param"] * n_law
    flops = 6.0 * n_law * tokens / n_experts
    seq = seq_len or rule["seq_len"]
    head_dim = rule["head_dim"] if d % rule["head_dim"] == 0 else d
    return model_from_mapping(dict(
        name=f"{preset}-d{d}",
        preset=preset,
        d_model=d,
        n_layers=n_layers,
        n_heads=d // head_dim,
        d_ff=d_ff,
        vocab=rule["vocab"],
        n_experts=n_experts,
        top_k=1,
        seq_len=seq,
        tokens=tokens,
        global_batch_tokens=critical_batch_tokens(flops, n_experts, rule, seq),
        law_params=n_law,
        law_train_flops=flops,
        loss_law=rule["loss"],
    ), origin="d_model")


def resolve_model(model: str | Path | dict | ModelSpec) -> ModelSpec:
    """A ``ModelSpec`` from a spec, a mapping, a YAML path, or a catalog name.

    Parameters
    ----------
    model : ModelSpec, dict, str or Path
        A spec (returned as is), a mapping of fields, a ``.yaml``/``.yml`` path, or a name.

    Returns
    -------
    ModelSpec
        The spec.
    """
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, dict):
        return model_from_mapping(model)
    if isinstance(model, Path) or (isinstance(model, str) and model.endswith((".yaml", ".yml"))):
        return model_from_file(model)
    if isinstance(model, str):
        return named_model(model)
    raise InputError("model", f"expected a name, a YAML path, a mapping or a ModelSpec, got {type(model).__name__}")
