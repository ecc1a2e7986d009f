"""Hybrid Mamba-2 / attention / MoE stacks (Nemotron 3 Nano): the model spec and the step model."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import ssm
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import LayoutGrid, TrainingOptions
from carbonscaling.perf.step import layer_times, per_layer
from carbonscaling.scaling import ModelSpec, named_model

NANO = named_model("nemotron-3-nano")


def test_nano_counts_and_parameters():
    assert (NANO.n_mamba_layers, NANO.n_moe_layers, NANO.n_attention_layers, NANO.n_dense_layers) == (23, 23, 6, 0)
    # Reported: 31.6B total, 3.2B active + embeddings (~3.6B); the count here is from the architecture.
    assert NANO.params_total == pytest.approx(31.6e9, rel=0.01)
    assert NANO.params_active == pytest.approx(3.58e9, rel=0.01)
    mamba = ssm.mamba2_params(2688, 64, 64, 128, 8)
    assert NANO.mamba_params_per_layer == mamba


def test_nano_model_flops_count_attention_only_on_attention_layers():
    ssd = ssm.ssd_flops_per_token(64, 64, 128, default_constants().ssm_chunk)
    attn = 6.0 * 6 * NANO.seq_len * 32 * (128 + 128)
    assert NANO.model_flops_per_token == pytest.approx(6.0 * NANO.params_active + attn + 3 * 23 * ssd)


def test_pattern_must_match_the_layers_and_give_mamba_dims():
    base = NANO.model_dump(exclude={"loss_law"})
    with pytest.raises(Exception, match="symbols"):
        ModelSpec(**{**base, "hybrid_pattern": "M*E"})
    with pytest.raises(Exception, match="mamba_heads"):
        ModelSpec(**{**base, "mamba_heads": None})
    with pytest.raises(Exception):
        ModelSpec(**{**base, "hybrid_pattern": "X" * 52})


def _grid(tp=1, mb=1):
    one = np.array([1])
    return LayoutGrid(tp=one * tp, pp=one, dp=one * 8, ep=one * 8, zero=one, mb=one * mb, v=one, rc=0 * one,
                      batch=one * 64, cp=one, etp=one, fsdp=0 * one, rl=-one)


def test_hybrid_layer_average_weights_block_kinds():
    g = _grid()
    sys_, o, c = load_system("H100-SXM"), TrainingOptions(precision="fp8"), default_constants()
    parts = {b: layer_times(NANO, sys_, g, o, c, b == "E", b).time0 for b in "M*E"}
    avg = per_layer(NANO, sys_, g, o, c).time0
    assert avg == pytest.approx((23 * parts["M"] + 6 * parts["*"] + 23 * parts["E"]) / 52)
    # a Mamba block is the mixer alone: its compute is the Mamba-2 layer time plus half a layer's norm traffic
    f, b = ssm.mamba2_layer_times(8192, 2688, 64, 64, 128, 8, c.ssm_chunk, 1, sys_.device, c, "fp8", 1.0,
                                  batched=False)
    assert parts["M"][0] > f + b and parts["M"][0] < 1.2 * (f + b)
