"""Megatron-Bridge performance-recipe options of the validation rows (``data/nemo_performance.csv``).

A row is described with the options of the recipe it ran: the workload config of its release
(``scripts/performance/configs/<model>/<model>_workload_base_configs.py`` and the model's
``*_llm_pretrain.py``), taken only from the first container that has the config *and* only
where the row's TP/PP/VP/EP/microbatch is the config's. Each table says which files, at which
commits (read in the code index), state each entry; a row no table matches keeps the defaults
of :func:`throughput.describe_row` and its unstated choices are left to the search.
"""

from __future__ import annotations

#: Megatron-Bridge MXFP8 recipes that run the fused grouped MLP (``cutedsl_fused_grouped_mlp=True``,
#: Transformer Engine's CuTe-DSL kernel), with full-iteration CUDA graphs (gpt-oss B300: per-layer
#: graphs, :data:`CUDA_GRAPH_RECIPES`) and, where the second
#: field says so, the expert all-to-all overlapped with compute (``moe_a2a_overlap=True``):
#: (model, system) -> ((TP, PP, VP, EP, microbatch) of the recipe, EP overlap). Sources:
#: scripts/performance/configs/{deepseek,gpt_oss,kimi}/*_workload_base_configs.py ``*_FP8_MX_V1/V2``
#: (read in the code index); Qwen3: configs/qwen/qwen3_workload_base_configs.py at 729de54
#: (fork ghadiaravi13/NT3-Ultra-Megatron-Bridge; the NVIDIA-NeMo commits in the index predate these
#: options): 235B-A22B ``GB300_FP8_MX_V2`` (PP 4 VP 12 EP 32 mb 2) and ``GB200_FP8_MX_V2`` (PP 8
#: VP 3 EP 32 mb 1), 30B-A3B ``GB300/B300_FP8_MX_V1`` (EP 8 mb 8) and ``GB200_FP8_MX_V1`` (EP 8 mb 4),
#: each with ``moe_a2a_overlap=True``, ``cuda_graph_impl="full_iteration"``,
#: ``cutedsl_fused_grouped_mlp=True``; configs/qwen/qwen3_llm_pretrain.py at 05c0c90
#: (NVIDIA-NeMo/Megatron-Bridge) applies the full-iteration graph settings to 30B-A3B MXFP8 on
#: GB300, GB200 and B300 (``set_full_iter_cg_configs``).
#: A row takes them only when it ran a release that has them (container 26.06 or later) *and*
#: its layout is the recipe's: Kimi K2's 26.06 row (microbatch 2, not the MXFP8 recipe's 1) and
#: DeepSeek-V3's B300 row (VP 1, not 2) ran the older recipe.
FUSED_MOE_RECIPES = {
    ("DeepSeekV3", "DGX-GB300"): ((1, 2, 8, 32, 1), True), ("DeepSeekV3", "DGX-GB200"): ((1, 4, 4, 64, 1), True),
    ("DeepSeekV3", "DGX-B300"): ((1, 8, 2, 8, 1), True), ("Kimi_K2", "DGX-GB300"): ((1, 4, 4, 64, 1), True),
    ("GPT OSS 120B", "DGX-GB300"): ((1, 1, 1, 16, 4), True), ("GPT OSS 120B", "DGX-GB200"): ((1, 1, 1, 64, 4), True),
    ("GPT OSS 120B", "DGX-B300"): ((1, 1, 1, 8, 4), True),
    ("Qwen3_235B_a22B", "DGX-GB300"): ((1, 4, 12, 32, 2), True),
    ("Qwen3_235B_a22B", "DGX-GB200"): ((1, 8, 3, 32, 1), True),
    ("Qwen3_30B_a3B", "DGX-GB300"): ((1, 1, 1, 8, 8), True),
    ("Qwen3_30B_a3B", "DGX-B300"): ((1, 1, 1, 8, 8), True),
    ("Qwen3_30B_a3B", "DGX-GB200"): ((1, 1, 1, 8, 4), True),
}
FUSED_MOE_FIRST_CONTAINER = (26, 6)
#: Megatron-Bridge DeepSeek-V3 recipes' selective recompute (``recompute_modules``), first match wins:
#: (model, system, precisions (None = all), (TP, PP, VP, EP, microbatch), first container) ->
#: (modules, EP all-to-all overlapped). Source: scripts/performance/configs/deepseek/
#: deepseek_workload_base_configs.py, read in the code index at two commits: cf94114 (NVIDIA-NeMo
#: fork YangFei1990/Megatron-Bridge: every GB300/GB200 precision = the base config -- GB300
#: PP 2 VP 8 EP 32 microbatch 2 ``["mla_up_proj"]``, GB200 PP 4 VP 4 EP 64 ``["mlp"]``, GB200 BF16
#: ``["mla_up_proj"]``; B200 PP 16 EP 8 ``["mla_up_proj"]``; B200 FP8_MX PP 8 VP 2 EP 32
#: ``["mla_up_proj", "mlp"]`` with ``moe_a2a_overlap=True``; B300 V2 PP 8 microbatch 2
#: ``["mla_up_proj"]``; H100 TP 2 PP 8 VP 4 EP 64 ``["mla_up_proj", "mlp"]``) and 0426418
#: (NVIDIA-NeMo/Megatron-Bridge, the 26.06 MXFP8 recipes: GB200 ``["mla_up_proj"]``, B300 PP 8 VP 2
#: ``["mla_up_proj"]``; GB300 microbatch 1 ``[]``, not listed). B300 PP 16 EP 8 microbatch 1
#: ``["mla_up_proj"]``: the first V1/V2 file, f0e2c37 (NVIDIA-NeMo/Megatron-Bridge; every B300
#: precision = the base config). gpt-oss-120b: configs/gpt_oss/gpt_oss_workload_base_configs.py at
#: 07eea52 (NVIDIA-NeMo/Megatron-Bridge): GB200, B200 and H100 BF16 ``["layernorm", "moe_act"]``
#: (B200 V1 EP 64 / V2 EP 8, H100 PP 4 EP 8 microbatch 1), GB200 V2 (global batch 1280) with
#: ``moe_a2a_overlap=True``; GB300/B300 BF16 and the MXFP8 V2 configs state none.
#: Nemotron 3 Nano H100 ``FP8_CS_V1`` (16 GPUs, EP 8, microbatch 1): ``["moe", "layernorm", "core_attn",
#: "moe_act"]`` (nemotronh/nemotron_3_workload_base_configs.py at 06e8da4, NVIDIA-NeMo/Megatron-Bridge).
#: Releases before the V1/V2 files (first container 25.09): configs/deepseek/deepseek_llm_pretrain.py at
#: 0132842 (NVIDIA-NeMo/Megatron-Bridge; with parallelism_configs.py of that commit, exactly the 25.09
#: rows' layouts: GB200 PP 4 VP 4 EP 64, B200 PP 16 EP 8, H100 TP 2 PP 8 VP 4 EP 64): GB200 and B200
#: every precision ``["mla_up_proj"]``, H100 ``["mla_up_proj", "mlp"]`` with
#: ``set_moe_a2a_overlap_overrides`` (all-to-all overlapped); configs/deepseek/workload_base_configs.py at
#: 0fa501a (same repository, the later pre-V1/V2 file): GB200 BF16 and B200 ``["mla_up_proj"]`` again.
#: Otherwise only the V1/V2 releases (26.02 on); always only where the row's layout is the config's.
RECOMPUTE_RECIPES = [
    ("DeepSeekV3", "DGX-GB300", None, (1, 2, 8, 32, 2), (26, 2), ("mla_up_proj",), False),
    ("DeepSeekV3", "DGX-GB200", ("MXFP8",), (1, 4, 4, 64, 1), (26, 6), ("mla_up_proj",), False),
    ("DeepSeekV3", "DGX-GB200", ("BF16",), (1, 4, 4, 64, 1), (25, 9), ("mla_up_proj",), False),
    ("DeepSeekV3", "DGX-GB200", None, (1, 4, 4, 64, 1), (26, 2), ("mlp",), False),
    ("DeepSeekV3", "DGX-GB200", ("FP8",), (1, 4, 4, 64, 1), (25, 9), ("mla_up_proj",), False),
    ("DeepSeekV3", "DGX-B200", None, (1, 16, 1, 8, 1), (25, 9), ("mla_up_proj",), False),
    ("DeepSeekV3", "DGX-B200", ("MXFP8",), (1, 8, 2, 32, 1), (26, 2), ("mla_up_proj", "mlp"), True),
    ("DeepSeekV3", "DGX-B300", ("MXFP8",), (1, 8, 2, 8, 1), (26, 6), ("mla_up_proj",), False),
    ("DeepSeekV3", "DGX-B300", None, (1, 8, 1, 8, 2), (26, 2), ("mla_up_proj",), False),
    ("DeepSeekV3", "DGX-B300", None, (1, 16, 1, 8, 1), (26, 2), ("mla_up_proj",), False),
    ("DeepSeekV3", "DGX-H100", None, (2, 8, 4, 64, 1), (26, 2), ("mla_up_proj", "mlp"), False),
    ("DeepSeekV3", "DGX-H100", None, (2, 8, 4, 64, 1), (25, 9), ("mla_up_proj", "mlp"), True),
    ("GPT OSS 120B", "DGX-GB200", ("BF16",), (1, 1, 1, 64, 4), (26, 2), ("layernorm", "moe_act"), True),
    ("GPT OSS 120B", "DGX-B200", ("BF16",), (1, 1, 1, 8, 4), (26, 2), ("layernorm", "moe_act"), False),
    ("GPT OSS 120B", "DGX-B200", ("BF16",), (1, 1, 1, 64, 4), (26, 2), ("layernorm", "moe_act"), False),
    ("GPT OSS 120B", "DGX-H100", ("BF16",), (1, 4, 1, 8, 1), (26, 2), ("layernorm", "moe_act"), False),
    ("Nemotron_3_Nano", "DGX-H100", ("FP8",), (1, 1, 1, 8, 1), (26, 2), ("core_attn", "moe_act", "layernorm", "moe"),
     False),
]
#: Expert-parallel communication of recipes outside the two tables above: (model, system,
#: precisions (None = all), (TP, PP, VP, EP, microbatch), first container) -> (token dispatcher
#: (None = not stated: our default, flex), all-to-all overlapped (``moe_a2a_overlap``)). Sources,
#: read in the code index: configs/qwen/qwen3_workload_base_configs.py at f29a269
#: (NVIDIA-NeMo/Megatron-Bridge, the first V1/V2 file: 235B-A22B B300 PP 8 VP 4 EP 8 and H100 TP 2
#: PP 8 VP 4 EP 32 with ``moe_a2a_overlap=True``, B200 PP 8 EP 8 ``False``; V2 = global batch 8192),
#: 01b2977 (same repository: H100 unchanged; B300/B200 PP 8 EP 8 ``moe_token_dispatcher_type=
#: "alltoall"``, no overlap), 6a5c997 and 729de54 (forks: the same H100/B200 entries);
#: configs/qwen/qwen3_llm_pretrain.py at 05c0c90 (NVIDIA-NeMo/Megatron-Bridge) and 729de54 (fork
#: ghadiaravi13/NT3-Ultra-Megatron-Bridge): 235B-A22B on H100 and B200 ``moe_token_dispatcher_type =
#: "alltoall"``. The B300 26.04 rows (VP 1, microbatch 2: the later flex/HybridEP config) take none.
#: gpt-oss-120b BF16 (V1/V2, 26.02 on): the model bridge sets ``moe_token_dispatcher_type = "alltoall"``
#: (src/megatron/bridge/models/gpt_oss/gpt_oss_bridge.py at 0e4d6ed, ``provider_bridge``; the library
#: recipe builds its model through it, recipes/gpt_oss/gpt_oss.py at 07b4a58) and the performance script
#: switches to the flex dispatcher only when the workload config names a backend
#: (configs/gpt_oss/gpt_oss_llm_pretrain.py at 0501207: ``if base_cfg.moe_flex_dispatcher_backend is not
#: None``), which gpt_oss_workload_base_configs.py at 07eea52 does only for B300 V2 (EP 8) and the MXFP8
#: V2 configs. (The all-to-all overlap of GB200 V2 is in :data:`RECOMPUTE_RECIPES`.)
MOE_COMM_RECIPES = [
    ("Qwen3_235B_a22B", "DGX-H100", None, (2, 8, 4, 32, 1), (26, 2), "alltoall", True),
    ("Qwen3_235B_a22B", "DGX-B200", None, (1, 8, 1, 8, 1), (26, 2), "alltoall", False),
    ("Qwen3_235B_a22B", "DGX-B300", None, (1, 8, 4, 8, 1), (26, 2), None, True),
    ("GPT OSS 120B", "DGX-GB300", ("BF16",), (1, 1, 1, 64, 4), (26, 2), "alltoall", False),
    ("GPT OSS 120B", "DGX-GB200", ("BF16",), (1, 1, 1, 64, 4), (26, 2), "alltoall", False),
    ("GPT OSS 120B", "DGX-B300", ("BF16",), (1, 1, 1, 64, 4), (26, 2), "alltoall", False),
    ("GPT OSS 120B", "DGX-B200", ("BF16",), (1, 1, 1, 64, 4), (26, 2), "alltoall", False),
    ("GPT OSS 120B", "DGX-B200", ("BF16",), (1, 1, 1, 8, 4), (26, 2), "alltoall", False),
    ("GPT OSS 120B", "DGX-H100", ("BF16",), (1, 4, 1, 8, 1), (26, 2), "alltoall", False),
]
#: Models whose performance script turns activation recompute off, from the first container of
#: the V1/V2 scripts on: recompute pinned to none. Source: configs/qwen/qwen3_llm_pretrain.py
#: ``set_qwen3_common_configs`` (``recompute_granularity = None``) at 826618b and 05c0c90
#: (NVIDIA-NeMo/Megatron-Bridge).
#: Nemotron 3 Nano: the library recipe (src/megatron/bridge/recipes/nemotronh/nemotron_3_nano.py at
#: 04d6386, ``recompute_granularity = None``, ``recompute_modules = None``) and no Blackwell preset of
#: nemotron_3_workload_base_configs.py at 06e8da4 sets one (H100's FP8_CS_V1 does: RECOMPUTE_RECIPES).
NO_RECOMPUTE_RECIPES = {"Qwen3_30B_a3B": (26, 2), "Qwen3_235B_a22B": (26, 2), "Nemotron_3_Nano": (26, 2)}
#: Expert tensor parallelism of the V1/V2 workload configs (container 26.02 on): every config of
#: these models derives from a base with ``expert_tensor_parallel_size=1`` (``BASE_DEEPSEEK_V3_CONFIG``
#: at f0e2c37 and 0426418, ``BASE_QWEN3_235B_A22B_CONFIG`` / ``BASE_QWEN3_30B_A3B_CONFIG`` at f29a269
#: and 01b2977, NVIDIA-NeMo/Megatron-Bridge scripts/performance/configs/{deepseek,qwen}/); DeepSeek-V3 from
#: 25.09: configs/deepseek/parallelism_configs.py at 0132842 sets ``expert_tensor_parallel_size=1`` in
#: every preset.
RECIPE_ETP = {"DeepSeekV3": ((25, 9), 1), "Qwen3_235B_a22B": ((26, 2), 1), "Qwen3_30B_a3B": ((26, 2), 1)}

