"""Rows take the Megatron-Bridge recipe options of their release and layout, and only those.

Each case names a real row of nemo_performance.csv (model, system, container, precision and
its layout) and checks what ``describe_row`` gives it; the contrasting cases are rows of the
same model and system whose layout or release is not the config's.
"""

import pytest

from carbonscaling.validation.throughput import (
    _fused_moe_recipe, _moe_comm_recipe, _no_recompute_recipe, _not_modelled_recipe, _recompute_recipe, describe_row,
    pretrain_rows,
)

from helpers import bench_rows

ROWS = pretrain_rows()


def _layout(row):
    return tuple(int(row[k] or 1) for k in ("tp", "pp", "vp", "ep", "mbs"))


@pytest.mark.parametrize("system, container, fused_overlap", [
    ("DGX-GB300", "26.06", (True, True)), ("DGX-GB300", "26.08", (True, True)),
    ("DGX-B300", "26.06", (True, True)), ("DGX-GB200", "26.06.01", (True, True)),
    # same layout (EP 8, microbatch 8 / 4), releases before the fused MXFP8 configs
    ("DGX-GB300", "26.04.01", (False, False)), ("DGX-B300", "26.04.01", (False, False)),
    ("DGX-GB200", "26.04", (False, False)),
    # B200 has no fused config for Qwen3-30B
    ("DGX-B200", "26.04.01", (False, False)),
])
def test_qwen3_30b_mxfp8_recipes_follow_release(system, container, fused_overlap):
    for row in bench_rows("Qwen3_30B_a3B", system, container, "MXFP8"):
        assert _fused_moe_recipe(row) == fused_overlap
        _, _, options, _, assumed = describe_row(row)
        assert (options.moe_grouped_gemm == "fused") == fused_overlap[0]
        assert options.overlap_ep_comm == fused_overlap[1]
        assert any("fused grouped MLP" in a for a in assumed) == fused_overlap[0]


def test_qwen3_30b_fused_recipe_needs_the_configs_microbatch():
    (row,) = bench_rows("Qwen3_30B_a3B", "DGX-GB300", "26.06", "MXFP8")
    assert _layout(row) == (1, 1, 1, 8, 8)
    assert _fused_moe_recipe({**row, "mbs": "4"}) == (False, False)
    assert _fused_moe_recipe({**row, "precision": "NVFP4"}) == (False, False)


def test_qwen3_235b_h100_overlaps_the_alltoall_dispatcher():
    for container in ("26.02", "26.02.01", "26.04", "26.04.01"):
        (row,) = bench_rows("Qwen3_235B_a22B", "DGX-H100", container, "FP8")
        assert _moe_comm_recipe(row) == ("alltoall", True)
        _, _, options, pins, assumed = describe_row(row)
        assert options.moe_dispatcher == "alltoall" and options.overlap_ep_comm
        assert pins["etp"] == 1 and "recipe: ETP 1" in assumed
        assert "recipe: EP all-to-all overlapped" in assumed
        # the V1/V2 H100 script runs this model without userbuffers (CommOverlapConfig(tp_comm_overlap=False))
        assert not options.overlap_tp_comm and "recipe: TP communication not overlapped" in assumed
    # the same layout in 25.11 ran a script before the V1/V2 configs: no overlap listed, TP overlapped,
    # and the Qwen3 provider's alltoall dispatcher (the script names none)
    (old,) = bench_rows("Qwen3_235B_a22B", "DGX-H100", "25.11", "FP8-CS")
    assert _layout(old) == (2, 8, 4, 32, 1)
    _, _, options, pins, assumed = describe_row(old)
    assert _moe_comm_recipe(old) == (None, False)
    assert options.moe_dispatcher == "alltoall" and not options.overlap_ep_comm and options.overlap_tp_comm
    assert "recipe: alltoall dispatcher" in assumed
    assert "etp" not in pins and "ETP" in assumed


