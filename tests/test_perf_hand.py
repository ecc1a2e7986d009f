"""Pipeline splits and schedule, hybrid (Mamba-2) activation memory and weight bytes against
hand calculations, plus the invariants every pipeline split must keep."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import Layout, TrainingOptions
from carbonscaling.perf.memory import _mamba_activations, activation_bytes_per_layer, linear_weight_bytes
from carbonscaling.perf.pipeline import (interleave_options, legacy_stage_split, pipeline_time, stage_layers,
                                         stage_split)
from carbonscaling.scaling import named_model

from helpers import layout_grids, one_layout

C = default_constants()
NANO = named_model("nemotron-3-nano")   # 52 layers: 23 Mamba-2, 23 MoE, 6 attention


# ---- CarbonScaling v1's split --------------------------------------------------------------
@pytest.mark.parametrize("L,pp,want", [
    (8, 4, (2, 2, 2)),      # even
    (10, 4, (2, 3, 2)),     # 2 extra layers go to the 2 middle stages first
    (11, 4, (3, 3, 2)),     # the third extra layer to the first stage
    (9, 4, (2, 3, 2)),      # one extra layer: a middle stage holds 3
    (5, 2, (3, 0, 2)),      # no middle stage: the extra layer goes first
    (4, 2, (2, 0, 2)),
    (7, 1, (7, 0, 0)),
])
def test_legacy_stage_split_by_hand(L, pp, want):
    assert legacy_stage_split(L, pp) == want


# ---- Megatron-Core's splits ----------------------------------------------------------------
@pytest.mark.parametrize("L,pp,vp,custom,want", [
    (62, 4, 3, True, (15, 16, 15)),     # only pipeline_model_parallel_layout: (62 + 2) / 4 = 16, ends hold 15
    (62, 4, 3, False, None),            # ... which is the only way
    (15, 10, 1, False, (4, 1, 3)),      # first/last-stage counts: 8 middle stages of 1, 7 at the ends
    (15, 10, 1, True, (4, 1, 3)),       # the custom layout would leave first and last stage empty
    (30, 2, 1, True, (15, 0, 15)),
    (31, 2, 1, True, (16, 0, 15)),      # L + 1 even: the last stage (logits) holds one fewer
    (32, 1, 1, True, (32, 0, 0)),
    (32, 1, 2, True, None),             # VP needs PP > 1
    (8, 4, 3, True, None),              # 12 chunks > 8 + 2
])
def test_stage_split_by_hand(L, pp, vp, custom, want):
    assert stage_split(L, pp, vp, custom=custom) == want


@settings(max_examples=200, deadline=None)
@given(L=st.integers(1, 130), pp=st.integers(1, 32), vp=st.integers(1, 8), custom=st.booleans())
def test_stage_split_invariants(L, pp, vp, custom):
    s = stage_split(L, pp, vp, custom=custom)
    if pp == 1:
        assert s == ((L, 0, 0) if vp == 1 else None)
        return
    if pp * vp > L + 2:
        assert s is None
        return
    if s is None:
        return
    first, mid, last = s
    assert min(first, mid, last) >= 0 and first + last > 0
    if pp == 2:
        assert mid == 0 and first + last == L
    elif custom:
        # the custom layout's middle stages differ by at most one layer; `mid` is the heaviest
        assert first + (pp - 2) * (mid - 1) + last < L <= first + (pp - 2) * mid + last
    else:
        assert first + (pp - 2) * mid + last == L   # every layer on one stage
    if L % (pp * vp) == 0:
        assert max(first, mid, last) <= L // pp     # an even split is never beaten by a heavier one


def test_stage_layers_vectorised_matches_scalar():
    pp = np.array([1, 2, 4, 8, 8, 4])
    vp = np.array([1, 1, 2, 8, 3, 3])
    f, m, la = stage_layers(126, pp, vp)
    for i in range(len(pp)):
        s = stage_split(126, int(pp[i]), int(vp[i]))
        assert (f[i], m[i], la[i]) == (s if s is not None else (-1, -1, -1))
    f, m, la = stage_layers(11, np.array([4]), np.array([1]), legacy=True)
    assert (f[0], m[0], la[0]) == (3, 3, 2)


def test_interleave_options():
    assert interleave_options(32, 1) == [1]
    assert interleave_options(126, 8) == [v for v in range(1, 9) if stage_split(126, 8, v, custom=False)]
    assert 8 in interleave_options(126, 8)   # Llama 3.1 405B's PP 8 x VP 8
    assert interleave_options(32, 4, legacy=True) == [1, 2, 4, 8]     # 8 layers per stage
    assert interleave_options(34, 4, legacy=True) == [1, 2, 4]        # uneven: v1's (1, 2, 4)
    assert interleave_options(6, 4, legacy=True) == [1]               # 1 layer per stage


def test_pipeline_time_by_hand():
    # 8 microbatches, 4 stages of 1 s, no interleave: (m + p - 1) stage times
    assert pipeline_time(8, 1.0, 4.0, 1) == pytest.approx(11.0)
    # interleave 2: the bubble halves: 8 + 3/2
    assert pipeline_time(8, 1.0, 4.0, 2) == pytest.approx(9.5)
    # fewer microbatches than stages: one microbatch's trip binds, S + (m - 1) t / v
    assert pipeline_time(2, 1.0, 8.0, 1) == pytest.approx(9.0)
    assert pipeline_time(2, 1.0, 8.0, 2) == pytest.approx(8.5)


# ---- activation memory of a hybrid stack ---------------------------------------------------
_grid = layout_grids(tp=2, pp=1, dp=1, microbatch=1, global_batch_sequences=8)


def test_mamba2_activations_by_hand():
    # Nemotron 3 Nano's mixer: 64 heads x 64 = 4096 inner width, 8 groups of state 128
    d_inner = 64 * 64
    in_w = 2 * d_inner + 2 * 8 * 128 + 64          # z, x, B, C, dt (saved by the combined SSD function)
    # + out_x (SSD output before the z gate) and y (the norm's input); the conv output is recomputed
    for tp, e, gi in ((1, 2.0, 2.0), (2, 2.0, 1.0), (4, 4.0, 1.0)):
        got = _mamba_activations(NANO, _grid(tp=tp), e, gi)
        assert float(got[0]) == pytest.approx((e * (in_w + d_inner + d_inner) + gi * d_inner) / tp)
    # Nano, TP 1, BF16: 2 x (10,304 + 8,192) + 2 x 4,096 = 45,184 bytes per token
    assert float(_mamba_activations(NANO, _grid(tp=1), 2.0, 2.0)[0]) == 45_184


def test_hybrid_unfused_attention_scores_only_on_attention_layers():
    # Without flash attention each attention layer keeps the s x s scores: n_heads s / TP
    # values per token in BF16; averaged over the 52-layer pattern only 6 layers have them.
    g = _grid(tp=2)
    flash = activation_bytes_per_layer(NANO, g, TrainingOptions(flash_attention=True))[1]
    plain = activation_bytes_per_layer(NANO, g, TrainingOptions(flash_attention=False))[1]
    tokens, s = 8192, 8192
    scores = NANO.n_heads * s * 2.0 / 2 * 6 / 52
    assert float(plain[0] - flash[0]) == pytest.approx(tokens * scores, rel=1e-12)
    # full recompute keeps only each layer's input: tokens x d_model x 2 bytes / SP 2
    g_full = _grid(recompute="full")
    kept, _, layer_input = activation_bytes_per_layer(NANO, g_full, TrainingOptions(flash_attention=False))
    assert float(kept[0]) == float(layer_input[0]) == pytest.approx(tokens * NANO.d_model * 2.0 / 2)


# ---- weight bytes per parameter ------------------------------------------------------------
def test_linear_weight_bytes():
    assert linear_weight_bytes(TrainingOptions(), C) == 2.0            # BF16: the weight itself
    fp8 = linear_weight_bytes(TrainingOptions(precision="fp8"), C)
    mx = linear_weight_bytes(TrainingOptions(precision="mxfp8"), C)
    # quantized copies (row + column-wise) are 1 byte per value; FP8 and MXFP8 gather them
    # as the parameters (no BF16 weight on top); the copies' scales make MXFP8's > 1 byte
    assert 1.0 <= fp8 <= 2.0 and 1.0 <= mx <= 2.5
    assert linear_weight_bytes(TrainingOptions(precision="fp8"), C, columnwise_native=True) <= fp8
    no_gather = C.replace(fp8_param_gather_formats=())
    assert linear_weight_bytes(TrainingOptions(precision="fp8"), no_gather) == pytest.approx(2.0 + fp8)


# ---- attention kernels and layout validation (fresh-seed survivors) ------------------------
def test_flash_attention_time_by_hand():
    from carbonscaling.hardware import load_system
    from carbonscaling.perf.kernels import flash_attention_time

    dev = load_system("H100").device
    # causal: half of the 4 b s^2 d score and value FLOPs, at the flash share of the in-situ peak
    flops = 4.0 * 64 * 8192 ** 2 * 128 / 2
    rate = dev.peak_flops("bf16") * C.flash_fraction_of_peak * C.gemm_in_situ_factor
    f, b = flash_attention_time(64, 8192, 128, dev, C)
    assert f == pytest.approx(flops / rate, rel=1e-12)
    assert b == pytest.approx(C.flash_backward_to_forward * flops / rate, rel=1e-12)


def test_training_options_normalise_precision_aliases():
    assert TrainingOptions(precision="fp8-cs").precision == "fp8"
    assert TrainingOptions(precision="BF16").precision == "bf16"
    with pytest.raises(ValueError):
        TrainingOptions(precision="fp7")
    with pytest.raises(ValueError):
        TrainingOptions(ep_convention="deepspeed")


@pytest.mark.parametrize("field", ["tp", "pp", "dp", "cp", "ep", "etp", "microbatch", "vp"])
def test_layout_fields_below_one_are_refused(field):
    base = {"tp": 1, "pp": 1, "dp": 1, "global_batch_sequences": 8}
    with pytest.raises(ValueError, match=field):
        Layout(**{**base, field: 0})
    assert getattr(Layout(**{**base, field: 1}), "interleave" if field == "vp" else field) == 1


def test_zero3_weights_are_the_shard_plus_one_layers_gather_buffers():
    from carbonscaling.hardware import load_system
    from carbonscaling.perf.memory import memory_per_device, nonexpert_params_per_layer
    from carbonscaling.scaling import ModelSpec

    m = ModelSpec(d_model=2048, n_layers=16, n_heads=16, vocab=32000, seq_len=2048, tokens=1e10,
                  global_batch_tokens=64 * 2048, name="m")
    h100 = load_system("H100")
    for dp in (1, 2, 8):
        g = one_layout(tp=1, pp=1, dp=dp, zero=3, microbatch=1, global_batch_sequences=64)
        mem = memory_per_device(m, h100, g, TrainingOptions(), C, np.array([16]), np.array([0]))
        p = float(mem.params_dense[0])
        # BF16 weights sharded over DP; with more than one shard, one layer's gathered weights
        # (forward and backward copies, BF16) and its gradient (4 bytes) in flight
        buffers = (2 * 2.0 + 4.0) * nonexpert_params_per_layer(m) if dp > 1 else 0.0
        assert float(mem.weights[0]) == pytest.approx(2.0 * p / dp + buffers, rel=1e-12), dp
        # one microbatch in flight on the only stage: 16 layers' activations plus the FP32 logits
        kept = float(activation_bytes_per_layer(m, g, TrainingOptions())[0][0])
        logits = 2048 * 32000 * C.logits_bytes
        assert float(mem.activations[0]) == pytest.approx(16 * kept + logits, rel=1e-12)
    mtp = m.model_copy(update={"mtp_layers": 1})   # an MTP module's logits too
    mem = memory_per_device(mtp, h100, g, TrainingOptions(), C, np.array([16]), np.array([0]))
    kept = float(activation_bytes_per_layer(mtp, g, TrainingOptions())[0][0])
    assert float(mem.activations[0]) == pytest.approx(16 * kept + 2 * 2048 * 32000 * C.logits_bytes, rel=1e-12)


def _small(**kw):
    from carbonscaling.scaling import ModelSpec

    return ModelSpec(**{"d_model": 2048, "n_layers": 16, "n_heads": 16, "vocab": 32000, "seq_len": 2048,
                        "tokens": 1e10, "global_batch_tokens": 64 * 2048, "name": "m", **kw})


def test_unfused_scores_with_dropout_and_selective_recompute():
    m = _small(dropout=0.1)
    g = _grid(tp=2)
    sel = _grid(recompute="selective")
    flash = activation_bytes_per_layer(m, g, TrainingOptions(flash_attention=True))[0]
    plain = activation_bytes_per_layer(m, g, TrainingOptions(flash_attention=False))[0]
    # each attention layer keeps the s x s scores (BF16), the softmax output (BF16) and the
    # dropout mask (1 byte): n_heads s (2 + 2 + 1) / TP bytes per token
    assert float(plain[0] - flash[0]) == pytest.approx(2048 * 16 * 2048 * 5.0 / 2, rel=1e-12)
    # selective recompute drops exactly those
    sel_plain = activation_bytes_per_layer(m, sel, TrainingOptions(flash_attention=False))[0]
    assert float(sel_plain[0]) == pytest.approx(float(flash[0]), rel=1e-12)


def test_a_heavier_middle_stage_holds_its_interleaved_in_flight_microbatches():
    from carbonscaling.hardware import load_system
    from carbonscaling.perf.memory import memory_per_device

    m = _small(vocab=1024)
    g = one_layout(tp=1, pp=4, dp=1, vp=2, microbatch=1, global_batch_sequences=8)
    o = TrainingOptions()
    mem = memory_per_device(m, load_system("H100"), g, o, C, np.array([2]), np.array([2]), np.array([6]))
    kept = float(activation_bytes_per_layer(m, g, o)[0][0])
    # 8 microbatches, PP 4, VP 2: a middle stage holds min(8, 3) x (1 + 2 / (4 x 2)) = 3.75
    # microbatches of its 6 layers (the first stage 4 x 1.375 of 2 layers: less)
    assert float(mem.activations[0]) == pytest.approx(3.75 * 6 * kept, rel=1e-12)


def test_mamba2_layer_times_by_hand():
    from carbonscaling.hardware import load_system
    from carbonscaling.perf import kernels as K
    from carbonscaling.perf.ssm import mamba2_layer_times, ssd_kernel_times

    dev = load_system("H100").device
    tokens, d, H, P, N, G, tp = 8192.0, 2688, 64, 64, 128, 8, 2
    heads, groups = H / tp, G / tp
    d_inner = heads * P                                   # 2048 on each of 2 ranks
    in_w = 2 * d_inner + 2 * groups * N + heads           # z, x, B, C, dt
    i = K.linear_fwd_bwd_time(np.array([tokens]), in_w, d, 1, dev, C, "bf16", 2.0)
    o = K.linear_fwd_bwd_time(np.array([tokens]), d, d_inner, 1, dev, C, "bf16", 2.0)
    s = ssd_kernel_times(np.array([tokens]), heads, P, N, groups, C.ssm_chunk, dev, C, batched=False)
    f, b = mamba2_layer_times(np.array([tokens]), d, H, P, N, G, C.ssm_chunk, tp, dev, C, batched=False)

    def v(x):
        return float(np.asarray(x).reshape(-1)[0])

    assert v(f) == pytest.approx(v(i[0]) + v(o[0]) + v(s[0]), rel=1e-12)
    assert v(b) == pytest.approx(v(i[1]) + v(o[1]) + v(s[1]), rel=1e-12)


def test_mamba_in_proj_input_cast_is_fused_into_its_norm_by_hand():
    """MambaMixer's in_proj is a LayerNormLinear (Megatron-Core mamba_layer_specs.py): under MXFP8
    (norm-fused cast) the forward pays no separate cast of its d_model input; the out_proj, whose
    input comes from the gated RMSNorm kernel, still does. Per-tensor current-scaling FP8 is not
    norm-fused (formats.yaml norm_fused_casts), so its time is unchanged."""
    from carbonscaling.hardware import load_system
    from carbonscaling.perf import kernels as K
    from carbonscaling.perf.ssm import mamba2_layer_times, ssd_kernel_times

    tokens, d, H, P, N, G = 16384.0, 2688, 64, 64, 128, 8
    in_w = 2 * H * P + 2 * G * N + H                      # 10,304: z, x, B, C, dt
    for system, prec, cast in (("GB200", "mxfp8", 0.0), ("H100", "fp8", 1.0)):
        dev = load_system(system).device
        f, _ = mamba2_layer_times(np.array([tokens]), d, H, P, N, G, C.ssm_chunk, 1, dev, C, prec, 1.0)
        gemm_in = K.gemm_time(tokens, in_w, d, 1, dev, C, prec, 1.0)
        x_in = K.quantize_time(tokens * d, prec, dev, C)    # the separate input cast a plain Linear pays
        out = K.linear_fwd_bwd_time(np.array([tokens]), d, H * P, 1, dev, C, prec, 1.0)[0]
        s = ssd_kernel_times(np.array([tokens]), H, P, N, G, C.ssm_chunk, dev, C)[0]
        expect = float(gemm_in) + cast * float(x_in) + float(out[0]) + float(s[0])
        assert float(f[0]) == pytest.approx(expect, rel=1e-12)
        assert float(x_in) > 0.0


def test_constants_replace_refuses_unknown_names():
    with pytest.raises((TypeError, ValueError, KeyError)):
        C.replace(no_such_constant=1.0)
    assert C.replace(gemm_tile=256).gemm_tile == 256
