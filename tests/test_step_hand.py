"""Step-model pieces against hand calculations: data-parallel / ZeRO communication (flat and
hierarchical), per-layer TP / EP / CP collectives, and MLA's projection GEMMs.

Round link speeds (as in test_moe_hand): 8-GPU H100 nodes, 450 GB/s NVLink one way,
50 GB/s NIC, efficiencies 1, latencies 1 us (NVLink) and 10 us (network).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import kernels as K
from carbonscaling.perf.comm import p2p_time
from carbonscaling.perf.constants import default_constants
from carbonscaling.perf.layout import TrainingOptions
from carbonscaling.perf.moe import dispatch_time
from carbonscaling.perf.step import _attention, _collectives, data_parallel_time
from carbonscaling.scaling import ModelSpec, named_model

from helpers import layout_grids

C = default_constants().replace(nvlink_efficiency=1.0, scale_out_efficiency=1.0, nvlink_latency_s=1e-6,
                                scale_out_latency_s=10e-6, grad_reduce_bytes_bf16=4)
H100 = load_system("H100")
SU, SO = 450e9, 50e9
NVL, NET = 1e-6, 10e-6
DENSE = ModelSpec(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, vocab=50000, seq_len=4096, tokens=1e11,
                  global_batch_tokens=1024 * 4096, name="dense")
MOE = DENSE.model_copy(update={"n_experts": 16, "top_k": 2, "name": "moe"})


_grid = layout_grids(tp=1, pp=1, dp=1, global_batch_sequences=1024)


# ---- data parallelism ----------------------------------------------------------------------
P_D, P_E = 1e9, 8e9  # dense and expert parameters on a device
MEM = SimpleNamespace(params_dense=np.array([P_D]), params_expert=np.array([P_E]),
                      weight_shards=(np.array([1]), np.array([1])))


def _ring(per_byte, lat, factor, nbytes):
    return factor * nbytes * per_byte + lat


# DP 64, EP 2, TP 1: the dense group is 64 ranks (8 per node, 8 nodes); the expert group is
# 32 ranks 2 apart (4 per node, 8 nodes).
DENSE_PB, DENSE_LAT = 7 / 8 / SU + 7 / 8 / 8 / SO, 2 * 3 * NVL + 2 * 3 * NET
EXPERT_PB, EXPERT_LAT = 3 / 4 / SU + 7 / 8 / 4 / SO, 2 * 2 * NVL + 2 * 3 * NET


def test_zero0_all_reduces_gradients():
    step, mb = data_parallel_time(MOE, H100, _grid(dp=64, ep=2, zero=0), TrainingOptions(), C, MEM)
    want = _ring(DENSE_PB, DENSE_LAT, 2, 4 * P_D) + _ring(EXPERT_PB, EXPERT_LAT, 2, 4 * P_E)
    assert float(step[0]) == pytest.approx(want, rel=1e-12)
    assert float(np.asarray(mb).reshape(-1)[0]) == 0.0


def test_zero1_reduce_scatters_gradients_and_gathers_weights():
    step, _ = data_parallel_time(MOE, H100, _grid(dp=64, ep=2, zero=1), TrainingOptions(), C, MEM)
    want = (_ring(DENSE_PB, DENSE_LAT, 1, 4 * P_D) + _ring(DENSE_PB, DENSE_LAT, 1, 2 * P_D)
            + _ring(EXPERT_PB, EXPERT_LAT, 1, 4 * P_E) + _ring(EXPERT_PB, EXPERT_LAT, 1, 2 * P_E))
    assert float(step[0]) == pytest.approx(want, rel=1e-12)
    # FP16 reduces gradients in 2 bytes (grad_reduce_bytes_fp16)
    fp16, _ = data_parallel_time(MOE, H100, _grid(dp=64, ep=2, zero=1), TrainingOptions(precision="fp16"), C, MEM)
    g = C.grad_reduce_bytes_fp16
    want16 = (_ring(DENSE_PB, DENSE_LAT, 1, g * P_D) + _ring(DENSE_PB, DENSE_LAT, 1, 2 * P_D)
              + _ring(EXPERT_PB, EXPERT_LAT, 1, g * P_E) + _ring(EXPERT_PB, EXPERT_LAT, 1, 2 * P_E))
    assert float(fp16[0]) == pytest.approx(want16, rel=1e-12)


def test_hierarchical_zero_crosses_domains_once_per_step_with_a_local_shard():
    # ZeRO "4" (hierarchical): 8 dense / 4 expert shards inside a node; across nodes the
    # groups are 8 ranks one per node (stride 8), carrying 1/8 and 1/4 of the parameters.
    step, _ = data_parallel_time(MOE, H100, _grid(dp=64, ep=2, zero=4), TrainingOptions(), C, MEM)
    cross_pb, cross_lat = 7 / 8 / SO, 2 * 3 * NET
    want = (_ring(cross_pb, cross_lat, 1, 4 * P_D / 8) + _ring(cross_pb, cross_lat, 1, 2 * P_D / 8)
            + _ring(cross_pb, cross_lat, 1, 4 * P_E / 4) + _ring(cross_pb, cross_lat, 1, 2 * P_E / 4))
    assert float(step[0]) == pytest.approx(want, rel=1e-12)


def test_zero3_gathers_weights_every_microbatch():
    mem = SimpleNamespace(params_dense=np.array([P_D]), params_expert=np.array([P_E]),
                          weight_shards=(np.array([64]), np.array([32])))
    step, mb = data_parallel_time(MOE, H100, _grid(dp=64, ep=2, zero=3), TrainingOptions(), C, mem)
    # per microbatch: weights gathered twice (forward, backward), gradients reduce-scattered once
    want_mb = (2 * _ring(DENSE_PB, DENSE_LAT, 1, 2 * P_D) + _ring(DENSE_PB, DENSE_LAT, 1, 4 * P_D)
               + 2 * _ring(EXPERT_PB, EXPERT_LAT, 1, 2 * P_E) + _ring(EXPERT_PB, EXPERT_LAT, 1, 4 * P_E))
    assert float(mb[0]) == pytest.approx(want_mb, rel=1e-12)
    assert float(step[0]) == 0.0   # plain ZeRO-3: nothing more once per step


# ---- per-layer collectives -----------------------------------------------------------------
def test_dense_layer_collectives():
    # TP 4 inside a node: 2 all-reduces of the layer's activations (T h 2 bytes) per microbatch
    g = _grid(tp=4, cp=2, dp=1)
    tp_ar, a2a, send = _collectives(DENSE, H100, g, TrainingOptions(), C, moe=False)
    tokens = 4096 / 2
    act = tokens * 4096 * 2.0
    one = 2 * act * 3 / 4 / SU + 2 * 2 * NVL
    assert float(tp_ar[0]) == pytest.approx(2 * one, rel=1e-12)
    assert float(np.asarray(a2a).reshape(-1)[0]) == 0.0
    # CP 2: a K/V block of 8 / 4 = 2 KV heads x (128 + 128) per token goes to the CP neighbour
    # 4 ranks away, inside the node
    kv = tokens * 2 * 256 * 2.0
    assert float(send[0]) == pytest.approx(NVL + kv / SU, rel=1e-12)
    assert float(send[0]) == pytest.approx(float(p2p_time(kv, 4, 2, H100, C)), rel=1e-12)


def test_moe_layer_collectives():
    g = _grid(tp=2, dp=8, ep=8, etp=1)
    tp_ar, a2a, send = _collectives(MOE, H100, g, TrainingOptions(), C, moe=True)
    tokens = 4096
    act = tokens * 4096 * 2.0
    attn = 2 * act * 1 / 2 / SU + 2 * 1 * NVL      # TP 2 all-reduce
    assert float(tp_ar[0]) == pytest.approx(attn, rel=1e-12)   # ETP 1: no expert all-reduce
    payload = tokens * 2 * 4096 * 2.0 / 2           # top-2 copies of the TP rank's token slice
    E = MOE.n_experts  # flex: one NVLink copy per destination rank
    # random routing: the busiest of 8 ranks receives mu + sqrt(2 mu ln 8), mu = 2048 tokens x 2 copies
    imb8 = 1 + math.sqrt(2 * math.log(8) / 4096)
    assert float(a2a[0]) == pytest.approx(float(dispatch_time(payload * imb8, 2, 8, 1, H100, C, dedup=True,
                                                              n_experts=E)))
    even = _collectives(MOE, H100, g, TrainingOptions(force_balanced_routing=True), C, moe=True)[1]
    assert float(even[0]) == pytest.approx(float(dispatch_time(payload, 2, 8, 1, H100, C, dedup=True, n_experts=E)))
    # across nodes the dispatcher matters: flex (default) sends a token once per remote node,
    # alltoall once per expert
    g16 = _grid(tp=2, dp=16, ep=16, etp=1)
    imb16 = 1 + math.sqrt(2 * math.log(16) / 4096)
    flex = _collectives(MOE, H100, g16, TrainingOptions(), C, moe=True)[1]
    plain = _collectives(MOE, H100, g16, TrainingOptions(moe_dispatcher="alltoall"), C, moe=True)[1]
    assert float(flex[0]) == pytest.approx(float(dispatch_time(payload * imb16, 2, 16, 1, H100, C, dedup=True,
                                                               n_experts=E)))
    assert float(plain[0]) == pytest.approx(float(dispatch_time(payload * imb16, 2, 16, 1, H100, C, dedup=False)))
    assert float(flex[0]) < float(plain[0])
    assert float(send[0]) == 0.0
    # ETP 2: the expert half all-reduces the routed copies (k x the activations) in the ETP group
    g2 = _grid(tp=2, dp=8, ep=4, etp=2)
    tp2 = _collectives(MOE, H100, g2, TrainingOptions(), C, moe=True)[0]
    assert float(tp2[0]) == pytest.approx(attn + 2 * (2 * act) * 1 / 2 / SU + 2 * NVL, rel=1e-12)


# ---- MLA projections -----------------------------------------------------------------------
def test_mla_projection_gemms_are_deepseek_v3s():
    # DeepSeek-V3 (arXiv 2412.19437): d 7168, 128 heads, q_lora 1536, kv_lora 512, rope 64,
    # nope 128, v 128. TP 1: the projections are
    m = named_model("deepseek-v3")
    shapes = [(7168, 512 + 64), (512, 128 * (128 + 128)), (128 * 128, 7168), (7168, 1536), (1536, 128 * 192)]
    g = _grid(dp=8, ep=8)
    o = TrainingOptions()
    f, b = 0.0, 0.0
    for n_in, n_out in shapes:
        pf, pb = K.linear_fwd_bwd_time(np.array([4096.0]), n_out, n_in, 1, H100.device, C, "bf16", 2.0,
                                       norm_fused=n_in == 7168)
        f, b = f + pf, b + pb
    got_f, got_b = _attention(m, H100, g, o, C)[:2]
    assert float(got_f[0]) == pytest.approx(float(f[0]), rel=1e-12)
    assert float(got_b[0]) == pytest.approx(float(b[0]), rel=1e-12)


# ---- MoE FFN -------------------------------------------------------------------------------
def test_moe_ffn_grouped_gemms_wait_for_the_busiest_rank():
    import math

    from carbonscaling.perf import moe
    from carbonscaling.perf.step import _ffn

    g = _grid(dp=8, ep=8)
    o = TrainingOptions()
    h, de, dev = 4096, MOE.d_expert, H100.device
    tok = 4096.0
    tok_e = tok * 2 * 8 / 16                        # 4096 routed copies per expert
    imb = 1 + math.sqrt(2 * math.log(8) / (tok_e * 2))   # 2 local experts per EP rank, 8 ranks
    gate = 2.0 if MOE.ffn_gated else 1.0
    r = K.linear_fwd_bwd_time(np.array([tok]), 16, h, 1, dev, C, "bf16", 2.0)
    up = moe.grouped_linear_fwd_bwd_time(np.array([tok_e]), gate * de, h, 2, dev, C, "bf16", 2.0, imbalance=imb)
    dn = moe.grouped_linear_fwd_bwd_time(np.array([tok_e]), h, de, 2, dev, C, "bf16", 2.0, imbalance=imb)
    pm = moe.permute_time(tok, 2, h, np.array([1]), dev, C)
    # Transformer Engine's per-expert loop overhead (2 local experts), where the model has it
    ov = (moe.expert_overhead_time(2.0, C) if getattr(o, "moe_grouped_gemm", None) == "loop" else (0.0, 0.0))
    # the MoE input's gradient from two consumers (router, dispatcher): one BF16 add, 6 B per element
    ad_b = tok * h * 6.0 / (dev.hbm_gb_s * 1e9 * C.hbm_efficiency)
    f, b, width = _ffn(MOE, H100, g, o, C, moe=True)
    assert float(f[0]) == pytest.approx(float(r[0][0] + up[0][0] + dn[0][0] + pm[0][0] + ov[0]), rel=1e-12)
    assert float(b[0]) == pytest.approx(float(r[1][0] + up[1][0] + dn[1][0] + pm[1][0] + ov[1]) + ad_b, rel=1e-12)
    assert float(np.asarray(width).reshape(-1)[0]) == pytest.approx(2 * de)
    # forced-balanced routing (Megatron-Bridge's benchmark rows) removes exactly the imbalance
    fb = _ffn(MOE, H100, g, TrainingOptions(force_balanced_routing=True), C, moe=True)[0]
    up1 = moe.grouped_linear_fwd_bwd_time(np.array([tok_e]), gate * de, h, 2, dev, C, "bf16", 2.0)
    dn1 = moe.grouped_linear_fwd_bwd_time(np.array([tok_e]), h, de, 2, dev, C, "bf16", 2.0)
    assert float(fb[0]) == pytest.approx(float(r[0][0] + up1[0][0] + dn1[0][0] + pm[0][0] + ov[0]), rel=1e-12)


def test_a_moe_layer_computes_the_busiest_rank_once(monkeypatch):
    # the grouped GEMMs and the all-to-alls wait for the same rank: layer_times computes its load
    # once and hands it to both (the result equals each piece computing it itself)
    from carbonscaling.perf import layer, sublayers

    g = _grid(tp=2, dp=8, ep=8, etp=1)
    o = TrainingOptions()
    calls = []
    real = sublayers._busiest_rank
    monkeypatch.setattr(layer, "_busiest_rank", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(sublayers, "_busiest_rank", lambda *a, **k: calls.append(1) or real(*a, **k))
    lt = layer.layer_times(MOE, H100, g, o, C, moe=True)
    assert len(calls) == 1
    imb = real(MOE, g, o)
    assert float(imb[0]) == pytest.approx(1 + math.sqrt(2 * math.log(8) / 4096), rel=1e-12)
    assert np.array_equal(_collectives(MOE, H100, g, o, C, moe=True, imbalance=imb)[1],
                          _collectives(MOE, H100, g, o, C, moe=True)[1])
    assert np.array_equal(np.asarray(sublayers._routed_experts(MOE, H100, g, o, C, imb)),
                          np.asarray(sublayers._routed_experts(MOE, H100, g, o, C)))
    monkeypatch.undo()
    assert np.array_equal(lt.time0, layer.layer_times(MOE, H100, g, o, C, moe=True).time0)
    # a dense layer and the papers' legacy model do not compute it
    calls.clear()
    monkeypatch.setattr(layer, "_busiest_rank", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(sublayers, "_busiest_rank", lambda *a, **k: calls.append(1) or real(*a, **k))
    layer.layer_times(MOE, H100, g, o, C, moe=False)
    layer.layer_times(MOE, H100, g, TrainingOptions(ep_convention="cs-v1"), C, moe=True)
    assert calls == []


# ---- pipeline stage times: embedding, output layer, MTP ------------------------------------
def test_stage_times_charge_the_head_and_mtp_to_the_last_stage():
    from carbonscaling.perf.step import stage_times

    lt = SimpleNamespace(time0=np.array([1.0]), extra=np.array([0.5]))
    m0 = DENSE
    m2 = DENSE.model_copy(update={"mtp_layers": 2})
    o = TrainingOptions()
    tokens, h, V = 4096.0, 4096, 50000
    dev = H100.device
    emb = float(K.memory_bound_time(C.embedding_bytes_per_token_hidden * tokens * h, dev, C))
    lf, lb = K.linear_fwd_bwd_time(np.array([tokens]), V / 2, h, 1, dev, C, "bf16", 2.0)
    head = float(lf[0] + lb[0]) + float(K.memory_bound_time(C.cross_entropy_passes * tokens * V / 2 * C.logits_bytes,
                                                            dev, C))
    g = _grid(tp=2, pp=4)
    split = (np.array([8]), np.array([8]), np.array([8]))
    rec = (np.array([2]), np.array([0]), np.array([0]))
    p2p = 2.0 * 1 * float(p2p_time(tokens * h * 2.0 / 2, 2, 4, H100, C))   # fwd + bwd, one chunk
    for m, n_mtp in ((m0, 0), (m2, 2)):
        t_first, t_max, t_sum, p2p_got, ends, r_total, hidden = stage_times(m, H100, g, o, C, lt, split, rec)
        assert float(hidden[0]) == 0.0  # VP 1: the sends are batched, not overlapped
        # each MTP layer: a layer, the 2h -> h eh_proj (TP 2), norms + concat (20 B per token and hidden
        # unit forward, sequence-parallel over TP 2), an embedding lookup and the output layer (step.mtp_time)
        ef, eb = K.linear_fwd_bwd_time(np.array([tokens]), h / 2, 2 * h, 1, dev, C, "bf16", 2.0, norm_fused=False)
        elem = float(K.memory_bound_time(C.mtp_fwd_bytes_hidden * tokens * h / 2, dev, C)) * (1 + C.elementwise_bwd_to_fwd)
        mtp = n_mtp * (1.0 + float(ef[0] + eb[0]) + elem + emb + head)
        assert float(p2p_got[0]) == pytest.approx(p2p, rel=1e-12)
        assert float(t_first[0]) == pytest.approx(8 + 2 * 0.5 + emb + p2p, rel=1e-12)
        assert float(ends[0]) == pytest.approx(emb + head + mtp, rel=1e-12)
        assert float(t_sum[0]) == pytest.approx(32 * 1.0 + 2 * 0.5 + emb + head + mtp + 4 * p2p, rel=1e-12)
        assert float(t_max[0]) == pytest.approx(max(8 + 1 + emb + p2p, 8 + head + mtp + p2p), rel=1e-12)
        assert int(r_total[0]) == 2


# ---- communication overlap ------------------------------------------------------------------
@pytest.mark.parametrize("tp_overlap", [False, True])
def test_ep_all_to_all_hides_only_under_the_paired_microbatch_nodes(tp_overlap):
    # Megatron-Core's EP overlap pairs each all-to-all with one node of another microbatch
    # (perf/ep_overlap.py); TP userbuffer overlap runs inside the GEMMs and does not change it.
    from carbonscaling.perf.ep_overlap import combined_1f1b_layer_time
    from carbonscaling.perf.step import _per_layer

    m = MOE.model_copy(update={"top_k": 8, "d_expert": 1024})   # small experts, many copies: EP binds
    g = _grid(tp=2, dp=32, ep=16, etp=1)      # EP 16 over 4 nodes: a slow all-to-all
    o = TrainingOptions(overlap_ep_comm=True, overlap_tp_comm=tp_overlap, moe_dispatcher="alltoall")
    lt = _per_layer(m, H100, g, o, C)
    tp_pair, a2a, _ = _collectives(m, H100, g, o, C, moe=True)
    c0, tpc, epc = float(lt.compute0[0]), 2 * float(tp_pair[0]), 4 * float(a2a[0])
    tp_x = max(0.0, tpc - c0) if tp_overlap else tpc     # exposed TP
    assert float(lt.tp0[0]) == pytest.approx(tp_x, rel=1e-12)
    assert epc > c0 > 0 and tpc > 0   # the all-to-all outlasts the compute: the comm stream binds
    # comm-bound: the four all-to-alls run back to back, each layer takes 4 a2a
    assert float(lt.ep0[0]) == pytest.approx(epc - c0, rel=1e-9)
    assert float(lt.overlapped0[0]) >= (tpc - tp_x) + (epc - float(lt.ep0[0])) - 1e-15
    parts = [np.array([c0 / 6])] * 6
    assert float(combined_1f1b_layer_time(*parts, np.array([epc / 4]))[0]) == pytest.approx(epc)


def test_layer_time_is_compute_plus_exposed_communication():
    from carbonscaling.perf.step import _per_layer

    m = DENSE.model_copy(update={"seq_len": 1024})   # short sequences: the CP send outlasts attention
    g = _grid(tp=8, cp=2, dp=1)   # CP neighbours in different nodes; no overlap options
    o = TrainingOptions()
    lt = _per_layer(m, H100, g, o, C)
    tp_pair = float(_collectives(m, H100, g, o, C, moe=False)[0][0])
    v = {k: float(np.asarray(getattr(lt, k)).reshape(-1)[0]) for k in
         ("time0", "extra", "compute0", "compute_extra", "tp0", "ep0", "cp0", "tp_extra", "ep_extra", "cp_extra")}
    assert v["cp0"] > 0 and v["tp0"] > 0
    assert v["time0"] == pytest.approx(v["compute0"] + v["tp0"] + v["ep0"] + v["cp0"], rel=1e-12)
    assert v["extra"] == pytest.approx(v["compute_extra"] + v["tp_extra"] + v["ep_extra"] + v["cp_extra"], rel=1e-12)
    # a layer's 2 all-reduce pairs (forward + backward), one more pair when it is recomputed
    assert v["tp0"] == pytest.approx(2 * tp_pair, rel=1e-12)
    assert v["tp_extra"] == pytest.approx(tp_pair, rel=1e-12)


def test_moe_shared_experts_cast_their_own_input():
    """In an MoE layer the pre-MLP norm is a separate TENorm (its output also feeds the router and the
    dispatcher): the shared experts' FC1 casts that output itself where a dense FFN's LayerNormLinear
    would have written it quantized (delayed-scaling FP8, MXFP8: formats.yaml norm_fused_casts)."""
    from carbonscaling.perf import moe
    from carbonscaling.perf.step import _ffn, _mlp

    g = _grid(dp=8, ep=8)
    o = TrainingOptions(precision="fp8-delayed")
    shared = MOE.model_copy(update={"n_shared_experts": 1})
    dev, tok, h = H100.device, 4096.0, 4096
    mlp_f = _mlp(shared, H100, o, C, np.array([tok]), shared.shared_expert_width, 1.0, norm_fused=False)[0]
    fused_f = _mlp(shared, H100, o, C, np.array([tok]), shared.shared_expert_width, 1.0)[0]
    cast = K.quantize_time(tok * h, "fp8-delayed", dev, C)
    assert float(mlp_f[0] - fused_f[0]) == pytest.approx(float(cast), rel=1e-9)   # exactly one input cast
    add_f = moe.input_output_add_time(tok, h, True, dev, C)[0]                     # output + shared output
    f_shared = _ffn(shared, H100, g, o, C, moe=True)[0]
    f_plain = _ffn(MOE, H100, g, o, C, moe=True)[0]
    assert float(f_shared[0] - f_plain[0]) == pytest.approx(float(mlp_f[0] + add_f), rel=1e-9)