@pytest.mark.parametrize("model, system, container, precision, dispatcher", [
    # 25.09 / 25.11: no script names a dispatcher -> the Qwen3 MoE provider's alltoall (token drop needs it)
    ("Qwen3_30B_a3B", "DGX-H100", "25.09", "FP8", "alltoall"),
    ("Qwen3_30B_a3B", "DGX-B200", "25.11", "FP8-MX", "alltoall"),
    ("Qwen3_235B_a22B", "DGX-GB200", "25.09", "FP8", "alltoall"),
    ("Qwen3_235B_a22B", "DGX-GB300", "25.11", "BF16", "alltoall"),
    # from 26.02 the V1/V2 scripts: flex unless a moe_comm entry names another
    ("Qwen3_30B_a3B", "DGX-H100", "26.04", "FP8", "flex"),
    ("Qwen3_30B_a3B", "DGX-B200", "26.02", "MXFP8", "alltoall"),   # microbatch-1 V1 config: no backend
    ("Qwen3_30B_a3B", "DGX-B200", "26.02.01", "MXFP8", "flex"),    # microbatch-4 V1 config: hybridep
    ("Qwen3_235B_a22B", "DGX-B200", "26.02", "MXFP8", "alltoall"),
    # DeepSeek-V3 25.x defaults to its provider's alltoall too, but its 25.09 H100 config names DeepEP (moe_comm)
    ("DeepSeekV3", "DGX-H100", "25.09", "FP8", "flex"),
])
def test_qwen3_default_dispatcher_by_release(model, system, container, precision, dispatcher):
    from carbonscaling.validation.recipes import _default_dispatcher

    for row in bench_rows(model, system, container, precision):
        _, _, options, _, assumed = describe_row(row)
        assert options.moe_dispatcher == dispatcher
        stated = dispatcher == "alltoall" or model == "DeepSeekV3"
        assert (f"recipe: {dispatcher} dispatcher" in assumed) == stated
        assert _default_dispatcher(row) == ("alltoall" if container.startswith("25.") else None)


def test_tp_comm_entry_only_on_its_model_system_and_layout():
    from carbonscaling.validation.recipes import _tp_overlap_recipe

    (row,) = bench_rows("Qwen3_235B_a22B", "DGX-H100", "26.04", "FP8")
    assert not _tp_overlap_recipe(row)
    assert _tp_overlap_recipe({**row, "pp": "4"})          # another layout: the TP > 1 default
    assert _tp_overlap_recipe({**row, "system": "DGX-B200"})
    assert _tp_overlap_recipe({**row, "container": "25.11"})
    assert not _tp_overlap_recipe({**row, "tp": "1", "pp": "4"})  # no TP, nothing to overlap


def test_qwen3_235b_b300_overlap_only_on_the_vp4_config():
    for container in ("26.02", "26.02.01"):
        (row,) = bench_rows("Qwen3_235B_a22B", "DGX-B300", container, "MXFP8")
        assert _layout(row) == (1, 8, 4, 8, 1)
        _, _, options, _, assumed = describe_row(row)
        # no flex backend named: the recipe leaves the Qwen3 provider's alltoall
        assert options.overlap_ep_comm and options.moe_dispatcher == "alltoall"
        assert "recipe: EP all-to-all overlapped" in assumed
    for container in ("26.04", "26.04.01"):  # VP 1, microbatch 2: the later config, no overlap
        (row,) = bench_rows("Qwen3_235B_a22B", "DGX-B300", container, "MXFP8")
        _, _, options, _, assumed = describe_row(row)
        assert not options.overlap_ep_comm
        assert not any("overlapped" in a for a in assumed)


def test_qwen3_235b_b200_alltoall_without_overlap():
    (row,) = bench_rows("Qwen3_235B_a22B", "DGX-B200", "26.02", "MXFP8")
    _, _, options, _, assumed = describe_row(row)
    assert options.moe_dispatcher == "alltoall" and not options.overlap_ep_comm
    assert "recipe: alltoall dispatcher" in assumed