#: Recipes that do not overlap the data-parallel gradient reduction (``overlap_grad_reduce=False``):
#: (model, system, precisions, (TP, PP, VP, EP, microbatch), first container, last container).
#: Source: configs/deepseek/deepseek_llm_pretrain.py at 0132842 (NVIDIA-NeMo/Megatron-Bridge), H100
#: ("Disabling to avoid functional errors"); the V1/V2 scripts do not say, so 25.09 only.
NO_GRAD_OVERLAP_RECIPES = [
    ("DeepSeekV3", "DGX-H100", None, (2, 8, 4, 64, 1), (25, 9), (25, 9)),
]
#: Activation CPU offloading of the recipes (Megatron-Core ``cpu_offloading_num_layers``;
#: ``TrainingOptions.cpu_offload_layers``, recompute pinned none as Megatron-Core requires):
#: (model, system, precisions, (TP, PP, VP, EP, microbatch), first container) -> layers offloaded.
#: Sources: configs/llama/llama3_workload_base_configs.py at 00919dc (NVIDIA-NeMo/Megatron-Bridge):
#: Llama 3 70B ``GB300_FP8_CS_V1/V2`` (microbatch 2, Megatron FSDP) ``cpu_offloading_num_layers=20``,
#: ``GB200_FP8_CS_V1/V2`` the same with 40 (also ``GB300_BF16`` 30, ``GB200_BF16`` 20, ``B200_FP8_CS`` 5:
#: no row runs those); Llama 3.1 405B on GB200 (25.09 rows' layouts and batch):
#: configs/llama31/workload_base_configs.py at 0fa501a (``GB200_FP8_CS``: TP 2, Megatron FSDP,
#: ``cpu_offloading_num_layers=95``).
OFFLOAD_RECIPES = [
    ("LLAMA3_70B", "DGX-GB300", ("FP8",), (1, 1, 1, 1, 2), (26, 2), 20),
    ("LLAMA3_70B", "DGX-GB200", ("FP8",), (1, 1, 1, 1, 2), (26, 2), 40),
    ("LLAMA3.1_405B", "DGX-GB200", ("FP8",), (2, 1, 1, 1, 1), (25, 9), 95),
]
#: Recipe options our step model has no term for, reported with the row (they change nothing):
#: (model, system, precisions, (TP, PP, VP, EP, microbatch), first container) -> note. Source:
#: Llama 3.1 405B GB200 ``GB200_FP8_MX`` (TP 4 PP 8 CP 2 VP 8): configs/llama31/workload_base_configs.py at
#: 0fa501a with configs/llama31/llama31_llm_pretrain.py at 0a0cb29 (MXFP8: ``overlap_param_gather =
#: False``, "keeping this enabled causes NaN grad norm"; our DP term overlaps gather and reduction alike).
NOT_MODELLED_RECIPES = [
    ("LLAMA3.1_405B", "DGX-GB200", ("FP8-MX",), (4, 8, 8, 1, 1), (25, 9), "parameter all-gather not overlapped"),
]

