"""Stage 1: model specs from scaling laws or named architectures.

A :class:`ModelSpec` is an immutable description of a transformer and its
training budget. It comes from

* a named architecture in ``data/models.yaml`` (:func:`named_model`),
* a scaling-law preset and ``d_model`` (:func:`from_preset`), or
* a user mapping / YAML file whose keys are ``ModelSpec`` field names
  (:func:`model_from_mapping`, :func:`model_from_file`).

:func:`resolve_model` accepts any of these. Derived quantities (parameter
counts, FLOPs, loss, critical batch) are properties, computed from the fields.
"""

from __future__ import annotations

from functools import lru_cache

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._data import load_yaml, read_user_yaml
from .errors import InputError, UnknownNameError, from_validation

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
        default=None, description="router GEMM output dtype (Megatron moe_router_dtype): 'fp32' runs the router's "
                                  "backward GEMMs on FP32 operands (TF32 tensor cores) with casts; 'fp64' is "
                                  "accepted but not costed; None: the router in the input's BF16")
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
        if not isinstance(data, dict):
            return data
        data = dict(data)
        d = data.get("d_model")
        if isinstance(d, int) and d > 0:
            rule = _preset_rules("cs-v1")  # defaults follow the scaling-law architecture rules
            if data.get("n_heads") is None:
                data["n_heads"] = max(1, d // rule["head_dim"])
            if data.get("d_ff") is None:
                data["d_ff"] = rule["d_ff_ratio"] * d
        if data.get("n_kv_heads") is None and data.get("n_heads") is not None:
            data["n_kv_heads"] = data["n_heads"]
        if "moe_d_ff" in data:  # Megatron-Core's name (moe_ffn_hidden_size) for one expert's width
            moe = data.pop("moe_d_ff")
            if data.get("d_expert") is None:
                data["d_expert"] = moe
        if data.get("d_expert") is None and data.get("d_ff") is not None:
            data["d_expert"] = data["d_ff"]
        if data.get("head_dim") is None and isinstance(d, int) and isinstance(data.get("n_heads"), int):
            data["head_dim"] = max(1, d // data["n_heads"])
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> ModelSpec:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_kv_heads ({self.n_kv_heads}) must divide n_heads ({self.n_heads})")
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k ({self.top_k}) must be <= n_experts ({self.n_experts})")
        if self.first_dense_layers > self.n_layers:
            raise ValueError("first_dense_layers must be <= n_layers")
        if self.global_batch_tokens is not None and self.global_batch_tokens < self.seq_len:
            raise ValueError(f"global_batch_tokens must be >= seq_len ({self.seq_len})")
        if self.head_dim * self.n_heads != self.d_model and "head_dim" not in self.model_fields_set:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model}), or give head_dim")
        if (self.q_lora_rank or self.qk_rope_head_dim) and not self.is_mla:
            raise ValueError("q_lora_rank / qk_rope_head_dim need kv_lora_rank (multi-head latent attention)")
        if self.is_moe and self.n_moe_layers == 0:
            raise ValueError("n_experts > 1 but moe_layer_every / first_dense_layers leave no MoE layer")
        if self.hybrid_pattern is not None:
            if len(self.hybrid_pattern) != self.n_layers:
                raise ValueError(f"hybrid_pattern has {len(self.hybrid_pattern)} symbols, n_layers is {self.n_layers}")
            if "E" in self.hybrid_pattern and not self.is_moe:
                raise ValueError("hybrid_pattern has MoE layers (E) but n_experts is 1")
            if "M" in self.hybrid_pattern and None in (self.mamba_heads, self.mamba_head_dim, self.mamba_state,
                                                       self.mamba_groups):
                raise ValueError("hybrid_pattern has Mamba layers (M): give mamba_heads, mamba_head_dim, "
                                 "mamba_state and mamba_groups")
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
        """Score and value matmuls, forward + backward, full (non-causal) count as PaLM's MFU."""
        attn = 6.0 * self.n_attention_layers * self.seq_len * self.n_heads * (self.qk_head_dim + self.value_head_dim)
        if not self.n_mamba_layers:
            return attn
        from .perf.ssm import ssd_flops_per_token

        # Mamba-2's SSD core (Dao & Gu 2024), forward + backward = 3x forward, chunk of perf.yaml
        from .perf.constants import default_constants

        chunk = default_constants().ssm_chunk
        return attn + 3.0 * self.n_mamba_layers * ssd_flops_per_token(self.mamba_heads, self.mamba_head_dim,
                                                                      self.mamba_state, chunk)

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