def test_qwen3_scripts_turn_recompute_off_from_26_02():
    (row,) = bench_rows("Qwen3_30B_a3B", "DGX-B300", "26.02", "MXFP8")
    assert _no_recompute_recipe(row)
    _, _, _, pins, assumed = describe_row(row)
    assert pins["recompute"] == "none" and "recipe: no recompute" in assumed
    old = bench_rows("Qwen3_30B_a3B", "DGX-B200", "25.11", "FP8-MX")[0]
    assert not _no_recompute_recipe(old)
    _, _, _, pins, assumed = describe_row(old)
    assert "recompute" not in pins and "recompute" in assumed
    # other models are not affected
    (ds,) = bench_rows("DeepSeekV3", "DGX-GB300", "26.08", "MXFP8")
    assert not _no_recompute_recipe(ds)


def test_deepseek_b300_pp16_recomputes_mla_up_proj():
    for container in ("26.02", "26.02.01", "26.04"):
        (row,) = bench_rows("DeepSeekV3", "DGX-B300", container, "MXFP8")
        assert _layout(row) == (1, 16, 1, 8, 1)
        assert _recompute_recipe(row) == (("mla_up_proj",), False)
        _, _, options, pins, _ = describe_row(row)
        assert pins["recompute"] == "selective" and options.recompute_modules == ("mla_up_proj",)
    # the 26.04.01 row runs PP 8 with microbatch 2: the V2 entry, not this one
    (row,) = bench_rows("DeepSeekV3", "DGX-B300", "26.04.01", "MXFP8")
    assert _layout(row) == (1, 8, 1, 8, 2)
    assert _recompute_recipe(row) == (("mla_up_proj",), False)
    # B300 PP 16 before the V1/V2 configs: not described
    assert _recompute_recipe({**row, "container": "25.11", "pp": "16", "mbs": "1"}) is None


def test_llama70b_fsdp_rows_run_the_cpu_offloading_of_their_recipe():
    from carbonscaling.validation.throughput import _offload_recipe, predict_row

    for system, layers in (("DGX-GB300", 20), ("DGX-GB200", 40)):
        for container in ("26.02", "26.04.01"):
            (row,) = bench_rows("LLAMA3_70B", system, container, "FP8")
            assert _offload_recipe(row) == layers
            _, _, options, pins, assumed = describe_row(row)
            assert options.cpu_offload_layers == layers and pins["recompute"] == "none"
            assert f"recipe: CPU offloading of {layers} layers' activations, no recompute" in assumed
            assert _not_modelled_recipe(row) is None
        # 25.11 ran the older scripts; the MXFP8 rows (PP 4 x VP 5) another config: none
        (old,) = bench_rows("LLAMA3_70B", system, "25.11", "FP8-CS")
        assert _offload_recipe(old) == 0 and describe_row(old)[2].cpu_offload_layers == 0
    mx = bench_rows("LLAMA3_70B", "DGX-GB300", "26.04.01", "MXFP8")[0]
    assert _offload_recipe(mx) == 0
    # described as run: PP 1, no recompute, offloading, and it fits our memory model
    (row,) = bench_rows("LLAMA3_70B", "DGX-GB200", "26.04.01", "FP8")
    pred = predict_row(row)
    assert "rc=none" in pred["layout"] and "does not fit" not in pred["left_to_search"]


def test_an_offload_recipe_that_does_not_fit_falls_back_and_says_so(monkeypatch):
    from carbonscaling.validation import recipes, throughput

    (row,) = bench_rows("LLAMA3_70B", "DGX-GB200", "26.04.01", "FP8")
    monkeypatch.setattr(recipes, "OFFLOAD_RECIPES", [("LLAMA3_70B", "DGX-GB200", ("FP8",), (1, 1, 1, 1, 2), (26, 2), 2)])
    pred = throughput.predict_row(row)
    assert "recompute (the recipe's CPU offloading of 2 layers does not fit our memory model)" in pred["left_to_search"]
    assert "rc=full" in pred["layout"]