#: Table precisions whose performance recipes turn TP communication overlap (userbuffers) off on every
#: model and system: the ``*_llm_pretrain.py`` builders set ``cfg.comm_overlap.tp_comm_overlap = False
#: if precision == "nvfp4"`` (NVIDIA-NeMo/Megatron-Bridge scripts/performance/configs/llama/
#: llama3_llm_pretrain.py at 2a0d46e: Llama 3 70B GB300/GB200/B300/B200/VR200, 8B; llama31_llm_pretrain.py
#: at 0013c9a: Llama 3.1 405B GB300/GB200/B300/B200; gpt_oss_llm_pretrain.py likewise; every stored
#: version read in the code index). Reason given in Megatron-Bridge PR #4632: Transformer Engine's NVFP4
#: forward GEMM asserts ``ub is None`` (no comm+GEMM overlap for NVFP4 weights). The TP collectives then
#: run between the GEMMs, exposed.
NO_TP_OVERLAP_PRECISIONS = ("NVFP4",)

#: Attention of the gpt-oss rows (learnable sinks, ``softmax_type="learnable"``): no table, every row keeps
#: the fused default (``flash_attention=True``). Megatron-Core's TE attention needs Transformer Engine
#: >= 2.8 for a non-vanilla softmax, and Megatron-Bridge's ``GPTOSSProvider.provide`` (gpt_oss_provider.py
#: at 12bc34a / 355cef4) falls back to Megatron-Core's unfused ``local`` attention only below TE 2.8; TE
#: then selects cuDNN fused attention for sinks from cuDNN 9.13.1 (``get_fused_attn_backend``: "9.13.1+:
#: vanilla, off-by-one, learnable"; FlashAttention is disabled for them). docs/releases/software-versions.md
#: (at 2075a5b / c4a4b56) lists TE 2.7.0 / cuDNN 9.11.0.98 for 25.09 (no gpt-oss row), TE 2.9 / cuDNN
#: 9.13.1.26 for 25.11, TE 2.12 / cuDNN 9.18.0.50 for 26.02, TE 2.14 / cuDNN 9.20.0.48 for 26.04: fused.
#: 26.02.01, 26.04.01, 26.06, 26.06.01 and 26.08 are not listed in any stored version (not established).

