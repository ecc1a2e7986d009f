"""Custom pipeline layouts (Megatron-Core ``pipeline_model_parallel_layout``) and where the leading
dense layers sit: parsing, per-rank counts by hand, the stage times they give, the recipes' layouts."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.errors import InputError
from carbonscaling.hardware import load_system
from carbonscaling.perf import kernels as K
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layer import layer_times, per_layer
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.perf.pipeline import (layout_stage_split, parse_pipeline_layout, split_leading_dense, stage_plan,
                                         stage_split)
from carbonscaling.perf.step import _stages, evaluate
from carbonscaling.scaling import named_model
from carbonscaling.search import search
from carbonscaling.validation.throughput import describe_row

from helpers import bench_row, layout_grids

DS = named_model("deepseek-v3")          # 61 layers, 3 leading dense, 1 MTP layer
B200 = load_system("B200")
PP16 = "Et*4|(t*4|)*14tmL"               # Megatron-Bridge's DeepSeek-V3 layout for PP 16 (and PP 8 x VP 2, ...)


def test_parse_unrolls_repeats_like_megatron():
    chunks = parse_pipeline_layout(PP16)
    assert len(chunks) == 16 and chunks[0] == "Etttt" and chunks[1:15] == ("tttt",) * 14 and chunks[15] == "tmL"
    h100 = parse_pipeline_layout("Et|(tt|)*30mL")
    assert len(h100) == 32 and h100[0] == "Et" and h100[-1] == "mL" and set(h100[1:31]) == {"tt"}
    assert parse_pipeline_layout("Et, t|t L") == ("Ett", "tL")          # commas and spaces are cosmetic


@pytest.mark.parametrize("bad", ["Etx|L", "", "E(t(t|)*2)*2L"])
def test_parse_refuses_what_megatron_cannot_read(bad):
    with pytest.raises(ValueError):
        parse_pipeline_layout(bad)


def test_rank_counts_by_hand():
    # PP 16: rank 0 = E + 4 decoder layers (the 3 dense + 1 MoE), ranks 1-14 = 4, rank 15 = 1 + MTP + loss
    assert layout_stage_split(PP16, 16, 1, 61, 1, 3) == ((4, 4, 1), (3, 0, 0))
    # the same string on PP 8 x VP 2: rank r holds chunks r and r + 8 -> 8, 8, 5 (+ MTP, loss)
    assert layout_stage_split(PP16, 8, 2, 61, 1, 3) == ((8, 8, 5), (3, 0, 0))
    # PP 2 x VP 8: rank 0 chunks 0,2,..,14 = 4 x 8 = 32; rank 1 = 4 x 7 + 1 = 29
    assert layout_stage_split(PP16, 2, 8, 61, 1, 3) == ((32, 0, 29), (3, 0, 0))
    # H100 PP 8 x VP 4: chunk 0 = E + 1 layer, chunks 1-30 = 2 layers, chunk 31 = MTP + loss.
    # rank 0: chunks 0, 8, 16, 24 = 1 + 2 + 2 + 2 = 7 (1 dense); rank 1 holds dense layers 2 and 3,
    # so the heaviest middle rank (8 layers) is one without dense layers; rank 7: 2 + 2 + 2 + 0 = 6
    assert layout_stage_split("Et|(tt|)*30mL", 8, 4, 61, 1, 3) == ((7, 8, 6), (1, 0, 0))


def test_layout_must_hold_the_model():
    assert layout_stage_split(PP16, 4, 2, 61, 1, 3) is None                 # 16 chunks, not 4 x 2
    with pytest.raises(ValueError, match="decoder"):
        layout_stage_split(PP16, 16, 1, 60, 1, 3)                            # 61 decoder layers in it
    with pytest.raises(ValueError, match="MTP"):
        layout_stage_split(PP16, 16, 1, 61, 0, 3)                            # an MTP layer the model lacks
    with pytest.raises(ValueError, match="last"):
        layout_stage_split("Et*30|t*31m|L", 3, 1, 61, 1, 3)                  # MTP on rank 1 of 3
    with pytest.raises(ValueError, match="embedding"):
        layout_stage_split("t*61|mEL", 2, 1, 61, 1, 3)


def test_leading_dense_layers_of_the_balanced_split_by_hand():
    assert stage_split(61, 16, 1) == (3, 4, 2)
    assert split_leading_dense((3, 4, 2), 16, 1, 3) == (3, 0, 0)
    # PP 8 x VP 4 (7, 8, 6): rank 0's chunks hold 2, 2, 2, 1 layers -> 2 dense on rank 0, the third on
    # rank 1's first chunk; the heaviest middle rank is a later one, without dense layers
    assert split_leading_dense((7, 8, 6), 8, 4, 3) == (2, 0, 0)
    assert split_leading_dense((31, 0, 30), 2, 1, 3) == (3, 0, 0)
    assert split_leading_dense((3, 4, 2), 16, 1, 0) == (0, 0, 0)
    (n, d) = stage_plan(61, np.array([16, 8]), np.array([1, 4]), leading_dense=3)
    assert [x.tolist() for x in n] == [[3, 7], [4, 8], [2, 6]] and [x.tolist() for x in d] == [[3, 2], [0, 0], [0, 0]]


_ds_grid = layout_grids(tp=1, pp=16, dp=16, ep=8, microbatch=1, global_batch_sequences=4096)


def test_stage_times_with_the_recipe_layout_by_hand():
    """PP 16 with the recipe's layout: the middle rank runs 4 MoE layers, the first the 3 dense layers,
    one MoE layer and the embedding, the last one MoE layer, the MTP module and the output layers."""
    o = TrainingOptions(precision="mxfp8", pipeline_layout=PP16, recompute_modules=("mla_up_proj",))
    c, g = default_constants(), _ds_grid()
    lt, n, mem, rec, times, _ = _stages(DS, B200, g, o, c)
    t_first, t_max, t_sum, p2p, ends, _, _ = times
    moe = layer_times(DS, B200, g, o, c, moe=True).time0
    dense = layer_times(DS, B200, g, o, c, moe=False).time0
    tokens = 4096
    emb = K.memory_bound_time(c.embedding_bytes_per_token_hidden * tokens * DS.d_model, B200.device, c)
    np.testing.assert_allclose(t_first, 3 * dense + moe + emb + p2p, rtol=1e-12)
    np.testing.assert_allclose(t_max, 4 * moe + p2p, rtol=1e-12)   # a middle rank binds
    # the sum over ranks is the model's layers, whatever the split
    np.testing.assert_allclose(t_sum, 3 * dense + 58 * moe + ends + 16 * p2p, rtol=1e-12)
    assert np.allclose(lt.moe_minus_dense0, moe - dense)


def test_balanced_split_puts_the_dense_layers_on_the_first_rank():
    """The layer-count split (3, 4, 2): the first rank's 3 layers are the dense ones, the middle 4 MoE."""
    o = TrainingOptions(precision="mxfp8", pipeline_balance="layers")
    c, g = default_constants(), _ds_grid()
    _, n, _, _, times, _ = _stages(DS, B200, g, o, c)
    moe = layer_times(DS, B200, g, o, c, moe=True).time0
    dense = layer_times(DS, B200, g, o, c, moe=False).time0
    avg = per_layer(DS, B200, g, o, c).time0
    emb = K.memory_bound_time(c.embedding_bytes_per_token_hidden * 4096 * DS.d_model, B200.device, c)
    t_first, p2p = times[0], times[3]
    np.testing.assert_allclose(t_first, 3 * dense + emb + p2p, rtol=1e-12)
    assert np.all(3 * dense < 3 * avg)   # the old average charged the first rank MoE work it does not run


