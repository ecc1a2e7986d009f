"""Module-level selective recompute (Megatron-Core ``recompute_modules``, docs/performance.md):
the activations each module frees and the forward work it repeats, against hand calculations,
and the validation rows described with their recipe's modules."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import kernels as K
from carbonscaling.perf import memory, step
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.scaling import named_model
from carbonscaling.search import _recompute_options
from carbonscaling.validation.throughput import _recompute_recipe

from helpers import layout_grids

C = default_constants()
B200 = load_system("B200")
DSV3 = named_model("deepseek-v3")


_grid = layout_grids(tp=1, pp=8, dp=32, ep=32, microbatch=1, zero=1, global_batch_sequences=4096,
                     recompute="selective")


def _kept(model, o, **kw):
    kept, full, _ = memory.activation_bytes_per_layer(model, _grid(**kw), o)
    return float(kept[0]), float(full[0])


def test_modules_parse_from_the_cli_text_in_megatrons_order():
    o = TrainingOptions(recompute_modules="mlp, mla_up_proj")
    assert o.recompute_modules == ("mla_up_proj", "mlp")
    assert o == TrainingOptions(recompute_modules=("mlp", "mla_up_proj"))  # one cache key per set
    assert TrainingOptions().recompute_modules == ("core_attn",)
    with pytest.raises(ValueError, match="unknown module 'attn'"):
        TrainingOptions(recompute_modules="attn")


def test_default_selective_with_flash_attention_keeps_what_none_keeps():
    o = TrainingOptions(precision="mxfp8")
    assert _kept(DSV3, o)[0] == _kept(DSV3, o, recompute="none")[0]
    t_sel = step.layer_times(DSV3, B200, _grid(), o, C, moe=True)
    t_none = step.layer_times(DSV3, B200, _grid(recompute="none"), o, C, moe=True)
    assert float(t_sel.time0[0]) == float(t_none.time0[0])


def test_mla_up_proj_frees_the_decompressed_q_k_v_by_hand():
    o = TrainingOptions(precision="bf16", recompute_modules="mla_up_proj")
    kept, full = _kept(DSV3, o)
    tokens = 1 * DSV3.seq_len
    # 128 heads x (Q 192 + K 192 + V 128) BF16 values per token, every layer has MLA attention
    assert full - kept == pytest.approx(tokens * 2 * 128 * (192 + 192 + 128))


def test_mlp_and_moe_free_their_sublayer_on_their_layers_only():
    o_mlp = TrainingOptions(precision="bf16", recompute_modules="mlp")
    kept, full = _kept(DSV3, o_mlp)
    tokens, e = DSV3.seq_len, 2
    share_dense = 3 / 61  # DeepSeek-V3: the first 3 of 61 layers are dense
    assert full - kept == pytest.approx(tokens * share_dense * DSV3.d_ff * (2 * e + e))
    o_act = TrainingOptions(precision="bf16", recompute_modules="moe_act")
    kept, full = _kept(DSV3, o_act)
    # the routed copies' FC2 inputs: top-8 x 2048 BF16 values per token on the MoE layers
    assert full - kept == pytest.approx(tokens * 58 / 61 * 8 * 2048 * e)
    o_moe = TrainingOptions(precision="bf16", recompute_modules="moe,moe_act,shared_experts")
    assert _kept(DSV3, o_moe)[0] < _kept(DSV3, o_act)[0]  # the whole layer frees more than its activation


def test_layernorm_and_up_projection_repeat_their_forward_by_hand():
    o = TrainingOptions(precision="bf16", recompute_modules="layernorm,mla_up_proj")
    g = _grid()
    tokens = DSV3.seq_len
    extra = step.selective_recompute_time(DSV3, B200, g, o, C, "attention", "moe", 0.0 * g.tp)
    norms = K.memory_bound_time(tokens * 2 * 2 * 2.0 * DSV3.d_model, B200.device, C)
    kv_up = K.linear_fwd_bwd_time(tokens, 128 * (128 + 128), 512, 1, B200.device, C, "bf16", 2.0)[0]
    q_up = K.linear_fwd_bwd_time(tokens, 128 * 192, 1536, 1, B200.device, C, "bf16", 2.0)[0]
    assert float(extra[0]) == pytest.approx(float(norms + kv_up + q_up))


def test_mlp_recompute_repeats_the_dense_ffn_forward_and_moe_its_dispatch():
    o = TrainingOptions(precision="bf16", recompute_modules="mlp,moe")
    g = _grid()
    ffn_fwd = np.array([1.25e-3])
    assert float(step.selective_recompute_time(DSV3, B200, g, o, C, "attention", "dense", ffn_fwd)[0]) \
        == pytest.approx(1.25e-3)
    t_sel = step.layer_times(DSV3, B200, g, o, C, moe=True)
    t_none = step.layer_times(DSV3, B200, _grid(recompute="none"), o, C, moe=True)
    # the MoE forward again (compute) and its dispatch + combine again (EP time)
    assert float(t_sel.compute0[0]) > float(t_none.compute0[0])
    assert float(t_sel.ep0[0]) == pytest.approx(float(t_none.ep0[0]) * 6 / 4)


def test_search_offers_selective_only_when_it_differs_from_none():
    assert (1, 1 << 30) not in _recompute_options({}, TrainingOptions())
    assert (1, 1 << 30) in _recompute_options({}, TrainingOptions(recompute_modules="mla_up_proj"))


@pytest.mark.parametrize("row, expected", [
    (dict(system="DGX-B200", container="26.04.01", precision="MXFP8", layout=(1, 8, 2, 32, 1)),
     (("mla_up_proj", "mlp"), True)),
    (dict(system="DGX-B200", container="26.02", precision="MXFP8", layout=(1, 16, 1, 8, 1)), (("mla_up_proj",), False)),
    # the 25.09-era scripts (deepseek_llm_pretrain.py at 0132842) already recompute mla_up_proj on B200 PP 16
    (dict(system="DGX-B200", container="25.11", precision="FP8-MX", layout=(1, 16, 1, 8, 1)), (("mla_up_proj",), False)),
    (dict(system="DGX-B200", container="25.11", precision="FP8-MX", layout=(1, 8, 1, 8, 1)), None),
    (dict(system="DGX-GB200", container="26.06", precision="MXFP8", layout=(1, 4, 4, 64, 1)), (("mla_up_proj",), False)),
    (dict(system="DGX-GB200", container="26.04", precision="MXFP8", layout=(1, 4, 4, 64, 1)), (("mlp",), False)),
    (dict(system="DGX-GB300", container="26.04.01", precision="MXFP8", layout=(1, 2, 8, 32, 2)),
     (("mla_up_proj",), False)),
    (dict(system="DGX-GB300", container="26.06", precision="MXFP8", layout=(1, 2, 8, 32, 1)), None),
    (dict(model="GPT OSS 120B", system="DGX-GB200", container="26.04", precision="BF16", layout=(1, 1, 1, 64, 4)),
     (("layernorm", "moe_act"), True)),
    (dict(model="GPT OSS 120B", system="DGX-GB300", container="26.04", precision="BF16", layout=(1, 1, 1, 64, 4)),
     None),
    (dict(model="GPT OSS 120B", system="DGX-GB200", container="26.06", precision="MXFP8", layout=(1, 1, 1, 64, 4)),
     None),
])
def test_rows_take_the_recipe_of_their_release_and_layout(row, expected):
    tp, pp, vp, ep, mb = row.pop("layout")
    full = {"model": row.pop("model", "DeepSeekV3"), "tp": str(tp), "pp": str(pp), "vp": str(vp) if vp > 1 else "", "ep": str(ep),
            "mbs": str(mb), **row}
    assert _recompute_recipe(full) == expected


def test_bf16_gradients_halve_the_gradient_memory_and_its_reduction():
    # Megatron-Bridge's performance recipes set grad_reduce_in_fp32=False: 2 bytes per gradient, not 4.
    g = _grid(recompute="none", pp=1, dp=256, ep=64, zero=1)
    fp32 = step.evaluate(DSV3, B200, g, TrainingOptions(precision="bf16"), C)
    bf16 = step.evaluate(DSV3, B200, g, TrainingOptions(precision="bf16", grad_reduce_in_fp32=False), C)
    assert float(bf16.mem_grads_gb[0]) == pytest.approx(float(fp32.mem_grads_gb[0]) / 2)
    assert float(bf16.mem_weights_gb[0]) == pytest.approx(float(fp32.mem_weights_gb[0]))
    assert TrainingOptions(precision="fp16").gradient_bytes(C) == 2.0  # fp16 always reduced in fp16