#: CUDA graphs of the recipes (Megatron-Core ``cuda_graph_impl`` / ``cuda_graph_scope``), as
#: ``TrainingOptions.cuda_graph_scope``: () = none (eager: every kernel launched by the host),
#: ("full_iteration",) = the whole step captured, else Transformer Engine per-layer graphs of those
#: parts. (model, system, precisions (None = all), (TP, PP, VP, EP, microbatch), first container,
#: last container) -> scope. Sources, read in the code index (NVIDIA-NeMo/Megatron-Bridge,
#: scripts/performance/configs/): gpt_oss/gpt_oss_workload_base_configs.py at 07eea52 (V1/V2, from
#: 26.02): GB300 and B300 BF16 ``cuda_graph_impl="transformer_engine"``, ``cuda_graph_scope=["attn",
#: "moe_router", "moe_preprocess"]`` (V1 EP 64, B300 V2 EP 8, microbatch 4); GB200, B200 and H100 BF16
#: state none, and neither the base config (``WorkloadBaseConfig.cuda_graph_impl=None``, utils/utils.py)
#: nor the library recipe (src/megatron/bridge/recipes/gpt_oss/gpt_oss.py) sets one: Megatron-Core's
#: default, no graphs; GB300/GB200 ``FP8_MX_V2`` ``cuda_graph_impl="full_iteration"`` (26.06 on, with the
#: fused grouped MLP); B300 ``FP8_MX_V2`` has those two lines commented out and inherits B300 BF16 V2's
#: per-layer graphs. qwen3/workload_base_configs.py at 0fa501a (the pre-V1/V2 presets, 25.09-25.11):
#: 30B-A3B GB200 (EP 8, microbatch 4) and B200 (EP 8) ``cuda_graph_impl="local"``,
#: ``cuda_graph_scope="full_iteration"``; 235B-A22B B200 (PP 8 VP 2 EP 8) and H100 (TP 2 PP 8 VP 4 EP 32)
#: none. nemotronh/nemotron_3_workload_base_configs.py at 06e8da4 (V1, from 26.02): Nemotron 3 Nano
#: ``BASE_NEMOTRON_3_NANO_CONFIG`` (EP 8) ``cuda_graph_impl="transformer_engine"``, ``cuda_graph_scope=
#: ["attn", "mamba", "moe_router", "moe_preprocess"]`` on GB300/B300 (microbatch 4) and GB200/B200
#: (microbatch 2); H100 (16 GPUs, microbatch 1) ``FP8_CS_V1`` ``["mamba"]``. The other 26.06+ MXFP8
#: fused-MLP rows of :data:`FUSED_MOE_RECIPES` run full-iteration graphs (stated there). Rows no entry
#: matches keep the option's default (full-iteration graphs: no host launch term).
_NANO_GRAPHS = ("attn", "moe_router", "moe_preprocess", "mamba")  # TrainingOptions order
CUDA_GRAPH_RECIPES = [
    ("GPT OSS 120B", "DGX-GB300", ("BF16",), (1, 1, 1, 64, 4), (26, 2), None, ("attn", "moe_router", "moe_preprocess")),
    ("GPT OSS 120B", "DGX-B300", ("BF16",), (1, 1, 1, 64, 4), (26, 2), None, ("attn", "moe_router", "moe_preprocess")),
    ("GPT OSS 120B", "DGX-B300", ("BF16",), (1, 1, 1, 8, 4), (26, 2), None, ("attn", "moe_router", "moe_preprocess")),
    ("GPT OSS 120B", "DGX-B300", ("MXFP8",), (1, 1, 1, 8, 4), (26, 6), None, ("attn", "moe_router", "moe_preprocess")),
    ("GPT OSS 120B", "DGX-GB200", ("BF16",), (1, 1, 1, 64, 4), (26, 2), None, ()),
    ("GPT OSS 120B", "DGX-B200", ("BF16",), (1, 1, 1, 64, 4), (26, 2), None, ()),
    ("GPT OSS 120B", "DGX-B200", ("BF16",), (1, 1, 1, 8, 4), (26, 2), None, ()),
    ("GPT OSS 120B", "DGX-H100", ("BF16",), (1, 4, 1, 8, 1), (26, 2), None, ()),
    ("Qwen3_30B_a3B", "DGX-GB200", None, (1, 1, 1, 8, 4), (25, 9), (25, 11), ("full_iteration",)),
    ("Qwen3_30B_a3B", "DGX-B200", None, (1, 1, 1, 8, 1), (25, 9), (25, 11), ("full_iteration",)),
    ("Qwen3_235B_a22B", "DGX-B200", None, (1, 8, 2, 8, 1), (25, 9), (25, 11), ()),
    ("Qwen3_235B_a22B", "DGX-H100", None, (2, 8, 4, 32, 1), (25, 9), (25, 11), ()),
    ("Nemotron_3_Nano", "DGX-GB300", None, (1, 1, 1, 8, 4), (26, 2), None, _NANO_GRAPHS),
    ("Nemotron_3_Nano", "DGX-GB200", None, (1, 1, 1, 8, 2), (26, 2), None, _NANO_GRAPHS),
    ("Nemotron_3_Nano", "DGX-B300", None, (1, 1, 1, 8, 4), (26, 2), None, _NANO_GRAPHS),
    ("Nemotron_3_Nano", "DGX-B200", None, (1, 1, 1, 8, 2), (26, 2), None, _NANO_GRAPHS),
    ("Nemotron_3_Nano", "DGX-H100", ("FP8",), (1, 1, 1, 8, 1), (26, 2), None, ("mamba",)),
]