def test_the_recipe_layout_lightens_the_last_rank():
    o = TrainingOptions(precision="mxfp8", recompute_modules=("mla_up_proj",), pipeline_balance="layers")
    g = _ds_grid()
    default = evaluate(DS, B200, g, o)
    recipe = evaluate(DS, B200, g, o.model_copy(update={"pipeline_layout": PP16}))
    # the balanced split's last rank (2 layers + MTP + output layer) bound the pipeline; the recipe's has 1
    assert recipe.stage_max_s[0] < default.stage_max_s[0]
    np.testing.assert_allclose(recipe.stage_sum_s, default.stage_sum_s, rtol=1e-12)


def test_search_checks_a_pinned_layout():
    o = TrainingOptions(precision="mxfp8", pipeline_layout=PP16)
    pins = dict(devices=256, tp=1, ep=8, microbatch=1, global_batch=4096)
    with pytest.raises(InputError, match="pipeline_layout.*pp pinned"):
        search(DS, B200, deadline_days=36500, options=o, pinned=pins)
    with pytest.raises(InputError, match="pipeline_layout.*16 chunks"):
        search(DS, B200, deadline_days=36500, options=o, pinned={**pins, "pp": 16, "vp": 2})
    with pytest.raises(InputError, match="pipeline_layout"):
        search(DS.model_copy(update={"mtp_layers": 0}), B200, deadline_days=36500, options=o,
               pinned={**pins, "pp": 16})
    res = search(DS, B200, deadline_days=36500, options=o, pinned={**pins, "pp": 16})
    assert res.layout.pp == 16 and res.layout.vp == 1
    with pytest.raises(ValueError, match="layout"):
        TrainingOptions(pipeline_layout="Et*4|x")