# ---- laws ------------------------------------------------------------------
def chinchilla_loss(n_params: float, tokens: float) -> float:
    """Chinchilla loss ``L(N, D) = E + A / N^alpha + B / D^beta``.

    Parameters
    ----------
    n_params : float
        Parameters N.
    tokens : float
        Training tokens D.

    Returns
    -------
    float
        Loss in nats/token (constants from ``scaling_laws.yaml``).

    References
    ----------
    Hoffmann et al., "Training Compute-Optimal Large Language Models", arXiv 2203.15556,
    2022 (approach 3 fit).
    """
    c = load_yaml("scaling_laws.yaml")["chinchilla"]
    return c["e"] + c["a"] / n_params ** c["alpha"] + c["b"] / tokens ** c["beta"]


def fine_grained_moe_loss(n_active_nonembedding: float, tokens: float, granularity: float = 1.0) -> float:
    """Fine-grained MoE loss ``L(N, D, G) = c + (g / G^gamma + a) / N^alpha + b / D^beta``.

    Parameters
    ----------
    n_active_nonembedding : float
        Active non-embedding parameters N.
    tokens : float
        Training tokens D.
    granularity : float, optional
        G, dense FFN width over one expert's width (default 1).

    Returns
    -------
    float
        Loss in nats/token (constants from ``scaling_laws.yaml``).

    References
    ----------
    Krajewski, Ludziejewski et al., "Scaling Laws for Fine-Grained Mixture of Experts",
    arXiv 2402.07871, 2024.
    """
    c = load_yaml("scaling_laws.yaml")["fine_grained_moe"]
    return (
        c["c"]
        + (c["g"] / granularity ** c["gamma"] + c["a"]) / n_active_nonembedding ** c["alpha"]
        + c["b"] / tokens ** c["beta"]
    )


def critical_batch_tokens(train_flops: float, n_experts: int, rule: dict, seq_len: int) -> float:
    """v1's critical batch: ``B = sqrt(E) (C / 3e23)^(1/6) 2048^2`` tokens, rounded to whole sequences.

    Parameters
    ----------
    train_flops : float
        Training FLOPs C.
    n_experts : int
        Routed experts E.
    rule : dict
        The preset's ``batch_ref_flops``, ``batch_exponent`` and ``batch_ref_tokens``.
    seq_len : int
        Tokens per sequence.

    Returns
    -------
    float
        Tokens (a whole number of sequences, at least one).

    References
    ----------
    Jiang and Chen, CarbonScaling v1, Sec. "Neural Scaling Laws"; Bi et al., "DeepSeek LLM", 2024.
    """
    raw = math.sqrt(n_experts) * (train_flops / rule["batch_ref_flops"]) ** rule["batch_exponent"]
    seqs = max(1, round(raw * rule["batch_ref_tokens"] / seq_len))
    return float(seqs * seq_len)


# ---- presets ---------------------------------------------------------------
def preset_names() -> list[str]:
    """The scaling-law presets of ``scaling_laws.yaml``.

    Returns
    -------
    list of str
        Sorted names (``cs-v1``, ``cs-v1-aggressive-batch``, ``cs-v2``, ...).
    """
    return sorted(load_yaml("scaling_laws.yaml")["presets"])


def _preset_rules(preset: str) -> dict:
    presets = load_yaml("scaling_laws.yaml")["presets"]
    if preset not in presets:
        raise UnknownNameError("preset", preset, presets)
    rule = dict(presets[preset])
    if "base" in rule:
        rule = {**_preset_rules(rule["base"]), **rule}
    return rule


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


# ---- catalog and files -------------------------------------------------------
_CATALOG_META = {"display_name", "source", "notes", "reported_params", "reported_active_params", "aliases"}


def _catalog() -> dict[str, dict]:
    return load_yaml("models.yaml")["models"]


def model_names() -> list[str]:
    """The named architectures of ``data/models.yaml``.

    Returns
    -------
    list of str
        Sorted catalog keys (aliases not included).
    """
    return sorted(_catalog())


def catalog_entry(name: str) -> dict:
    """The raw catalog record (fields plus ``source``/``notes``) of a named model.

    Parameters
    ----------
    name : str
        Catalog key or alias, case-insensitive.

    Returns
    -------
    dict
        The ``models.yaml`` entry.

    Raises
    ------
    UnknownNameError
        No such model (the message lists the known names).
    """
    cat = _catalog()
    key = name.strip().lower()
    if key in cat:
        return cat[key]
    for k, v in cat.items():
        if key in [a.lower() for a in v.get("aliases", [])]:
            return v
    raise UnknownNameError("model", name, cat)


def named_model(name: str) -> ModelSpec:
    """The ``ModelSpec`` of a named architecture.

    Parameters
    ----------
    name : str
        Catalog key or alias (:func:`model_names`).

    Returns
    -------
    ModelSpec
        Validated spec (origin ``models.yaml[key]``).
    """
    entry = catalog_entry(name)
    key = next(k for k, v in _catalog().items() if v is entry)
    fields = {k: v for k, v in entry.items() if k not in _CATALOG_META}
    return model_from_mapping({"name": key, **fields}, origin=f"models.yaml[{key}]")