def test_llama405b_gb200_25_09_recipes():
    from carbonscaling.validation.throughput import _offload_recipe

    (cs,) = bench_rows("LLAMA3.1_405B", "DGX-GB200", "25.09", "FP8")
    assert _offload_recipe(cs) == 95 and _not_modelled_recipe(cs) is None
    assert describe_row(cs)[2].cpu_offload_layers == 95
    (mx,) = bench_rows("LLAMA3.1_405B", "DGX-GB200", "25.09", "FP8-MX")
    assert _not_modelled_recipe(mx) == "parameter all-gather not overlapped"
    assert "recipe, not modelled: parameter all-gather not overlapped" in describe_row(mx)[4]
    # the B200 rows run the same TP 4 CP 2 PP 8 VP 8 layout: another system, no note
    (b200,) = bench_rows("LLAMA3.1_405B", "DGX-B200", "25.09", "FP8-MX")
    assert _layout(b200) == _layout(mx) and _not_modelled_recipe(b200) is None


def test_every_recipe_entry_matches_a_row_or_is_a_known_non_match():
    """An entry no row takes is a typo in its layout or names (it would silently do nothing), except the
    configs recorded on purpose: DeepSeek-V3 B300 MXFP8 26.06 (the row ran VP 1, the config VP 2), Kimi K2
    GB300 (the 26.06 row ran microbatch 2), DeepSeek-V3 H100 V1/V2 (its only row is 25.09's)."""
    from carbonscaling.validation import throughput as T

    def runs(model, system, layout, first=(0, 0), precs=None, last=(99, 99)):
        return [r for r in ROWS if (r["model"], r["system"]) == (model, system) and _layout(r) == layout
                and first <= tuple(int(x) for x in r["container"].split("."))[:2] <= last
                and (precs is None or r["precision"] in precs)]

    unused = {(model, system, layout, first) for model, system, precs, layout, first, *_ in
               T.FUSED_MOE_RECIPES + T.RECOMPUTE_RECIPES + T.MOE_COMM_RECIPES + T.NOT_MODELLED_RECIPES + T.OFFLOAD_RECIPES
               if not runs(model, system, layout, first, precs)}
    unused |= {(model, system, layout, first) for model, system, precs, layout, first, last in
               T.NO_GRAD_OVERLAP_RECIPES if not runs(model, system, layout, first, precs, last)}
    assert unused == {("DeepSeekV3", "DGX-B300", (1, 8, 2, 8, 1), (26, 6)),
                      ("Kimi_K2", "DGX-GB300", (1, 4, 4, 64, 1), (26, 6)),
                      ("DeepSeekV3", "DGX-H100", (2, 8, 4, 64, 1), (26, 2))}


def test_deepseek_25_09_recipes():
    """The 25.09 scripts (deepseek_llm_pretrain.py at 0132842): recompute modules on GB200/B200/H100,
    H100 with the all-to-all overlapped and the gradient reduction not overlapped, ETP 1."""
    from carbonscaling.validation.throughput import _no_grad_overlap_recipe

    (h100,) = bench_rows("DeepSeekV3", "DGX-H100", "25.09", "FP8")
    assert _recompute_recipe(h100) == (("mla_up_proj", "mlp"), True)
    assert _no_grad_overlap_recipe(h100)
    _, _, options, pins, assumed = describe_row(h100)
    assert options.overlap_ep_comm and not options.overlap_grad_reduce
    assert pins["etp"] == 1 and pins["recompute"] == "selective"
    assert "recipe: gradient reduction not overlapped" in assumed
    # the same layout in a V1/V2 release: no all-to-all overlap, gradient reduction overlapped
    later = {**h100, "container": "26.02"}
    assert _recompute_recipe(later) == (("mla_up_proj", "mlp"), False)
    assert not _no_grad_overlap_recipe(later)
    (gb200,) = bench_rows("DeepSeekV3", "DGX-GB200", "25.09", "FP8")
    assert _recompute_recipe(gb200) == (("mla_up_proj",), False)
    _, _, options, _, _ = describe_row(gb200)
    assert options.overlap_grad_reduce
    for precision in ("FP8", "FP8-MX"):
        (b200,) = bench_rows("DeepSeekV3", "DGX-B200", "25.09", precision)
        assert _recompute_recipe(b200) == (("mla_up_proj",), False)
    # GB200 25.11 FP8-MX ran PP 8 VP 4 EP 32: no config of that layout was read
    (other,) = bench_rows("DeepSeekV3", "DGX-GB200", "25.11", "FP8-MX")
    assert _recompute_recipe(other) is None


