"""Host launch time without CUDA graphs (perf/host.py, data/host.yaml), against hand calculations."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import host, step
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import ModelSpec, named_model

from helpers import layout_grids

C = default_constants()
T = C.host_per_launch_s
H100 = load_system("H100-SXM")
# A small model whose layers the host cannot keep the GPU busy on (eager launch-bound).
TINY = ModelSpec(d_model=256, n_layers=4, n_heads=4, n_kv_heads=4, head_dim=64, d_ff=1024, vocab=1024, seq_len=128,
                 tokens=1e9, global_batch_tokens=8 * 128, ffn_gated=True, tied_embeddings=False, name="tiny")
TINY_MOE = TINY.model_copy(update={"n_experts": 8, "top_k": 2, "d_expert": 256, "moe_layer_every": 1,
                                   "first_dense_layers": 0, "name": "tiny-moe"})


_grid = layout_grids(tp=1, pp=1, dp=1, microbatch=1, global_batch_sequences=8)


def test_constants_are_the_sum_of_the_two_sourced_parts():
    assert T == pytest.approx(4.5e-6 + 5.0e-6)
    assert C.host_launches_attention == (6, 9) and C.host_launches_dense_mlp == (5, 8)
    assert C.host_launches_per_local_expert == (2, 4)


def test_host_constants_come_from_host_yaml_through_perf_constants():
    from carbonscaling._data import load_yaml

    y = load_yaml("host.yaml")
    assert C.host_per_launch_s == y["per_launch_s"]["value"]
    assert C.host_syncs_per_moe_layer_forward == y["syncs_per_moe_layer_forward"]["value"]
    for name, entry in y["launches"].items():
        assert getattr(C, f"host_launches_{name}") == tuple(entry["value"])
    # the host term follows the constants it is given (sensitivity studies replace them)
    g, o = _grid(), TrainingOptions(cuda_graph_scope="none")
    slow = C.replace(host_per_launch_s=2 * T)
    lt1 = step.layer_times(TINY, H100, g, o, C, moe=False)
    lt2 = step.layer_times(TINY, H100, g, o, slow, moe=False)
    f, b = 6 + 5, 9 + 8  # host-bound (test_eager_layer_pays_exactly_the_hand_host_excess)
    assert float(lt1.time0[0]) == pytest.approx((f + b) * T, rel=1e-12)
    assert float(lt2.time0[0]) == pytest.approx((f + b) * 2 * T, rel=1e-12)
    hash(C)  # tuples, not lists: the search's candidate cache keys on the constants


def test_launch_counts_by_hand():
    tp1, tp2 = np.array([1]), np.array([2])
    f, b = host.layer_launches("attention", "dense", 0.0, tp1, ())
    assert (f[0], b[0]) == (6 + 5, 9 + 8)
    f, b = host.layer_launches("attention", "dense", 0.0, tp2, ())  # SP all-gather + reduce-scatter per block
    assert (f[0], b[0]) == (6 + 5 + 4, 9 + 8 + 4)
    f, b = host.layer_launches("attention", "moe", np.array([4.0]), tp1, ())
    assert (f[0], b[0]) == (6 + 3 + 4 + 8 + 2 * 4, 9 + 3 + 0 + 8 + 4 * 4)
    # per-layer graphs: each graphed part is one graph launch (none for a part without backward)
    f, b = host.layer_launches("attention", "moe", np.array([4.0]), tp1, ("attn", "moe_router", "moe_preprocess"))
    assert (f[0], b[0]) == (1 + 1 + 1 + 8 + 2 * 4, 1 + 1 + 0 + 8 + 4 * 4)
    f, b = host.layer_launches("attention", "moe", np.array([4.0]), tp1, ("attn", "moe"))
    assert (f[0], b[0]) == (2, 2)
    f, b = host.layer_launches("mamba", None, 0.0, tp1, ())
    assert (f[0], b[0]) == (11, 20)


def test_syncs_only_for_a_dispatching_ungraphed_moe_layer():
    assert host.host_syncs("moe", np.array([8]), ())[0] == 1.0
    assert host.host_syncs("moe", np.array([1]), ())[0] == 0.0  # no dispatch across ranks
    assert host.host_syncs("moe", np.array([8]), ("moe",))[0] == 0.0
    assert host.host_syncs("dense", np.array([8]), ())[0] == 0.0


def test_region_time_is_max_of_gpu_and_host_plus_syncs():
    gpu = np.array([1e-3, 1e-5])
    out = host.host_bound_time(gpu, np.array([50.0, 50.0]), np.array([1.0, 0.0]), 1e-5)
    assert out[0] == pytest.approx(1e-3 + 1e-5)  # GPU-bound: only the sync's refill
    assert out[1] == pytest.approx(50 * 1e-5)    # host-bound


@pytest.mark.parametrize("moe", [False, True])
def test_eager_layer_pays_exactly_the_hand_host_excess(moe):
    m = TINY_MOE if moe else TINY
    g = _grid(dp=8, ep=4 if moe else 1, microbatch=1)
    graphed = step.layer_times(m, H100, g, TrainingOptions(), C, moe=moe)
    eager = step.layer_times(m, H100, g, TrainingOptions(cuda_graph_scope="none"), C, moe=moe)
    assert float(graphed.host0[0]) == 0.0
    gpu0 = float(graphed.time0[0])
    gpu1 = gpu0 + float(graphed.extra[0])
    f = 6 + (3 + 4 + 8 + 2 * 2 if moe else 5)  # 8 experts over EP 4: 2 local
    b = 9 + (3 + 0 + 8 + 4 * 2 if moe else 8)
    s = 1.0 if moe else 0.0
    want0 = max(gpu0, (f + b) * T) + s * T
    want1 = max(gpu1, (2 * f + b) * T) + 2 * s * T
    # the dense case is host-bound; the MoE case GPU-bound (per-expert overheads): both sides of the max
    assert ((f + b) * T > gpu0) is (not moe)
    assert float(eager.time0[0]) == pytest.approx(want0, rel=1e-12)
    assert float(eager.time0[0] + eager.extra[0]) == pytest.approx(want1, rel=1e-12)
    assert float(eager.host0[0]) == pytest.approx(want0 - gpu0, rel=1e-12)
    assert float(eager.compute0[0]) == pytest.approx(float(graphed.compute0[0]))  # compute itself unchanged


def test_step_books_the_host_wait_and_grows_by_it():
    g = _grid(dp=1)
    o_graph, o_eager = TrainingOptions(), TrainingOptions(cuda_graph_scope=())
    r0 = step.evaluate(TINY, H100, g, o_graph, C)
    r1 = step.evaluate(TINY, H100, g, o_eager, C)
    lt = step.per_layer(TINY, H100, g, o_eager, C)
    assert float(r0.host_s[0]) == 0.0
    mbs = float(r1.microbatches[0])
    assert float(r1.host_s[0]) == pytest.approx(mbs * TINY.n_layers * float(lt.host0[0]))
    assert float(r1.step_time_s[0] - r0.step_time_s[0]) == pytest.approx(float(r1.host_s[0]), rel=1e-9)
    assert float(r1.compute_s[0]) == pytest.approx(float(r0.compute_s[0]))


def test_large_layers_and_papers_convention_pay_nothing():
    big = named_model("gpt-oss-120b")
    g = _grid(dp=64, ep=64, microbatch=4, global_batch_sequences=1280)
    o = TrainingOptions(precision="bf16", force_balanced_routing=True, cuda_graph_scope=())
    lt = step.layer_times(big, load_system("GB200"), g, o, C, moe=True)
    assert float(lt.host0[0]) == pytest.approx(T)  # GPU-bound: only the dispatcher's sync
    legacy = TrainingOptions(cuda_graph_scope=(), ep_convention="cs-v1")
    lt = step.layer_times(TINY, H100, _grid(), legacy, C, moe=False)
    assert float(lt.host0[0]) == 0.0


def test_scope_option_parsing_and_errors():
    assert TrainingOptions().cuda_graph_scope == ("full_iteration",)
    assert TrainingOptions(cuda_graph_scope="none").cuda_graph_scope == ()
    assert TrainingOptions(cuda_graph_scope="moe_router, attn").cuda_graph_scope == ("attn", "moe_router")
    with pytest.raises(ValueError, match="unknown scope 'mlpx'"):
        TrainingOptions(cuda_graph_scope="mlpx")
    with pytest.raises(ValueError, match="cannot be combined"):
        TrainingOptions(cuda_graph_scope=["full_iteration", "attn"])
