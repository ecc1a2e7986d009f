"""Options that only act on MoE (or Mamba) layers change nothing on a dense model, as their help says.

``--overlap-ep-comm`` hides the expert all-to-all, which a dense model does not have; the
``moe``, ``moe_router``, ``moe_preprocess`` and ``mamba`` CUDA-graph scopes capture layers a
dense transformer does not have. The help text of both options says so (review of stop 16,
finding 10); these tests keep the statement true.
"""

from __future__ import annotations

import pytest

import carbonscaling as cs
from carbonscaling.specs import help_text

# Small layers on a fast device and microbatch 1: the host launch term binds when not graphed,
# so a scope that acted on these layers would show in the step time.
DENSE = {"d_model": 1024, "n_layers": 8, "seq_len": 2048, "tokens": 1e9, "name": "small-dense"}
PINS = {"devices": 8, "tp": 1, "pp": 2, "vp": 2, "microbatch": 1}


def _run(**options):
    out = cs.estimate(model=DENSE, device="B200", uncertainty=False, **PINS, **options).to_dict()
    return {k: out[k] for k in ("layout", "performance", "energy_kwh", "carbon")}


def test_host_launches_bind_here():
    # the case is sensitive: eager layers cost host time a full-iteration graph removes
    eager = _run(cuda_graph_scope="none")["performance"]["step_time_s"]
    graphed = _run(cuda_graph_scope="full_iteration")["performance"]["step_time_s"]
    assert eager > 1.05 * graphed


@pytest.mark.parametrize("scope", ["moe", "moe_router,moe_preprocess", "moe,moe_router,moe_preprocess,mamba"])
def test_moe_and_mamba_graph_scopes_are_inert_on_a_dense_model(scope):
    assert _run(cuda_graph_scope=scope) == _run(cuda_graph_scope="none")
    assert _run(cuda_graph_scope=f"attn,{scope}") == _run(cuda_graph_scope="attn")


@pytest.mark.parametrize("scope", ["none", "full_iteration"])
def test_ep_overlap_is_inert_on_a_dense_model(scope):
    assert _run(overlap_ep_comm=True, cuda_graph_scope=scope) == _run(cuda_graph_scope=scope)


def test_the_help_says_so():
    assert "no effect on a dense model" in help_text("overlap_ep_comm")
    assert "no effect on a dense model" in help_text("cuda_graph_scope")