def _num(v: str) -> float | None:
    return float(v) if v not in ("", None) else None


def _container(row: dict) -> tuple[int, ...]:
    return tuple(int(x) for x in row["container"].split("."))


def _as_run(row: dict) -> tuple[int, ...]:
    """The row's (TP, PP, VP, EP, microbatch), empty cells read as 1."""
    return tuple(int(_num(row[k]) or 1) for k in ("tp", "pp", "vp", "ep", "mbs"))


def _fused_moe_recipe(row: dict) -> tuple[bool, bool]:
    """``(fused grouped MLP, EP all-to-all overlapped)`` of a row's recipe (:data:`FUSED_MOE_RECIPES`)."""
    layout, overlap = FUSED_MOE_RECIPES.get((row["model"], row["system"]), (None, False))
    if layout is None or row["precision"] != "MXFP8" or _container(row)[:2] < FUSED_MOE_FIRST_CONTAINER:
        return False, False
    return (True, overlap) if _as_run(row) == layout else (False, False)


def _recompute_recipe(row: dict):
    """``(recompute_modules, EP all-to-all overlapped)`` of a row's recipe, or None (:data:`RECOMPUTE_RECIPES`)."""
    as_run = _as_run(row)
    for model, system, precs, layout, first, modules, overlap in RECOMPUTE_RECIPES:
        if (model, system, layout) == (row["model"], row["system"], as_run) and _container(row)[:2] >= first \
                and (precs is None or row["precision"] in precs):
            return modules, overlap
    return None


