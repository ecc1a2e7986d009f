"""The performance model's constants, read from ``data/perf.yaml`` and ``data/host.yaml`` (the host
side of a step run without CUDA graphs, :mod:`.host`): values with sources, the one place perf
constants come from."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

from .._data import load_yaml


@dataclass(frozen=True)
class PerfConstants:
    gemm_efficiency_max_default: float
    gemm_in_situ_factor: float
    gemm_tile: int
    gemm_k_overhead: float
    hbm_efficiency: float
    flash_fraction_of_peak: float
    flash_backward_to_forward: float
    flash_reference_head_dim: float
    flash_reference_exp_per_mma_flop: float
    nvlink_efficiency: float
    scale_out_efficiency: float
    ici_efficiency: float
    nvlink_latency_s: float
    scale_out_latency_s: float
    overlap_compute_slowdown: float
    grad_bucket_params: float
    adam_bytes_per_param_step: float
    optimizer_state_bytes_per_param: float
    fragmentation_factor: float
    fragmentation_factor_dynamic_eviction: float
    reserved_gb: float
    logits_bytes: float
    logits_bytes_te: float
    elementwise_fwd_bytes_hidden: float
    elementwise_fwd_bytes_ffn: float
    elementwise_fwd_bytes_ffn_gated: float
    unfused_attention_passes_fwd: float
    unfused_attention_passes_bwd: float
    embedding_bytes_per_token_hidden: float
    mtp_fwd_bytes_hidden: float
    cross_entropy_passes: float
    cross_entropy_native_bytes: float
    cross_entropy_te_bytes: float
    elementwise_bwd_to_fwd: float
    grad_reduce_bytes_bf16: float
    grad_reduce_bytes_fp16: float
    moe_row_alignment: int
    moe_permute_bytes_fwd: float
    moe_expert_overhead_s: float
    moe_clamped_glu_fwd_bytes: float
    moe_clamped_glu_bwd_bytes: float
    moe_expert_bias_fwd_bytes: float
    moe_expert_bias_bwd_bytes: float
    moe_add_bytes: float
    moe_router_fp32_fwd_bytes: float
    moe_router_fp32_bwd_bytes: float
    ssm_chunk: int
    ep_comm_sms: int
    nccl_p2p_channels: int
    fp8_param_gather_formats: tuple
    # data/host.yaml: host seconds per kernel launch, syncs per MoE layer forward, and
    # (forward, backward) kernel launches per module of a layer (perf/host.py)
    host_per_launch_s: float
    host_syncs_per_moe_layer_forward: float
    host_launches_attention: tuple
    host_launches_dense_mlp: tuple
    host_launches_moe_router: tuple
    host_launches_moe_preprocess: tuple
    host_launches_moe_dispatch: tuple
    host_launches_per_local_expert: tuple
    host_launches_mamba: tuple

    @property
    def flash_matmul_fraction(self) -> float:
        """Fraction of peak a fused-attention kernel's matmuls run at, its exponentials set apart.

        ``flash_fraction_of_peak`` was measured on A100 with FlashAttention-2, whose tiles run
        BMM1 -> softmax -> BMM2 one after another, so it includes the exponentials. Per causal score
        a forward + backward pass does ``4 d (1 + b)`` FLOPs (``b = flash_backward_to_forward``) and
        two exponentials; at the reference head dim ``d`` and the A100's exponentials per tensor-core
        FLOP ``r``, ``4 d (1 + b) / f = 4 d (1 + b) / f_mm + 2 / r`` gives the matmul-only fraction
        ``f_mm`` (0.597 for ``f = 0.55``, ``d = 128``, ``r = 16 / 2048``). Derived, not fitted.

        Returns
        -------
        float
            The matmul fraction of peak (dimensionless).
        """
        work = 4.0 * self.flash_reference_head_dim * (1.0 + self.flash_backward_to_forward)
        return work / (work / self.flash_fraction_of_peak - 2.0 / self.flash_reference_exp_per_mma_flop)

    def replace(self, **changes) -> PerfConstants:
        """A copy with some constants changed (for sensitivity studies and calibration).

        Parameters
        ----------
        **changes : float
            New values by field name (units as in the field names and ``data/perf.yaml``).

        Returns
        -------
        PerfConstants
            The copy.

        Raises
        ------
        KeyError
            A name that is not a field.
        """
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise KeyError(f"unknown perf constants: {sorted(unknown)}")
        return PerfConstants(**{**self.__dict__, **changes})


@lru_cache(maxsize=1)
def default_constants() -> PerfConstants:
    """The constants of ``data/perf.yaml`` and ``data/host.yaml`` (each with its source and status
    there), read once.

    Returns
    -------
    PerfConstants
        The shipped constants (``gemm.in_situ_factor`` is the one fitted value; docs/performance.md).
    """
    y = load_yaml("perf.yaml")
    hy = load_yaml("host.yaml")

    def v(section: str, key: str) -> float:
        return y[section][key]["value"]

    return PerfConstants(
        gemm_efficiency_max_default=v("gemm", "efficiency_max_default"),
        gemm_in_situ_factor=v("gemm", "in_situ_factor"),
        gemm_tile=int(v("gemm", "tile")),
        gemm_k_overhead=v("gemm", "k_overhead"),
        hbm_efficiency=v("hbm", "efficiency"),
        flash_fraction_of_peak=v("attention", "flash_fraction_of_peak"),
        flash_backward_to_forward=v("attention", "flash_backward_to_forward"),
        flash_reference_head_dim=v("attention", "flash_reference_head_dim"),
        flash_reference_exp_per_mma_flop=v("attention", "flash_reference_exp_per_mma_flop"),
        nvlink_efficiency=v("network", "nvlink_efficiency"),
        scale_out_efficiency=v("network", "scale_out_efficiency"),
        ici_efficiency=v("network", "ici_efficiency"),
        nvlink_latency_s=v("network", "nvlink_latency_s"),
        scale_out_latency_s=v("network", "scale_out_latency_s"),
        overlap_compute_slowdown=v("overlap", "compute_slowdown"),
        grad_bucket_params=v("overlap", "grad_bucket_params"),
        adam_bytes_per_param_step=v("optimizer", "adam_bytes_per_param_step"),
        optimizer_state_bytes_per_param=v("optimizer", "state_bytes_per_param"),
        fragmentation_factor=v("memory", "fragmentation_factor"),
        fragmentation_factor_dynamic_eviction=v("memory", "fragmentation_factor_dynamic_eviction"),
        reserved_gb=v("memory", "reserved_gb"),
        logits_bytes=v("memory", "logits_bytes"),
        logits_bytes_te=v("memory", "logits_bytes_te"),
        elementwise_fwd_bytes_hidden=v("elementwise", "forward_bytes_per_token_hidden"),
        elementwise_fwd_bytes_ffn=v("elementwise", "forward_bytes_per_token_ffn"),
        elementwise_fwd_bytes_ffn_gated=v("elementwise", "forward_bytes_per_token_ffn_gated"),
        unfused_attention_passes_fwd=v("elementwise", "unfused_attention_passes_forward"),
        unfused_attention_passes_bwd=v("elementwise", "unfused_attention_passes_backward"),
        embedding_bytes_per_token_hidden=v("elementwise", "embedding_bytes_per_token_hidden"),
        mtp_fwd_bytes_hidden=v("elementwise", "mtp_forward_bytes_per_token_hidden"),
        cross_entropy_passes=v("elementwise", "cross_entropy_passes"),
        cross_entropy_native_bytes=v("elementwise", "cross_entropy_native_bytes_per_logit"),
        cross_entropy_te_bytes=v("elementwise", "cross_entropy_te_bytes_per_logit"),
        elementwise_bwd_to_fwd=v("elementwise", "backward_to_forward"),
        grad_reduce_bytes_bf16=v("mixed_precision", "grad_reduce_bytes_bf16"),
        grad_reduce_bytes_fp16=v("mixed_precision", "grad_reduce_bytes_fp16"),
        moe_row_alignment=int(v("moe", "row_alignment")),
        moe_permute_bytes_fwd=v("moe", "permute_bytes_forward"),
        moe_expert_overhead_s=v("moe", "expert_overhead_s"),
        moe_clamped_glu_fwd_bytes=v("moe", "clamped_glu_forward_bytes_per_unit"),
        moe_clamped_glu_bwd_bytes=v("moe", "clamped_glu_backward_bytes_per_unit"),
        moe_expert_bias_fwd_bytes=v("moe", "expert_bias_forward_bytes_per_element"),
        moe_expert_bias_bwd_bytes=v("moe", "expert_bias_backward_bytes_per_element"),
        moe_add_bytes=v("moe", "add_bytes_per_element"),
        moe_router_fp32_fwd_bytes=v("moe", "router_fp32_forward_bytes_per_logit"),
        moe_router_fp32_bwd_bytes=v("moe", "router_fp32_backward_bytes_per_element"),
        ssm_chunk=int(v("ssm", "chunk")),
        ep_comm_sms=int(v("overlap", "ep_comm_sms")),
        nccl_p2p_channels=int(v("overlap", "nccl_p2p_channels")),
        fp8_param_gather_formats=tuple(v("mixed_precision", "fp8_param_gather_formats")),
        host_per_launch_s=hy["per_launch_s"]["value"],
        host_syncs_per_moe_layer_forward=hy["syncs_per_moe_layer_forward"]["value"],
        **{f"host_launches_{k}": tuple(e["value"]) for k, e in hy["launches"].items()},
    )
