"""The model spec: :class:`ModelSpec`, one LLM training run's architecture and budget.

Fields are validated and defaulted (missing heads and FFN width follow the cs-v1
architecture rules of ``data/scaling_laws.yaml``; both rules are :mod:`carbonscaling.model_rules`'s
functions); derived quantities (layer structure,
parameter counts, FLOPs, critical batch, loss) are properties computed from the fields,
with the laws of :mod:`carbonscaling.scaling_laws`. :mod:`carbonscaling.scaling` builds
specs from presets, the catalog and files.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .model_rules import check_consistency, fill_defaults
from .scaling_laws import _preset_rules, chinchilla_loss, critical_batch_tokens, fine_grained_moe_loss

PositiveInt = Field(gt=0, le=10**9)
LossLaw = Literal["chinchilla", "fine_grained_moe"]


class ModelSpec(BaseModel):
    """Architecture and training budget of one LLM training run.

    The CarbonScaling papers' fields (width, depth, heads, FFN, experts, tokens) come
    first; the rest refine real architectures (gated FFNs, fine-grained experts,
    leading dense layers) and default to the plain GPT layout.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    d_model: int = Field(gt=0, le=10**8)
    n_layers: int = Field(gt=0, le=10**6)
    n_heads: int | None = Field(default=None, gt=0, le=10**7, description="default d_model / head_dim of cs-v1")
    n_kv_heads: int | None = Field(default=None, gt=0, le=10**7, description="default n_heads (MHA)")
    d_ff: int | None = Field(default=None, gt=0, le=10**9, description="default d_ff_ratio (4) x d_model, cs-v1")
    vocab: int = Field(default=51200, gt=0, le=10**8)
    n_experts: int = Field(default=1, gt=0, le=10**6)
    top_k: int = Field(default=1, gt=0, le=10**6)
    n_shared_experts: int = Field(default=0, ge=0, le=10**6)
    moe_layer_every: int = Field(default=1, gt=0, le=10**6)
    seq_len: int = Field(default=2048, gt=0, le=10**8)
    tokens: float | None = Field(default=None, gt=0, le=1e24, description="default 20 x params_total (Chinchilla)")
    global_batch_tokens: float | None = Field(
        default=None, gt=0, le=1e15, description="default: critical batch of the cs-v1 rule"
    )
    # Refinements for real architectures.
    d_expert: int | None = Field(default=None, gt=0, le=10**9, description="FFN width of one expert; default d_ff")
    first_dense_layers: int = Field(default=0, ge=0, le=10**6)
    ffn_gated: bool = Field(default=False, description="SwiGLU/GeGLU: three FFN matrices instead of two")
    tied_embeddings: bool = False
    head_dim: int | None = Field(default=None, gt=0, le=10**6,
                                 description="default d_model / n_heads; with MLA the no-RoPE query/key head dim")
    d_shared_expert: int | None = Field(default=None, gt=0, le=10**9, description="width of one shared expert; default d_expert")
    # Multi-head latent attention (DeepSeek-V2/V3, Kimi K2): on when kv_lora_rank is given.
    q_lora_rank: int | None = Field(default=None, gt=0, le=10**7, description="MLA query compression; None: full-rank Q")
    kv_lora_rank: int | None = Field(default=None, gt=0, le=10**7, description="MLA key/value latent width")
    qk_rope_head_dim: int = Field(default=0, ge=0, le=10**6, description="MLA decoupled RoPE key/query dims per head")
    v_head_dim: int | None = Field(default=None, gt=0, le=10**6, description="value head dim; default head_dim")
    mtp_layers: int = Field(default=0, ge=0, le=100, description="multi-token-prediction modules (each a layer + logits)")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0,
                           description="hidden/attention dropout; Megatron's default 0.1, 0 for most post-2022 LLMs")
    # Sliding-window attention (gpt-oss, Gemma, Mistral): Megatron-Core window_size / window_attn_skip_freq.
    window_size: int | None = Field(default=None, gt=0, le=10**9,
                                    description="sliding-window attention: keys each query sees (Megatron "
                                                "window_size[0]); None: full causal attention")
    window_attn_skip_freq: int | None = Field(default=None, ge=1, le=10**6,
                                              description="every N-th attention layer keeps full attention "
                                                          "(Megatron window_attn_skip_freq); None: all windowed")
    # Details that add memory traffic, not FLOPs (Megatron-Core TransformerConfig names; gpt-oss has both).
    activation_func_clamp_value: float | None = Field(
        default=None, gt=0, le=1e6, description="clamped GLU: the gate is clamped to <= v and the linear half to "
                                                 "[-v, v] before the activation (Megatron activation_func_clamp_value; "
                                                 "gpt-oss 7); None: no clamp")
    add_bias_linear: bool = Field(default=False, description="linear layers carry biases (Megatron add_bias_linear; "
                                                             "gpt-oss); parameters not counted (negligible)")
    moe_router_dtype: Literal["fp32", "fp64"] | None = Field(
        default=None, description="Megatron moe_router_dtype: 'fp32' = FP32 logits, casts and TF32 backward "
                                  "GEMMs (perf/moe.py router_time); 'fp64' not costed; None: the input's BF16")
    cross_entropy_fusion_impl: Literal["native", "te"] | None = Field(
        default=None, description="Megatron cross_entropy_fusion_impl of the loss: 'native' = Megatron-Core's fused "
                                  "FP32 cross entropy, 'te' = Transformer Engine's in-place BF16 kernels "
                                  "(perf/kernels.py cross_entropy_bytes); None: the recipe does not say")
    # Hybrid Mamba-2 / attention / MoE stacks (Nemotron-H, Nemotron 3): one block per layer.
    hybrid_pattern: str | None = Field(default=None, pattern=r"^[ME*-]+$",
                                       description="Megatron hybrid_override_pattern, one symbol per layer: "
                                                   "M Mamba-2 mixer, * attention, E MoE FFN, - dense MLP")
    mamba_heads: int | None = Field(default=None, gt=0, le=10**6, description="Mamba-2 heads per mixer")
    mamba_head_dim: int | None = Field(default=None, gt=0, le=10**6, description="Mamba-2 head dim (P)")
    mamba_state: int | None = Field(default=None, gt=0, le=10**6, description="Mamba-2 state size (N)")
    mamba_groups: int | None = Field(default=None, gt=0, le=10**6, description="Mamba-2 B/C groups (G)")
    name: str = "custom"
    # Set only by scaling-law presets: the preset's own N and C, kept verbatim.
    preset: str | None = None
    law_params: float | None = Field(default=None, gt=0)
    law_train_flops: float | None = Field(default=None, gt=0)
    loss_law: LossLaw | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        return fill_defaults(data)

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelSpec:
        check_consistency(self)
        return self

    # ---- layer structure -------------------------------------------------
    @property
    def is_moe(self) -> bool:
        """True when the model has more than one routed expert per MoE layer."""
        return self.n_experts > 1

    @property
    def n_moe_layers(self) -> int:
        """Layers whose FFN is a mixture of experts (after ``first_dense_layers``, every
        ``moe_layer_every``; in a hybrid stack the ``E`` blocks)."""
        if not self.is_moe:
            return 0
        if self.hybrid_pattern is not None:
            return self.hybrid_pattern.count("E")
        return (self.n_layers - self.first_dense_layers) // self.moe_layer_every

    @property
    def n_dense_layers(self) -> int:
        """Layers with a dense FFN (in a hybrid stack: the ``-`` blocks)."""
        if self.hybrid_pattern is not None:
            return self.hybrid_pattern.count("-")
        return self.n_layers - self.n_moe_layers

    @property
    def is_hybrid(self) -> bool:
        """True for a hybrid stack (``hybrid_pattern`` given: Mamba, attention, MoE and MLP blocks)."""
        return self.hybrid_pattern is not None

    @property
    def n_attention_layers(self) -> int:
        """Layers with self-attention (every layer unless a hybrid pattern says otherwise)."""
        return self.hybrid_pattern.count("*") if self.is_hybrid else self.n_layers

    @property
    def windowed_layer_share(self) -> float:
        """Share of attention layers with a sliding window: ``(N - 1) / N`` for Megatron's
        ``window_attn_skip_freq = N`` (one full layer after ``N - 1`` windowed ones), all with no
        skip frequency, none without a window."""
        if self.window_size is None:
            return 0.0
        n = self.window_attn_skip_freq
        return 1.0 if n is None else (n - 1) / n

    @property
    def n_mamba_layers(self) -> int:
        """Mamba-2 blocks (``M`` in ``hybrid_pattern``; 0 otherwise)."""
        return self.hybrid_pattern.count("M") if self.is_hybrid else 0

    @property
    def mamba_params_per_layer(self) -> int:
        """Parameters (count) of one Mamba-2 mixer (:func:`carbonscaling.perf.ssm.mamba2_params`);
        0 without Mamba layers."""
        if not self.n_mamba_layers:
            return 0
        from .perf.ssm import mamba2_params

        return int(mamba2_params(self.d_model, self.mamba_heads, self.mamba_head_dim, self.mamba_state,
                                 self.mamba_groups))

    @property
    def ffn_matrices(self) -> int:
        """Weight matrices per FFN: 3 gated (SwiGLU), 2 plain."""
        return 3 if self.ffn_gated else 2

    @property
    def fc1_width_factor(self) -> float:
        """FC1's output width over the FFN width: 2 gated (gate and up projections in one GEMM,
        Megatron-Core's ``linear_fc1`` with ``gated_linear_unit``), 1 plain (``ffn_matrices - 1``)."""
        return float(self.ffn_matrices - 1)

    @property
    def d_attn(self) -> int:
        """Width of the concatenated attention heads (n_heads x head_dim)."""
        return self.n_heads * self.head_dim

    @property
    def is_mla(self) -> bool:
        """True for multi-head latent attention (``kv_lora_rank`` given; DeepSeek-V2/V3)."""
        return self.kv_lora_rank is not None

    @property
    def qk_head_dim(self) -> int:
        """Query/key dims per head in the score matmul (MLA: no-RoPE + RoPE parts)."""
        return self.head_dim + self.qk_rope_head_dim

    @property
    def value_head_dim(self) -> int:
        """Value dimension per head (``v_head_dim``, else ``head_dim``)."""
        return self.v_head_dim or self.head_dim

    @property
    def shared_expert_width(self) -> int:
        """FFN width of one shared expert (``d_shared_expert``, else ``d_expert``)."""
        return self.d_shared_expert or self.d_expert

    @property
    def granularity(self) -> float:
        """Krajewski et al.'s G: dense FFN width over one expert's width (1 for dense models)."""
        return self.d_ff / self.d_expert if self.is_moe else 1.0

    # ---- parameter counts --------------------------------------------------
    @property
    def attn_params_per_layer(self) -> int:
        """Attention parameters (count) of one layer: Q, K, V and output projections (GQA by
        ``n_kv_heads``; MLA per DeepSeek-V2 Sec. 2.1.2)."""
        d, hd, nh = self.d_model, self.head_dim, self.n_heads
        if not self.is_mla:
            return d * hd * (nh + 2 * self.n_kv_heads) + nh * hd * d
        # MLA (DeepSeek-V2 Sec. 2.1.2; Megatron-Core MLASelfAttention): low-rank Q (or full-rank),
        # joint K/V latent plus the shared RoPE key, up-projection to per-head K (no-RoPE) and V,
        # latent RMSNorm gains, output projection.
        q = (d * self.q_lora_rank + self.q_lora_rank * nh * self.qk_head_dim + self.q_lora_rank
             if self.q_lora_rank else d * nh * self.qk_head_dim)
        kv = (d * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
              + self.kv_lora_rank * nh * (hd + self.value_head_dim))
        return q + kv + nh * self.value_head_dim * d

    @property
    def dense_ffn_params(self) -> int:
        """Parameters (count) of one dense FFN: ``ffn_matrices x d_model x d_ff``."""
        return self.ffn_matrices * self.d_model * self.d_ff

    @property
    def expert_params(self) -> int:
        """Parameters of one expert's FFN."""
        return self.ffn_matrices * self.d_model * self.d_expert

    @property
    def router_params(self) -> int:
        """Router parameters (count) of one MoE layer: ``d_model x n_experts`` (0 for dense models)."""
        return self.d_model * self.n_experts if self.is_moe else 0

    @property
    def embedding_params(self) -> int:
        """Input embedding plus output layer parameters (count; one matrix when tied)."""
        return self.vocab * self.d_model * (1 if self.tied_embeddings else 2)

    @property
    def _norm_params(self) -> int:
        return 2 * self.d_model * self.n_layers + self.d_model

    @property
    def shared_expert_params(self) -> int:
        """Parameters of the shared experts of one MoE layer."""
        return self.n_shared_experts * self.ffn_matrices * self.d_model * self.shared_expert_width

    def _params(self, routed_experts: int) -> float:
        moe = routed_experts * self.expert_params + self.shared_expert_params + self.router_params
        return float(self.n_attention_layers * self.attn_params_per_layer + self.n_dense_layers * self.dense_ffn_params
                     + self.n_mamba_layers * self.mamba_params_per_layer
                     + self.n_moe_layers * moe + self._norm_params + self.embedding_params)

    @property
    def params_total(self) -> float:
        """Every weight: attention, FFN/experts, router, norms, embeddings."""
        return self._params(self.n_experts)

    @property
    def params_active(self) -> float:
        """Weights one token touches (top-k + shared experts), embeddings included."""
        return self._params(self.top_k)

    @property
    def params_active_nonembedding(self) -> float:
        """Active parameters (count) without embeddings: the N of the fine-grained MoE law."""
        return self.params_active - self.embedding_params

    @property
    def params_law(self) -> float:
        """The preset's own N (v1: ``2 d d_ff L E``), else the full count."""
        return self.law_params if self.law_params is not None else self.params_total

    # ---- budget ------------------------------------------------------------
    @property
    def train_tokens(self) -> float:
        """Training tokens D (``tokens``, else the cs-v1 tokens-per-parameter rule)."""
        if self.tokens is not None:
            return self.tokens
        return _preset_rules("cs-v1")["tokens_per_param"] * self.params_total

    @property
    def train_flops(self) -> float:
        """The budget C: the preset's ``6 N D / E``, else ``6 N_active D``."""
        if self.law_train_flops is not None:
            return self.law_train_flops
        return 6.0 * self.params_active * self.train_tokens

    @property
    def attention_flops_per_token(self) -> float:
        """Score and value matmuls, forward + backward, full (non-causal) count as PaLM's MFU, and the
        Mamba-2 SSD cores of a hybrid stack (:func:`carbonscaling.mfu.ssd_flops_per_token`)."""
        from .mfu import score_flops_per_token, ssd_flops_per_token

        attn = score_flops_per_token(self)
        if not self.n_mamba_layers:
            return attn
        return attn + ssd_flops_per_token(self)  # Mamba-2's SSD cores (Dao & Gu 2024), forward + backward

    @property
    def model_flops_per_token(self) -> float:
        """``6 N_active`` + attention: what one token costs an ideal run (no recompute)."""
        return 6.0 * self.params_active + self.attention_flops_per_token

    @property
    def model_flops(self) -> float:
        """FLOPs an ideal run executes (no recompute). MFU's numerator."""
        return self.model_flops_per_token * self.train_tokens

    @property
    def batch_tokens(self) -> float:
        """Global batch in tokens (``global_batch_tokens``, else v1's critical batch, :func:`critical_batch_tokens`)."""
        if self.global_batch_tokens is not None:
            return float(self.global_batch_tokens)
        rule = _preset_rules("cs-v1")
        return critical_batch_tokens(self.train_flops, self.n_experts, rule, self.seq_len)

    @property
    def batch_sequences(self) -> int:
        """Global batch in sequences (``batch_tokens / seq_len``, rounded, at least 1)."""
        return max(1, int(round(self.batch_tokens / self.seq_len)))

    @property
    def steps(self) -> float:
        """Optimizer steps: ``train_tokens / (batch_sequences x seq_len)``."""
        return self.train_tokens / (self.batch_sequences * self.seq_len)

    @property
    def loss(self) -> float:
        """Final loss (nats/token) by the model's law: Chinchilla (dense) or fine-grained MoE."""
        law = self.loss_law or ("fine_grained_moe" if self.is_moe else "chinchilla")
        if law == "chinchilla":
            return chinchilla_loss(self.params_law, self.train_tokens)
        return fine_grained_moe_loss(self.params_active_nonembedding, self.train_tokens, self.granularity)

    def summary(self) -> dict[str, Any]:
        """Derived quantities as plain numbers (the ``model`` block of ``--json``).

        Returns
        -------
        dict
            Shape fields, parameter counts (``params_total``, ``params_active``, ``params_law``),
            ``tokens``, ``train_flops`` and ``model_flops`` (FLOPs), the global batch (tokens and
            sequences) and ``loss`` (nats/token).
        """
        return {
            "name": self.name,
            "preset": self.preset,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "d_ff": self.d_ff,
            "n_experts": self.n_experts,
            "top_k": self.top_k,
            "seq_len": self.seq_len,
            "params_total": self.params_total,
            "params_active": self.params_active,
            "params_law": self.params_law,
            "tokens": self.train_tokens,
            "train_flops": self.train_flops,
            "model_flops": self.model_flops,
            "global_batch_tokens": self.batch_sequences * self.seq_len,
            "global_batch_sequences": self.batch_sequences,
            "loss": self.loss,
        }