@pytest.mark.parametrize("model, system, container, precision, scope", [
    # gpt-oss V1/V2 configs (07eea52): per-layer TE graphs on GB300/B300 BF16, none on GB200/B200/H100 BF16
    ("GPT OSS 120B", "DGX-GB300", "26.04", "BF16", ("attn", "moe_router", "moe_preprocess")),
    ("GPT OSS 120B", "DGX-B300", "26.02", "BF16", ("attn", "moe_router", "moe_preprocess")),  # V1, EP 64
    ("GPT OSS 120B", "DGX-B300", "26.04", "BF16", ("attn", "moe_router", "moe_preprocess")),  # V2, EP 8
    ("GPT OSS 120B", "DGX-GB200", "26.04", "BF16", ()),
    ("GPT OSS 120B", "DGX-B200", "26.02.01", "BF16", ()),
    ("GPT OSS 120B", "DGX-H100", "26.04.01", "BF16", ()),
    # the fused MXFP8 recipes: full-iteration graphs; B300's graph lines are commented out (BF16 V2's scopes)
    ("GPT OSS 120B", "DGX-GB300", "26.06", "MXFP8", ("full_iteration",)),
    ("GPT OSS 120B", "DGX-B300", "26.06", "MXFP8", ("attn", "moe_router", "moe_preprocess")),
    # pre-V1/V2 Qwen3 presets (0fa501a): local full-iteration graphs on B200/GB200 30B-A3B, none for 235B-A22B
    ("Qwen3_30B_a3B", "DGX-B200", "25.09", "FP8", ("full_iteration",)),
    ("Qwen3_235B_a22B", "DGX-H100", "25.09", "FP8", ()),
    ("Qwen3_235B_a22B", "DGX-B200", "25.11", "FP8-MX", ()),
])
def test_cuda_graph_scope_of_the_recipes(model, system, container, precision, scope):
    for row in bench_rows(model, system, container, precision):
        _, _, options, _, assumed = describe_row(row)
        assert options.cuda_graph_scope == scope
        if scope != ("full_iteration",):
            assert any(a.startswith("recipe: ") and "CUDA graphs" in a for a in assumed)


@pytest.mark.parametrize("model, system, container, precision", [
    ("GPT OSS 120B", "DGX-GB200", "25.11", "BF16"),   # the pre-V1 preset (EP 8, mb 8) is not this row's layout
    ("Qwen3_30B_a3B", "DGX-H100", "25.09", "FP8"),    # the preset's VP 12 is not this row's VP 24
    ("Qwen3_30B_a3B", "DGX-B200", "26.02", "MXFP8"),  # V1/V2 release: the pre-V1 preset no longer applies
])
def test_rows_without_a_graph_recipe_keep_the_default(model, system, container, precision):
    from carbonscaling.perf.layout import TrainingOptions

    for row in bench_rows(model, system, container, precision):
        _, _, options, _, assumed = describe_row(row)
        assert options.cuda_graph_scope == TrainingOptions().cuda_graph_scope
        assert not any("CUDA graphs" in a for a in assumed)


def test_every_cuda_graph_entry_matches_a_row():
    from carbonscaling.validation.recipes import CUDA_GRAPH_RECIPES

    for model, system, precs, layout, first, last, _ in CUDA_GRAPH_RECIPES:
        hits = [r for r in ROWS if (r["model"], r["system"]) == (model, system) and _layout(r) == layout
                and first <= tuple(int(x) for x in r["container"].split("."))[:2] <= (last or (99, 99))
                and (precs is None or r["precision"] in precs)]
        assert hits, (model, system, layout, first)