def _row(system, container, precision="MXFP8"):
    return bench_row("DeepSeekV3", system, container, precision)


@pytest.mark.parametrize("system, container, layout", [
    ("DGX-B300", "26.04", "Et*4|(t*4|)*14tmL"),          # PP 16 (recipe map)
    ("DGX-B300", "26.04.01", "Et*8|(t*8|)*6t*5mL"),      # PP 8 VP 1
    ("DGX-B200", "26.04.01", "Et*4|(t*4|)*14tmL"),       # PP 8 VP 2
    ("DGX-GB200", "26.04", "Et*4|(t*4|)*14tmL"),         # PP 4 VP 4
    ("DGX-GB300", "26.02", "Et*4|(t*4|)*14tmL"),         # PP 2 VP 8 (the GB300 config's string)
])
def test_deepseek_rows_run_the_recipe_layout(system, container, layout):
    row = _row(system, container)
    _, _, o, pins, assumed = describe_row(row)
    assert o.pipeline_layout == layout and f"recipe: pipeline layout {layout}" in assumed


def test_deepseek_layouts_follow_mtp_and_skip_unknown_shapes():
    h100 = _row("DGX-H100", "25.09", "FP8")
    assert describe_row(h100)[2].pipeline_layout == "Et|(tt|)*30mL"
    gb300 = _row("DGX-GB300", "25.11", "BF16")          # 'w/o MTP', PP 2 x VP 4: not in the recipe's map
    assert describe_row(gb300)[2].pipeline_layout is None
    no_mtp = {**_row("DGX-GB300", "26.02"), "notes": "source model label 'DeepSeekV3 (w/o MTP)'"}
    assert describe_row(no_mtp)[2].pipeline_layout == "Et*4|(t*4|)*14tL"


@pytest.mark.parametrize("huge", ["t*9999999999", "(t*99999|)*99999", "Et*" + "9" * 5000 + "L"])
def test_a_layout_that_unrolls_past_the_bound_is_refused_before_it_is_built(huge):
    with pytest.raises(ValueError, match="at most 100000 characters"):
        parse_pipeline_layout(huge)
    with pytest.raises(ValueError, match="at most"):
        TrainingOptions(pipeline_layout=huge)


def test_a_pinned_layout_under_the_papers_convention_is_refused_not_dropped():
    o = TrainingOptions(precision="mxfp8", pipeline_layout=PP16, ep_convention="cs-v1")
    with pytest.raises(InputError, match="pipeline_layout.*megatron"):
        search(DS, B200, deadline_days=36500, options=o, pinned=dict(devices=256, tp=1, pp=16, ep=8))


def test_mtp_module_by_hand():
    """DeepSeek-V3's MTP layer: an MoE layer (the decoder's last layer spec), the 2h -> h eh_proj,
    two norms + concatenation + final norm (20 B per token per hidden unit forward), an embedding
    lookup and the shared output layer with cross entropy."""
    from carbonscaling.perf.step import mtp_time

    o = TrainingOptions(precision="mxfp8")
    c, g = default_constants(), _ds_grid()
    dev = B200.device
    lt = per_layer(DS, B200, g, o, c)
    moe = layer_times(DS, B200, g, o, c, moe=True).time0
    eh = K.linear_fwd_bwd_time(4096, 7168, 2 * 7168, 1, dev, c, "mxfp8", o.gemm_input_bytes, norm_fused=False)
    elem = K.memory_bound_time(20 * 4096 * 7168, dev, c) * (1 + c.elementwise_bwd_to_fwd)
    emb, head = 0.001, 0.01
    np.testing.assert_allclose(mtp_time(DS, dev, g, o, c, lt, emb, head),
                               moe + eh[0] + eh[1] + elem + emb + head, rtol=1e-12)
    none = DS.model_copy(update={"mtp_layers": 0})
    assert float(mtp_time(none, dev, g, o, c, lt, emb, head)[0]) == 0.0


def test_a_long_bad_value_is_shown_cut_in_the_one_line_error():
    import carbonscaling as cs

    with pytest.raises(InputError) as err:
        cs.estimate(model="deepseek-v3", device="H100", pp=8, pipeline_layout="Et*" + "9" * 5000 + "L",
                    uncertainty=False)
    assert err.value.field == "pipeline_layout" and "\n" not in str(err.value) and len(str(err.value)) < 200
