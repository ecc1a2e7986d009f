"""Every field of ``memory_per_device`` against a hand calculation, for one dense GQA model and
one MoE model at TP 2, PP 2, CP 2, DP 2 (EP 2 for the MoE), VP 2, microbatch 2, under each
ZeRO stage and each recompute mode.

The formulas below are written out from Korthikanti et al. 2022 (activations), Narayanan et
al. 2021 (microbatches in flight under interleaved 1F1B) and Rajbhandari et al. 2020 (ZeRO),
term by term, so a changed term in ``perf/memory.py`` (or the ``perf/parameters.py`` and
``perf/activations.py`` it adds up) changes a field by far more than 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import LayoutGrid, TrainingOptions
from carbonscaling.perf.memory import linear_weight_bytes, memory_per_device
from carbonscaling.scaling import ModelSpec

from helpers import one_layout

C = default_constants()
H100 = load_system("H100")        # scale-up domain of 8 (ZeRO's groups here are smaller)
H, L, NH, NKV, HD, FF, V, S = 1024, 8, 16, 4, 64, 2816, 1000, 512
TP, PP, CP, DP, VP, MB, BATCH = 2, 2, 2, 2, 2, 2, 16

DENSE = ModelSpec(d_model=H, n_layers=L, n_heads=NH, n_kv_heads=NKV, head_dim=HD, d_ff=FF, vocab=V,
                  seq_len=S, tokens=1e10, global_batch_tokens=BATCH * S, ffn_gated=True,
                  tied_embeddings=False, name="dense-gqa")
E, TOPK, DEXP, DSH, FIRST_DENSE = 8, 2, 512, 768, 2
MOE = DENSE.model_copy(update={"n_experts": E, "top_k": TOPK, "d_expert": DEXP, "n_shared_experts": 1,
                               "d_shared_expert": DSH, "first_dense_layers": FIRST_DENSE,
                               "moe_layer_every": 1, "name": "moe-gqa"})


def _grid(zero: int, recompute: str, ep: int) -> LayoutGrid:
    return one_layout(tp=TP, pp=PP, cp=CP, dp=DP, ep=ep, etp=1 if ep > 1 else None, vp=VP, zero=zero, microbatch=MB,
                      global_batch_sequences=BATCH, recompute=recompute)


def _hand(moe: bool, zero: int, recompute: str, flash: bool = True, fp8: bool = False, mtp: int = 0) -> dict:
    """Bytes per device of the first and the last stage, written out term by term."""
    attn_p = H * HD * (NH + 2 * NKV) + NH * HD * H          # Q, K, V (GQA), output projection
    ffn_p = 3 * H * FF                                      # gated FFN: three matrices
    if moe:
        f_moe = (L - FIRST_DENSE) / L                       # 6 of 8 layers are MoE
        dense_pl = attn_p + (1 - f_moe) * ffn_p + f_moe * (3 * H * DSH + H * E) + 2 * H
        expert_pl = f_moe * E * 3 * H * DEXP
        n_exp_dp = TP * CP * DP // (1 * 2)                  # expert-data-parallel group: 4
    else:
        dense_pl, expert_pl, n_exp_dp = attn_p + ffn_p + 2 * H, 0.0, 1
    n = L // PP                                             # 4 layers per stage
    emb = V * H / TP                                        # embedding (first) = output layer (last)
    # an MTP module: a layer, the 2h -> h projection and two norms, on the last stage
    mtp_p = mtp * (dense_pl + expert_pl + 2 * H * H + 2 * H) / TP
    p_first, p_last = n * dense_pl / TP + emb, n * dense_pl / TP + emb + mtp_p
    p_dense = p_first
    p_exp = n * expert_pl / 2                               # EP 2, ETP 1
    dp_group = DP * CP
    w_d, w_e = (dp_group, n_exp_dp) if zero == 3 else (1, 1)
    g_d, g_e = (dp_group, n_exp_dp) if zero >= 2 else (1, 1)
    o_d, o_e = (dp_group, n_exp_dp) if zero >= 1 else (1, 1)
    grad_b = C.grad_reduce_bytes_bf16                       # fp32 gradients (Megatron DDP default)
    buffers = (2 * 2.0 + grad_b) * (dense_pl / TP + expert_pl / 2) if zero == 3 else 0.0
    # the layers' linear weights in the run's format (FP8: pinned by its own test), the
    # embedding/output layer (and the MTP module, counted with them) in BF16
    lw = linear_weight_bytes(TrainingOptions(precision="fp8"), C, H100.device.fp8_columnwise_native) if fp8 else 2.0

    def static(p_d):
        weights = lw * n * dense_pl / TP / w_d + 2.0 * (p_d - n * dense_pl / TP) / w_d + lw * p_exp / w_e + buffers
        grads = grad_b * (p_d / g_d + p_exp / g_e)
        opt = C.optimizer_state_bytes_per_param * (p_d / o_d + p_exp / o_e)
        return weights, grads, opt

    tokens = MB * S / CP                                    # 512 tokens per rank and microbatch
    e = 2.0                                                 # BF16 activations
    gi = 1.0 if fp8 else 2.0                                # saved GEMM inputs: the FP8 cast
    # norm inputs, QKV/FC1 inputs and the two 1-byte dropout masks (dropout 0.1), split by SP
    replicated = (2 * e * H + 2 * gi * H + 2 * H) / TP
    nh, nkv = NH / TP, NKV / TP
    attn = e * (nh * HD + nkv * 2 * HD) + gi * nh * HD      # Q, K, V and the projection's input
    dense_ffn = FF * (2 * e + gi) / TP                      # FC1 output (gated: 2 d_ff), FC2 input
    if moe:
        routed = TOPK * 1.0 * (DEXP * (2 * e + gi) + 1 * H * gi) / TP   # + each copy's dispatched input
        shared = DSH * (2 * e + gi) / TP
        ffn = (1 - f_moe) * dense_ffn + f_moe * (routed + shared + 4.0 * E / TP)  # fp32 router logits
    else:
        ffn = dense_ffn
    # unfused attention: scores, dropout mask and softmax output per head, s / CP keys per query;
    # selective recompute (core_attn) drops them, full recompute keeps them in the one rebuilt layer
    scores = 0.0 if flash else NH * (S / CP) * (e + 1 + e) / TP
    full = tokens * (replicated + attn + scores + ffn)
    layer_in = tokens * e * H / TP
    logits = tokens * V / TP * C.logits_bytes * (1 + mtp)   # fp32 logits, one more per MTP module
    micro = BATCH // (DP * MB)                              # 4 microbatches
    inflight_first = min(micro, PP) * (1 + (PP - 1) / (PP * VP))   # 2 x 1.25
    out = {}
    for stage, inflight, p_d in (("first", inflight_first, p_first), ("last", 1.0, p_last)):
        weights, grads, opt = static(p_d)
        if recompute == "full":                             # every layer recomputed: its input kept,
            act = inflight * n * layer_in + full            # one rebuilt layer at a time
        elif recompute == "selective":
            act = inflight * n * (full - tokens * scores)
        else:
            act = inflight * n * full
        if stage == "last":
            act += logits
        total = (weights + grads + opt + act) * C.fragmentation_factor + C.reserved_gb * 1e9
        out[stage] = {"weights": weights, "grads": grads, "optimizer": opt, "activations": act, "total": total}
    out["params_dense"], out["params_expert"] = p_dense, p_exp
    out["optimizer_params"] = max(p_first, p_last) / o_d + p_exp / o_e
    out["recomputed_first"] = n if recompute == "full" else 0
    return out


@pytest.mark.parametrize("moe", [False, True], ids=["dense", "moe"])
@pytest.mark.parametrize("zero", [0, 1, 2, 3])
@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize("flash", [True, False], ids=["flash", "unfused"])
def test_memory_per_device_every_field_by_hand(moe, zero, recompute, flash):
    model = MOE if moe else DENSE
    g = _grid(zero, recompute, ep=2 if moe else 1)
    mem = memory_per_device(model, H100, g, TrainingOptions(flash_attention=flash), C, np.array([4]), np.array([4]))
    want = _hand(moe, zero, recompute, flash)
    peak = max(("first", "last"), key=lambda k: want[k]["total"])
    for field in ("weights", "grads", "optimizer", "activations", "total"):
        assert float(getattr(mem, field)[0]) == pytest.approx(want[peak][field], rel=1e-9), (field, peak)
    for field in ("params_dense", "params_expert", "optimizer_params", "recomputed_first"):
        assert float(np.asarray(getattr(mem, field))[0]) == pytest.approx(want[field], rel=1e-9, abs=1e-9), field
    assert int(mem.recompute_layers[0]) == (int(g.rl[0]) if recompute == "full" else 0)


def test_the_peak_stage_is_the_larger_of_first_and_last():
    # the case above where the stages differ most: the first stage's 2.5 microbatches in flight
    # against the last stage's one plus the logits -- the total must be the larger, not the first
    for moe in (False, True):
        want = _hand(moe, 1, "none")
        mem = memory_per_device(MOE if moe else DENSE, H100, _grid(1, "none", 2 if moe else 1),
                                TrainingOptions(), C, np.array([4]), np.array([4]))
        assert float(mem.total[0]) == pytest.approx(max(want["first"]["total"], want["last"]["total"]), rel=1e-9)
        assert want["first"]["total"] != pytest.approx(want["last"]["total"], rel=1e-6)


@pytest.mark.parametrize("moe", [False, True], ids=["dense", "moe"])
@pytest.mark.parametrize("recompute", ["none", "full"])
def test_fp8_weights_and_an_mtp_module_by_hand(moe, recompute):
    model = (MOE if moe else DENSE).model_copy(update={"mtp_layers": 1})
    g = _grid(1, recompute, ep=2 if moe else 1)
    mem = memory_per_device(model, H100, g, TrainingOptions(precision="fp8"), C, np.array([4]), np.array([4]))
    want = _hand(moe, 1, recompute, fp8=True, mtp=1)
    peak = max(("first", "last"), key=lambda k: want[k]["total"])
    for field in ("weights", "grads", "optimizer", "activations", "total"):
        assert float(getattr(mem, field)[0]) == pytest.approx(want[peak][field], rel=1e-9), (field, peak)
    for field in ("params_dense", "params_expert", "optimizer_params"):
        assert float(np.asarray(getattr(mem, field))[0]) == pytest.approx(want[field], rel=1e-9), field