@pytest.mark.parametrize("system, container, scope", [
    ("DGX-GB300", "26.08", ("attn", "moe_router", "moe_preprocess", "mamba")),
    ("DGX-GB200", "26.02.01", ("attn", "moe_router", "moe_preprocess", "mamba")),
    ("DGX-B200", "26.04.01", ("attn", "moe_router", "moe_preprocess", "mamba")),
    ("DGX-H100", "26.06", ("mamba",)),
])
def test_nemotron_nano_graphs_and_h100_recompute(system, container, scope):
    """nemotron_3_workload_base_configs.py at 06e8da4: TE per-layer graphs; H100 FP8_CS_V1 graphs only the
    Mamba mixers and recomputes moe, layernorm, core_attn and moe_act."""
    precision = "FP8" if system == "DGX-H100" else "MXFP8"
    for row in bench_rows("Nemotron_3_Nano", system, container, precision):
        _, _, options, pins, _ = describe_row(row)
        assert options.cuda_graph_scope == scope
        if system == "DGX-H100":
            assert _recompute_recipe(row) == (("core_attn", "moe_act", "layernorm", "moe"), False)
            assert pins["recompute"] == "selective"
            assert options.recompute_modules == ("core_attn", "moe_act", "layernorm", "moe")
        else:
            assert _recompute_recipe(row) is None
            assert pins["recompute"] == "none" and _no_recompute_recipe(row)  # library recipe: no recompute


@pytest.mark.parametrize("system, container, dispatcher", [
    ("DGX-GB300", "26.04", "alltoall"), ("DGX-GB200", "26.02.01", "alltoall"),
    ("DGX-B300", "26.02", "alltoall"),   # V1, EP 64: no backend named
    ("DGX-B300", "26.04", "flex"),       # V2, EP 8: moe_flex_dispatcher_backend="hybridep"
    ("DGX-B200", "26.02", "alltoall"), ("DGX-B200", "26.04", "alltoall"), ("DGX-H100", "26.04.01", "alltoall"),
    ("DGX-B200", "25.11", "flex"),       # before the V1/V2 scripts: not described
])
def test_gpt_oss_bf16_dispatcher_is_the_bridges_alltoall_unless_a_backend_is_named(system, container, dispatcher):
    """gpt_oss_bridge.py at 0e4d6ed sets alltoall; the perf script applies flex only for a named backend."""
    for row in bench_rows("GPT OSS 120B", system, container, "BF16"):
        _, _, options, _, _ = describe_row(row)
        assert options.moe_dispatcher == dispatcher


@pytest.mark.parametrize("container", ["25.11", "26.02", "26.04"])
def test_gpt_oss_rows_run_fused_sink_attention_where_the_versions_are_stated(container):
    """software-versions.md: TE >= 2.8 and cuDNN >= 9.13.1 in these releases, so no ``local`` fallback."""
    rows = [r for r in ROWS if r["model"] == "GPT OSS 120B" and r["container"] == container]
    assert len(rows) >= 4
    for row in rows:
        _, _, options, _, _ = describe_row(row)
        assert options.flash_attention is True


def test_every_pp_layout_entry_is_taken_by_a_row():
    """A pipeline-layout entry no row takes would silently do nothing (a typo in its names or shapes)."""
    from carbonscaling.validation.recipes import PP_LAYOUT_RECIPES, _pp_layout_recipe

    for model, system, precs, first, layouts in PP_LAYOUT_RECIPES:
        taken = [r for r in ROWS if r["model"] == model and system in (None, r["system"])
                 and tuple(int(x) for x in r["container"].split("."))[:2] >= first
                 and (_layout(r)[1], _layout(r)[2]) in layouts and _pp_layout_recipe(r, 1)]
        assert taken, (model, system)


@pytest.mark.parametrize("system, container, precision, dispatcher", [
    ("DGX-B200", "25.09", "FP8", "alltoall"), ("DGX-GB200", "25.09", "FP8", "alltoall"),
    ("DGX-B200", "25.11", "FP8-MX", "alltoall"), ("DGX-GB300", "25.11", "BF16", "alltoall"),
    ("DGX-H100", "25.09", "FP8", "flex"),                  # enable_deepep=True in the 25.09 H100 configs
    ("DGX-B200", "26.02", "MXFP8", "flex"), ("DGX-GB200", "26.04", "MXFP8", "flex"),   # HybridEP from 26.02
])
def test_deepseek_dispatcher_follows_the_release(system, container, precision, dispatcher):
    (row, *_) = bench_rows("DeepSeekV3", system, container, precision)
    assert describe_row(row)[2].moe_dispatcher == dispatcher