def _moe_comm_recipe(row: dict):
    """``(token dispatcher or None, all-to-all overlapped)`` of a row's recipe (:data:`MOE_COMM_RECIPES`)."""
    as_run = _as_run(row)
    for model, system, precs, layout, first, dispatcher, overlap in MOE_COMM_RECIPES:
        if (model, system, layout) == (row["model"], row["system"], as_run) and _container(row)[:2] >= first \
                and (precs is None or row["precision"] in precs):
            return dispatcher, overlap
    return None, False


def _no_recompute_recipe(row: dict) -> bool:
    """Whether a row's performance script turns recompute off (:data:`NO_RECOMPUTE_RECIPES`)."""
    first = NO_RECOMPUTE_RECIPES.get(row["model"])
    return first is not None and _container(row)[:2] >= first


def _not_modelled_recipe(row: dict) -> str | None:
    """What a row's recipe ran that the step model does not model (:data:`NOT_MODELLED_RECIPES`), or None."""
    as_run = _as_run(row)
    for model, system, precs, layout, first, note in NOT_MODELLED_RECIPES:
        if (model, system, layout) == (row["model"], row["system"], as_run) and _container(row)[:2] >= first \
                and (precs is None or row["precision"] in precs):
            return note
    return None


def _offload_recipe(row: dict) -> int:
    """Layers whose activations a row's recipe offloads to the CPU (:data:`OFFLOAD_RECIPES`), or 0."""
    as_run = _as_run(row)
    for model, system, precs, layout, first, layers in OFFLOAD_RECIPES:
        if (model, system, layout) == (row["model"], row["system"], as_run) and _container(row)[:2] >= first \
                and (precs is None or row["precision"] in precs):
            return layers
    return 0


