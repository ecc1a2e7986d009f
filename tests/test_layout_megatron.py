"""Megatron-Core layout rules, architecture-sized memory, pipeline splits, and search/pin agreement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonscaling.errors import InfeasibleError, InputError
from carbonscaling.hardware import load_system
from carbonscaling.perf.layout import Layout, TrainingOptions
from carbonscaling.perf.memory import activation_bytes_per_layer
from carbonscaling.perf.pipeline import stage_split
from carbonscaling.perf.step import evaluate
from carbonscaling.scaling import ModelSpec, named_model
from carbonscaling.search import search

from helpers import layout_grids

H100 = load_system("H100-SXM")


_grid = layout_grids(global_batch_sequences=64)


# ---- layout rules ------------------------------------------------------------------------
def test_devices_are_tp_cp_pp_dp_and_ep_lives_inside_dp_cp():
    lay = Layout(tp=2, cp=2, pp=4, dp=8, ep=16, global_batch_sequences=64)
    assert lay.devices == 2 * 2 * 4 * 8 and lay.etp == 2
    with pytest.raises(ValueError, match="must divide tp x cp x dp"):
        Layout(tp=2, pp=1, dp=4, ep=16, global_batch_sequences=64)     # ETP 2 x EP 16 > TP 2 x DP 4
    assert Layout(tp=2, pp=1, dp=4, ep=8, etp=1, global_batch_sequences=64).devices == 8  # ETP 1 fits
    assert Layout(tp=1, pp=2, dp=3, interleave=2, global_batch_sequences=6).vp == 2       # alias


def test_cs_v1_convention_multiplies_devices_by_ep():
    moe = ModelSpec(d_model=1024, n_layers=8, n_heads=16, n_experts=8, top_k=2, seq_len=1024, tokens=1e9,
                    global_batch_tokens=256 * 1024)
    v1 = search(moe, H100, deadline_days=30, options=TrainingOptions(ep_convention="cs-v1"))
    assert v1.layout.ep == 8 and v1.layout.dp % 8 == 0 and v1.layout.cp == 1
    meg = search(moe, H100, deadline_days=30)
    lay = meg.layout
    assert (lay.tp * lay.cp * lay.dp) % (lay.etp * lay.ep) == 0
    assert lay.devices == lay.tp * lay.cp * lay.pp * lay.dp
    # Pinned EP that cannot be carved out of DP x CP: no layout at that device count.
    with pytest.raises(InfeasibleError, match="TP x CP x PP x DP"):
        search(moe, H100, pinned=dict(devices=4, tp=1, pp=1, cp=1, ep=8))


def test_context_parallel_must_split_the_sequence_evenly_and_halves_activations():
    m = named_model("llama3.1-8b")
    with pytest.raises(InputError, match="cp"):
        search(m, H100, pinned=dict(cp=3))
    with pytest.raises(InputError, match="cp"):
        search(m, H100, options=TrainingOptions(ep_convention="cs-v1"), pinned=dict(cp=2))
    o = TrainingOptions()
    a1 = activation_bytes_per_layer(m, _grid(tp=2, pp=1, dp=4), o)[0]
    a2 = activation_bytes_per_layer(m, _grid(tp=2, pp=1, dp=2, cp=2), o)[0]
    assert float(a2[0]) == pytest.approx(float(a1[0]) / 2)
    r = evaluate(m, H100, _grid(tp=1, pp=1, dp=4, cp=2, global_batch_sequences=16), o).take(0)
    assert float(r.cp_comm_s) >= 0 and np.isfinite(r.step_time_s)


def test_fsdp_group_divides_dp_and_hybrid_sharding_sits_between_ddp_and_full_sharding():
    with pytest.raises(ValueError, match="fsdp"):
        Layout(tp=1, pp=1, dp=6, fsdp=4, global_batch_sequences=12)
    m = named_model("llama3.1-8b")
    with pytest.raises(InputError, match="fsdp"):
        search(m, H100, pinned=dict(dp=6, fsdp=4))
    mem = {}
    for name, kw in {"ddp": dict(zero=0), "hsdp": dict(fsdp=2), "fsdp": dict(fsdp=8), "zero3": dict(zero=3)}.items():
        mem[name] = float(evaluate(m, H100, _grid(tp=1, pp=1, dp=8, **kw), TrainingOptions()).take(0).mem_total_gb)
    assert mem["ddp"] > mem["hsdp"] > mem["fsdp"]
    assert mem["fsdp"] == pytest.approx(mem["zero3"])
    r = search(m, H100, pinned=dict(devices=8, tp=1, pp=1, fsdp=8, microbatch=1, global_batch=128))
    assert r.layout.fsdp == 8 and r.layout.zero_stage == 3


# ---- memory against hand calculations ------------------------------------------------------------
def test_gqa_activation_memory_by_hand():
    """Llama-3 8B shape, TP 2 with sequence parallelism, BF16, FlashAttention, no dropout."""
    m = named_model("llama3.1-8b")  # h 4096, 32 heads, 8 KV heads x 128, d_ff 14336, SwiGLU, seq 8192
    kept, full, inp = activation_bytes_per_layer(m, _grid(tp=2, pp=1, dp=1), TrainingOptions())
    replicated = (2 * 2 * 4096 + 2 * 2 * 4096) / 2          # two norm inputs + two GEMM inputs, split by SP
    attention = 2 * 16 * 128 + 2 * 4 * (128 + 128) + 2 * 16 * 128   # Q, K+V of 4 KV heads per rank, context
    ffn = 14336 * (2 * 2 + 2) / 2                               # gate+up output, SwiGLU output
    assert float(full[0]) == pytest.approx(8192 * (replicated + attention + ffn))
    assert float(inp[0]) == pytest.approx(8192 * 2 * 4096 / 2)
    # KV heads are replicated once TP exceeds their count: TP 16 keeps one KV head per rank.
    k16 = activation_bytes_per_layer(m, _grid(tp=16, pp=1, dp=1), TrainingOptions())[1]
    att16 = 2 * 2 * 128 + 2 * 1 * 256 + 2 * 2 * 128
    assert float(k16[0]) == pytest.approx(8192 * ((4 * 4096 + 4 * 4096) / 16 + att16 + 14336 * 6 / 16))


def test_mla_activation_memory_and_params_by_hand():
    m = ModelSpec(d_model=2048, n_layers=4, n_heads=16, n_kv_heads=16, head_dim=128, q_lora_rank=512,
                  kv_lora_rank=256, qk_rope_head_dim=64, v_head_dim=128, d_ff=8192, ffn_gated=True,
                  dropout=0.0, seq_len=4096, tokens=1e9, global_batch_tokens=64 * 4096)
    assert m.attn_params_per_layer == (2048 * 512 + 512 + 512 * 16 * 192 + 2048 * (256 + 64) + 256
                                       + 256 * 16 * (128 + 128) + 16 * 128 * 2048)
    full = activation_bytes_per_layer(m, _grid(tp=1, pp=1, dp=1), TrainingOptions())[1]
    replicated = 2 * 2 * 2048 + 2 * 2 * 2048 + (512 + 256) * (2 + 2) + 2 * 64   # norms, GEMM inputs, latents
    attention = 2 * 16 * 192 + 2 * 16 * (192 + 128) + 2 * 16 * 128              # per-head Q, K, V, context
    assert float(full[0]) == pytest.approx(4096 * (replicated + attention + 8192 * 6))
    # Dropout adds its masks; FP8 saves GEMM inputs as 1-byte casts.
    drop = activation_bytes_per_layer(m.model_copy(update={"dropout": 0.1}), _grid(tp=1, pp=1, dp=1),
                                      TrainingOptions())[1]
    assert float(drop[0] - full[0]) == pytest.approx(4096 * 2 * 2048)
    fp8 = activation_bytes_per_layer(m, _grid(tp=1, pp=1, dp=1), TrainingOptions(precision="fp8"))[1]
    saved = 2 * 2048 + (512 + 256) + 16 * 128 + 8192   # QKV/FC1 inputs, latent norm outputs, context, FC2 input
    assert float(full[0] - fp8[0]) == pytest.approx(4096 * saved)


def test_partial_recompute_sits_between_none_and_full():
    m = named_model("llama3.1-70b")
    o = TrainingOptions()
    runs = {rl: evaluate(m, H100, _grid(tp=4, pp=4, dp=2, recompute="full", recompute_layers=rl), o).take(0)
            for rl in (1, 10)}
    none = evaluate(m, H100, _grid(tp=4, pp=4, dp=2), o).take(0)
    full = evaluate(m, H100, _grid(tp=4, pp=4, dp=2, recompute="full"), o).take(0)
    assert float(none.step_time_s) < float(runs[1].step_time_s) < float(runs[10].step_time_s)
    assert float(runs[10].step_time_s) <= float(full.step_time_s) * (1 + 1e-12)
    assert float(none.mem_activations_gb) > float(runs[1].mem_activations_gb) > float(full.mem_activations_gb)


# ---- pipeline splits --------------------------------------------------------------------------
def test_uneven_interleaved_split_as_megatron():
    assert stage_split(126, 8, 8) == (15, 16, 15)      # (126 + 2) / 64 = 2 per chunk, one fewer at the ends
    assert stage_split(80, 8, 5) == (10, 10, 10)       # even
    assert stage_split(61, 4, 4) == (15, 16, 14)       # DeepSeek-V3 custom layout
    assert stage_split(70, 64, 4) is None              # more chunks than layers
    r = search(named_model("llama3.1-405b"), H100, pinned=dict(devices=1024, tp=8, pp=8, vp=8, cp=2))
    assert (r.layout.pp, r.layout.vp, r.layout.cp) == (8, 8, 2)
    with pytest.raises(InputError, match="vp"):
        search(named_model("bloom-176b"), load_system("A100-80GB"), pinned=dict(pp=64, vp=4))


# ---- what the search returns is accepted when pinned -------------------------------------------
def _pins(lay: Layout) -> dict:
    return dict(devices=lay.devices, tp=lay.tp, pp=lay.pp, dp=lay.dp, cp=lay.cp, ep=lay.ep, etp=lay.etp,
                zero=lay.zero, fsdp=lay.fsdp, microbatch=lay.microbatch, vp=lay.vp, recompute=lay.recompute,
                recompute_layers=lay.recompute_layers, global_batch=lay.global_batch_sequences)


def _assert_pinned_agrees(model, system, res, options=None):
    again = search(model, system, options=options, pinned=_pins(res.layout))
    assert again.layout == res.layout
    assert float(again.step.step_time_s) == pytest.approx(float(res.step.step_time_s), rel=1e-12)


@pytest.mark.parametrize("name,device,days", [("bloom-176b", "A100-80GB", 3), ("palm-540b", "V100", 90)])
def test_reported_cases_return_layouts_accepted_when_pinned(name, device, days):
    model, system = named_model(name), load_system(device)
    _assert_pinned_agrees(model, system, search(model, system, deadline_days=days))


models = st.builds(
    lambda layers, heads, kv, width, moe, seq: ModelSpec(
        d_model=heads * width, n_layers=layers, n_heads=heads, n_kv_heads=heads // kv, seq_len=seq,
        n_experts=moe[0], top_k=moe[1], ffn_gated=kv > 1, dropout=0.0 if kv > 1 else 0.1, vocab=32000,
        tokens=2e10, global_batch_tokens=256 * seq),
    layers=st.integers(3, 40), heads=st.sampled_from([8, 12, 16, 32]), kv=st.sampled_from([1, 4]),
    width=st.sampled_from([64, 128]), moe=st.sampled_from([(1, 1), (8, 2), (16, 4)]),
    seq=st.sampled_from([1024, 2048, 4096]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models, device=st.sampled_from(["A100-80GB", "H100-SXM", "GB200", "TPUv4"]),
       days=st.sampled_from([2.0, 20.0]), legacy=st.booleans())
def test_every_searched_layout_is_accepted_when_pinned(model, device, days, legacy):
    system = load_system(device)
    options = TrainingOptions(ep_convention="cs-v1" if legacy else "megatron")
    try:
        res = search(model, system, deadline_days=days, options=options)
    except InfeasibleError:
        return
    _assert_pinned_agrees(model, system, res, options)