def _validation_to_input_error(err: ValidationError, origin: str) -> InputError:
    names = [k for k in ModelSpec.model_fields if k not in {"preset", "law_params", "law_train_flops"}]
    e = from_validation(err, extra=f"unknown field (allowed: {', '.join(names)})", known=names)
    return InputError(e.field or origin, e.message)


def model_from_mapping(data: dict, *, origin: str = "model") -> ModelSpec:
    """Validate a mapping of ``ModelSpec`` fields; errors become :class:`InputError`.

    Parameters
    ----------
    data : dict
        ``ModelSpec`` field names to values (numeric strings are read as numbers).
    origin : str, optional
        Field name reported in errors about the whole mapping (default ``'model'``).

    Returns
    -------
    ModelSpec
        The validated spec.
    """
    if not isinstance(data, dict):
        raise InputError(origin, f"must be a mapping of ModelSpec fields, got "
                                 f"{'an empty file' if data is None else type(data).__name__}")
    clean = {k: (_coerce_number(v) if k not in {"name", "preset", "loss_law"} else v) for k, v in data.items()}
    try:
        return ModelSpec(**clean)
    except ValidationError as err:
        raise _validation_to_input_error(err, origin) from None
    except ValueError as err:  # pragma: no cover - pydantic wraps these; kept as a guard
        raise InputError(origin, str(err)) from None


def _coerce_number(v: Any) -> Any:
    """YAML reads ``1.5e12`` as a string; accept numeric strings, and floats that are integers."""
    if isinstance(v, bool):
        return str(v).lower()  # a boolean is not a number: let validation name the field
    if isinstance(v, str) and v.isascii():  # '١٢' is not read as 12 (see cli.number)
        try:
            v = float(v)
        except ValueError:
            return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


def model_from_file(path: str | Path) -> ModelSpec:
    """Read a user model file (YAML, optionally under a top-level ``model:`` key).

    File size and YAML complexity are limited (:func:`carbonscaling._data.read_user_yaml`);
    a gated-looking FFN without ``ffn_gated`` warns (:func:`gated_shape_warning`).

    Parameters
    ----------
    path : str or Path
        The YAML file.

    Returns
    -------
    ModelSpec
        Named after the file's stem unless it gives a ``name``.

    Raises
    ------
    InputError
        Naming ``model_file.FIELD``.
    """
    p = Path(path)
    data = read_user_yaml(p, "model_file")
    data = data.get("model", data) if isinstance(data, dict) else data
    try:
        spec = model_from_mapping(data, origin="model_file")
    except InputError as err:
        if err.field.startswith("model_file"):
            raise
        raise InputError(f"model_file.{err.field}", err.message) from None
    spec = spec if spec.name != "custom" else spec.model_copy(update={"name": p.stem})
    msg = gated_shape_warning(data, spec)
    if msg:
        import warnings

        from .errors import CarbonScalingWarning

        warnings.warn(f"model_file: {msg}", CarbonScalingWarning, stacklevel=2)
    return spec


EXAMPLE_MODEL_FILES = {"dense": "model.yaml", "moe": "model_moe.yaml"}


def example_model_file(kind: str = "dense") -> str:
    """The text of a shipped, commented example model file (``carbonscaling/examples/``).

    Parameters
    ----------
    kind : {'dense', 'moe'}, optional
        Llama-3.1-8B-shaped dense model (default) or Mixtral-shaped MoE.

    Returns
    -------
    str
        YAML text.
    """
    from importlib import resources

    if kind not in EXAMPLE_MODEL_FILES:
        raise InputError("example", f"must be one of {', '.join(EXAMPLE_MODEL_FILES)}, got {kind!r}")
    return (resources.files("carbonscaling") / "examples" / EXAMPLE_MODEL_FILES[kind]).read_text(encoding="utf-8")


def gated_shape_warning(data: dict, spec: ModelSpec) -> str | None:
    """A warning when a model looks gated but does not say ``ffn_gated``.

    Gated means d_ff 2.5..3.75 x d_model: SwiGLU's 8/3 rounded up, as in Llama's 2.7-3.5.

    Parameters
    ----------
    data : dict
        The mapping as the user wrote it.
    spec : ModelSpec
        The spec it validated to.

    Returns
    -------
    str or None
        The message naming both parameter counts, or None.
    """
    if not isinstance(data, dict) or "ffn_gated" in data or "d_ff" not in data:
        return None
    ratio = spec.d_ff / spec.d_model
    if not 2.5 <= ratio <= 3.75:
        return None
    gated = spec.model_copy(update={"ffn_gated": True})
    return (f"d_ff = {ratio:.2f} x d_model is a gated-FFN (SwiGLU) shape but ffn_gated is not given: read as a "
            f"plain 2-matrix FFN, {spec.params_total:.3g} parameters; with ffn_gated: true it would be "
            f"{gated.params_total:.3g}")


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