def _no_grad_overlap_recipe(row: dict) -> bool:
    """Whether a row's recipe turns the gradient-reduction overlap off (:data:`NO_GRAD_OVERLAP_RECIPES`)."""
    as_run, release = _as_run(row), _container(row)[:2]
    return any((model, system, layout) == (row["model"], row["system"], as_run) and first <= release <= last
               and (precs is None or row["precision"] in precs)
               for model, system, precs, layout, first, last in NO_GRAD_OVERLAP_RECIPES)


def _tp_overlap_recipe(row: dict) -> bool:
    """Whether a row's recipe overlaps TP communication: TP > 1, except :data:`NO_TP_OVERLAP_PRECISIONS`."""
    return int(_num(row["tp"]) or 1) > 1 and row["precision"] not in NO_TP_OVERLAP_PRECISIONS


def _cuda_graph_recipe(row: dict):
    """``cuda_graph_scope`` of a row's recipe (:data:`CUDA_GRAPH_RECIPES`, the fused MXFP8 recipes), or None."""
    as_run, release = _as_run(row), _container(row)[:2]
    for model, system, precs, layout, first, last, scope in CUDA_GRAPH_RECIPES:
        if (model, system, layout) == (row["model"], row["system"], as_run) and release >= first \
                and (last is None or release <= last) and (precs is None or row["precision"] in precs):
            return scope
    return ("full_iteration",) if _fused_moe_recipe(row)[0] else None
