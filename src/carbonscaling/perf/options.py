"""Training options: the software choices every layout of a run shares.

:class:`TrainingOptions` are the software choices that apply to every layout of a run
(precision, FlashAttention, overlap, the Fig. 9 knobs, the layout convention); the layouts
themselves are :mod:`.layout`'s.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..formats import PRECISIONS, canonical_precision, number_format
from .pipeline_layout import parse_pipeline_layout

#: Megatron-Core ``recompute_modules`` (TransformerConfig): what selective recompute repeats.
RECOMPUTE_MODULES = ("core_attn", "moe_act", "layernorm", "mla_up_proj", "mlp", "moe", "shared_experts")
#: Megatron-Core ``cuda_graph_scope`` values: the whole training step, or per-layer graphs of these parts.
CUDA_GRAPH_SCOPES = ("full_iteration", "attn", "mlp", "moe", "moe_router", "moe_preprocess", "mamba")
EP_CONVENTIONS = ("megatron", "cs-v1")
#: GEMM formats whose recipes Transformer Engine runs FP8 attention in (per-tensor delayed/current scaling, MXFP8).
FP8_ATTENTION_FORMATS = ("fp8", "fp8-delayed", "mxfp8", "fp8-qat")
MFU_CONVENTIONS = ("megatron", "palm", "cs-paper")  # carbonscaling.mfu


def _names_in_order(v, allowed: tuple[str, ...], what: str, listed: str) -> tuple[str, ...]:
    """A comma-separated string or a collection of names, checked against ``allowed`` and returned
    as a tuple in ``allowed``'s order (one order keeps equal sets equal: they are cache keys).
    ``ValueError`` naming the allowed values for an unknown name or a value of another type."""
    if isinstance(v, str):
        v = [m.strip() for m in v.split(",") if m.strip()]
    if not isinstance(v, (list, tuple, set, frozenset)):
        raise ValueError(f"expected a list or a comma-separated string of {what}s; allowed: {listed}")
    bad = [m for m in v if m not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad[0]!r}; allowed: {listed}")
    return tuple(m for m in allowed if m in set(v))


def parse_recompute_modules(v) -> tuple[str, ...]:
    """``recompute_modules`` from a list or the CLI's comma-separated string.

    Parameters
    ----------
    v : str or list of str
        Megatron-Core ``recompute_modules`` names, as a collection or as "mla_up_proj,mlp".

    Returns
    -------
    tuple of str
        The modules in :data:`RECOMPUTE_MODULES`' order (``ValueError`` listing the allowed
        modules for an unknown name or a value of another type).
    """
    return _names_in_order(v, RECOMPUTE_MODULES, "module", ", ".join(RECOMPUTE_MODULES))


def parse_cuda_graph_scope(v) -> tuple[str, ...]:
    """``cuda_graph_scope`` from a list or the CLI's comma-separated string.

    Parameters
    ----------
    v : str or list of str
        Megatron-Core ``cuda_graph_scope`` values, as a collection or as "attn,mlp"; "none",
        "" and [] are eager (Megatron-Core ``cuda_graph_impl="none"``).

    Returns
    -------
    tuple of str
        The scopes in :data:`CUDA_GRAPH_SCOPES`' order (``ValueError`` listing the allowed
        scopes for an unknown one or a value of another type, or when ``full_iteration`` is
        combined with a per-layer scope).
    """
    if isinstance(v, str) and v.strip().lower() in ("", "none"):
        return ()
    v = _names_in_order(v, CUDA_GRAPH_SCOPES, "scope", "none, " + ", ".join(CUDA_GRAPH_SCOPES))
    if "full_iteration" in v and len(v) > 1:
        raise ValueError("full_iteration captures the whole step; it cannot be combined with per-layer scopes")
    return v


#: The parser of every list-valued training option: the one place a list or a comma-separated
#: string becomes the option's tuple (TrainingOptions, hence the CLI and the Python API, and the
#: service's request models, :mod:`carbonscaling.service.schemas`).
LIST_OPTION_PARSERS = {"recompute_modules": parse_recompute_modules, "cuda_graph_scope": parse_cuda_graph_scope}


class TrainingOptions(BaseModel):
    """Software choices shared by every layout of a run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Descriptions are the CLI's help (carbonscaling.specs derives the options from them).
    precision: Literal[PRECISIONS] = Field(  # aliases (fp8-cs, FP8-MX, ...) normalised; see formats.yaml
        default="bf16", description="GEMM number format: bf16, fp16, fp8 (fp8-cs), fp8-delayed, fp8-blockwise, "
                                    "mxfp8 (fp8-mx), nvfp4, mxfp4; the device must run it.")
    flash_attention: bool = Field(default=True, description="Fused attention kernels.")
    sequence_parallel: bool = Field(default=True, description="Megatron sequence parallelism with TP.")
    overlap_grad_reduce: bool = Field(default=True, description="Overlap the data-parallel gradient reduction "
                                                                "with the backward pass.")
    grad_reduce_in_fp32: bool = Field(default=True, description="Accumulate and reduce gradients in fp32 "
                                                                "(Megatron DDP grad_reduce_in_fp32); off: in BF16, as "
                                                                "Megatron-Bridge's performance recipes run.")
    overlap_tp_comm: bool = Field(default=False, description="Hide TP collectives under compute.")
    overlap_pp_comm: bool = Field(default=True, description="Overlap pipeline sends with the neighbouring chunk's "
                                                            "compute when interleaving (VP > 1; Megatron "
                                                            "overlap_p2p_comm); with VP = 1 they are exposed.")
    overlap_ep_comm: bool = Field(default=False, description="Hide the expert all-to-all under another "
                                                             "microbatch's compute (Megatron-Core "
                                                             "overlap_moe_expert_parallel_comm); MoE models only: "
                                                             "no effect on a dense model.")
    capacity_factor: float = Field(default=1.0, ge=1.0, le=4.0, description="MoE expert capacity factor.")
    moe_dispatcher: Literal["flex", "alltoall"] = Field(
        default="flex", description="MoE token dispatcher: flex (DeepEP/HybridEP: one network copy per destination "
                                    "node, as Megatron-Bridge's MoE recipes run) or alltoall (one per expert).")
    moe_grouped_gemm: Literal["loop", "fused"] = Field(
        default="loop", description="MoE expert GEMMs: loop (Transformer Engine's grouped GEMM, one cuBLAS GEMM per "
                                    "local expert) or fused (one fused grouped-MLP kernel, TE's CuTe-DSL kernel of "
                                    "recent MXFP8 recipes): no per-expert cost.")
    recompute_modules: tuple[Literal[RECOMPUTE_MODULES], ...] = Field(
        default=("core_attn",), json_schema_extra={"metavar": "MODULES"},
        description="Modules selective recompute repeats (Megatron-Core recompute_modules, comma-separated): "
                    "core_attn, moe_act, layernorm, mla_up_proj, mlp, moe, shared_experts.")
    cuda_graph_scope: tuple[Literal[CUDA_GRAPH_SCOPES], ...] = Field(
        default=("full_iteration",), json_schema_extra={"metavar": "SCOPES"},
        description="CUDA graphs (Megatron-Core cuda_graph_scope, comma-separated; none = eager): full_iteration "
                    "(the whole step: no host launch cost), or per-layer graphs of attn, mlp (dense FFNs), moe, "
                    "moe_router, moe_preprocess (MoE layers: no effect on a dense model), mamba (Mamba layers); "
                    "every kernel outside a graph costs host launch time (perf/host.py).")
    cpu_offload_layers: int = Field(
        default=0, ge=0, le=100_000, json_schema_extra={"metavar": "LAYERS"},
        description="Activation CPU offloading (Megatron-Core cpu_offloading_num_layers; 0 = off): the first LAYERS "
                    "layers' saved activations go to host memory in their forward and come back for their backward "
                    "(Transformer Engine), overlapped with the other layers' compute; needs PP 1, no recompute and a "
                    "device with a host link (data/host_link.yaml).")
    fp8_attention: bool = Field(
        default=False, description="Attention core (the score and value matmuls) in FP8 (Megatron-Core "
                                   "fp8_dot_product_attention: Transformer Engine's cuDNN FP8 fused attention) when "
                                   "the GEMM format is an 8-bit one; off: BF16, as most recipes run it. No effect "
                                   "without fused attention (flash_attention off) or under fp8-blockwise and the FP4 "
                                   "formats, whose recipes Transformer Engine runs with BF16 attention.")
    fused_mlp_dgrad_slowdown: float = Field(
        default=1.0, ge=1.0, le=100.0, json_schema_extra={"metavar": "FACTOR"},
        description="Known-regression factor on the fused grouped MLP's backward dGLU + dbias grouped GEMM (FC2's "
                    "data gradient with the activation and FC1-bias gradients in its epilogue), for a software "
                    "release that shipped a slow kernel (1 = the healthy kernel); fused grouped MLP only "
                    "(moe_grouped_gemm fused).")
    pipeline_layout: str | None = Field(
        default=None, max_length=4000, json_schema_extra={"metavar": "LAYOUT"},
        description="Megatron-Core pipeline_model_parallel_layout: the layers each pipeline chunk holds (E embedding, "
                    "t decoder layer, m MTP layer, L loss; '|' between chunks, chunk i on pipeline rank i mod PP; "
                    "(...)*n and x*n repeat), e.g. Et*4|(t*4|)*14tmL (16 chunks); needs PP pinned (VP = chunks / PP). "
                    "Default: the split pipeline_balance chooses.")
    pipeline_balance: Literal["cost", "layers"] = Field(
        default="cost", description="Pipeline split when no pipeline_layout is pinned: cost (a custom layout, "
                                    "Megatron-Core >= 0.13, whose heaviest rank is lightest with the output layer and "
                                    "MTP modules weighed by their FLOPs in decoder layers; reported as "
                                    "pipeline_layout) or layers (Megatron's classic splits, embedding and loss one "
                                    "layer each: how runs without a layout are split). cs-v1 keeps v1's rule.")
    # v1 Fig. 9 / v2 Fig. 6b knobs (see docs/performance.md).
    dynamic_eviction: bool = Field(default=False, description="Coop-style allocator (less fragmentation).")
    flexible_sharding: bool = Field(default=False, description="LinS/hpZ-style ZeRO-3 within the node.")
    qat: bool = Field(default=False, description="Quantization-aware training: 8-bit compute, memory and "
                                                 "communication.")
    force_balanced_routing: bool = Field(default=False, description="MoE experts get exactly their share of "
                                                                     "tokens (token-drop runs padded to capacity); off: "
                                                                     "random top-k loads the busiest rank more (learned "
                                                                     "routers, and Megatron's "
                                                                     "moe_router_force_load_balancing, which routes on "
                                                                     "random logits).")
    ep_convention: Literal["megatron", "cs-v1"] = Field(
        default="megatron", description="Layout convention: megatron (devices = TP x CP x PP x DP, EP inside "
                                        "DP x CP) or cs-v1 (the papers: EP multiplies the devices).")
    mfu_convention: Literal["megatron", "palm", "cs-paper"] = Field(
        default="megatron", description="How MFU counts model FLOPs (carbonscaling.mfu): megatron (6 x non-embedding "
                                        "matmul weights incl. the logit layer + causal attention counted half), "
                                        "palm (PaLM App. B / torchtitan: 6N without the input embedding + full "
                                        "attention) or cs-paper (the papers: 6 N_active incl. embeddings + full "
                                        "attention).")

    @field_validator("precision", mode="before")
    @classmethod
    def _canonical_precision(cls, v):
        if not isinstance(v, str):
            return v
        try:
            return canonical_precision(v)
        except ValueError as err:  # pydantic adds the field name itself
            raise ValueError(getattr(err, "message", str(err))) from None

    @field_validator("recompute_modules", mode="before")
    @classmethod
    def _module_list(cls, v):
        return parse_recompute_modules(v)  # the CLI passes "mla_up_proj,mlp"

    @field_validator("cuda_graph_scope", mode="before")
    @classmethod
    def _graph_scope(cls, v):
        return parse_cuda_graph_scope(v)

    @field_validator("pipeline_layout", mode="before")
    @classmethod
    def _layout(cls, v):
        if isinstance(v, str):
            v = v.strip() or None
            if v is not None:
                parse_pipeline_layout(v)  # one ValueError naming what is wrong
        return v

    @property
    def selective_modules(self) -> frozenset:
        """Modules selective recompute repeats beyond what FlashAttention already does (core_attn)."""
        return frozenset(self.recompute_modules) - {"core_attn"}

    @property
    def gemm_precision(self) -> str:
        """The format the quantized GEMMs run in (QAT: the papers' 8-bit rate)."""
        if self.qat and not number_format(self.precision).quantized:
            return "fp8-qat"
        return "bf16" if self.precision == "fp16" else self.precision

    def gradient_bytes(self, c) -> float:
        """Bytes per gradient element kept and reduced.

        Parameters
        ----------
        c : PerfConstants
            ``grad_reduce_bytes_bf16`` (fp32 gradients) and ``grad_reduce_bytes_fp16``.

        Returns
        -------
        float
            Bytes: half precision with fp16 or ``grad_reduce_in_fp32=False``, else fp32.
        """
        half = self.precision == "fp16" or not self.grad_reduce_in_fp32
        return c.grad_reduce_bytes_fp16 if half else c.grad_reduce_bytes_bf16

    @property
    def activation_bytes(self) -> float:
        """Bytes of one activation element moved between devices (QAT sends 8-bit)."""
        return 1.0 if self.qat else 2.0

    @property
    def attention_precision(self) -> str:
        """The format of the attention core's matmuls: FP8 with ``fp8_attention`` under an 8-bit GEMM format
        (Transformer Engine's FP8 attention takes per-tensor scales in every FP8 recipe), else BF16."""
        # Transformer Engine has no FP8 fused attention for block-scaled FP8 or NVFP4 recipes (get_attention_backend)
        return "fp8" if self.fp8_attention and self.gemm_precision in FP8_ATTENTION_FORMATS else "bf16"

    @property
    def gemm_input_bytes(self) -> float:
        """Bytes per element of a quantized GEMM's operands as read from HBM (scales included)."""
        return number_format(self.gemm_precision).stored_bytes

    @property
    def legacy(self) -> bool:
        """CarbonScaling v1's layout rules (EP multiplies devices, v1 pipeline/recompute rules)."""
        return self.ep_convention == "cs-v1"
