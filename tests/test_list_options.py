"""List-valued training options (``recompute_modules``, ``cuda_graph_scope``) have one parser
(:data:`carbonscaling.perf.options.LIST_OPTION_PARSERS`): TrainingOptions (hence the CLI and the
Python API) and the service's request models accept and refuse the same values, alike."""

from __future__ import annotations

from typing import get_origin

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from carbonscaling.perf.options import (CUDA_GRAPH_SCOPES, LIST_OPTION_PARSERS, RECOMPUTE_MODULES, TrainingOptions,
                                        parse_cuda_graph_scope, parse_recompute_modules)
from carbonscaling.specs import flat_fields

pytest.importorskip("fastapi")

from carbonscaling.service.schemas import EstimateRequest  # noqa: E402

NAMES = {"recompute_modules": RECOMPUTE_MODULES, "cuda_graph_scope": CUDA_GRAPH_SCOPES}


def test_every_list_valued_option_has_a_parser():
    tuple_fields = {n for n, (_, info) in flat_fields().items() if get_origin(info.annotation) is tuple}
    assert tuple_fields == set(LIST_OPTION_PARSERS) == set(NAMES)


def test_parsers_by_hand():
    assert parse_recompute_modules("mlp, mla_up_proj") == ("mla_up_proj", "mlp")  # Megatron's order
    assert parse_recompute_modules(["mlp", "mlp"]) == ("mlp",)
    assert parse_cuda_graph_scope("mlp,attn") == ("attn", "mlp")
    assert parse_cuda_graph_scope(" None ") == parse_cuda_graph_scope("") == parse_cuda_graph_scope([]) == ()
    with pytest.raises(ValueError, match="allowed: none, full_iteration, attn"):
        parse_cuda_graph_scope(3)
    with pytest.raises(ValueError, match="allowed: core_attn, moe_act"):
        parse_recompute_modules(None)


def _outcome(build):
    try:
        return "ok", build()
    except (ValidationError, ValueError):
        return "refused", None


values = st.one_of(
    st.lists(st.sampled_from(RECOMPUTE_MODULES + CUDA_GRAPH_SCOPES + ("bogus", "none", "")), max_size=4),
    st.lists(st.sampled_from(RECOMPUTE_MODULES + CUDA_GRAPH_SCOPES + ("bogus", "none", " ")), max_size=4)
    .map(",".join),
    st.none(), st.integers(), st.text(max_size=12))


@given(st.sampled_from(sorted(NAMES)), values)
def test_the_service_and_training_options_agree(field, value):
    opts = _outcome(lambda: getattr(TrainingOptions(**{field: value}), field))
    req = _outcome(lambda: tuple(getattr(EstimateRequest(**{field: value}), field)))
    assert opts == req
    if opts[0] == "ok":
        assert opts[1] == tuple(m for m in NAMES[field] if m in opts[1])  # one order: the allowed one
