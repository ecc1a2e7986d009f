"""Kernel costs owned by the hardware layer: number-format GEMMs and casts, MoE grouped GEMMs
and all-to-all placement, Mamba-2 (SSD) layers — each against a hand calculation."""

from __future__ import annotations

import numpy as np
import pytest

from carbonscaling.hardware import load_system
from carbonscaling.perf import kernels as K
from carbonscaling.perf import moe, ssm
from carbonscaling.perf.comm import all_to_all_time, scale_out_bandwidth, scale_up_bandwidth
from carbonscaling.perf.constants import default_constants

C = default_constants()
H100 = load_system("H100-SXM")
B200 = load_system("B200")
GB200 = load_system("GB200")


# ---- formats ---------------------------------------------------------------------------
def test_big_gemm_runs_at_the_formats_peak_times_its_measured_maximum():
    m = n = k = 8192  # whole 128-tiles, 4096 tiles over 132 SMs: quantization losses small
    # MXFP8: the per-tensor FP8 maximum x the block-scaled kernel's rate (TE GEMM profiling, B300)
    for sys_, fmt, emax in ((H100, "bf16", 0.803), (H100, "fp8", 0.709), (B200, "mxfp8", 0.763 * 0.951),
                            (B200, "fp8", 0.763), (B200, "nvfp4", 0.763)):
        d = sys_.device
        tiles = (m // 128) * (n // 128)
        wave = tiles / (np.ceil(tiles / d.compute_units) * d.compute_units)
        eff = emax * C.gemm_in_situ_factor * wave * k / (k + C.gemm_k_overhead)
        assert K.gemm_efficiency(m, n, k, 1, d, C, fmt) == pytest.approx(eff)
        t = K.gemm_time(m, n, k, 1, d, C, fmt, 1.0)
        assert t == pytest.approx(2.0 * m * n * k / (d.peak_flops(fmt) * eff))


def test_mxfp8_gemm_kernel_runs_at_the_measured_share_of_per_tensor_fp8():
    from carbonscaling.formats import number_format
    # TE GEMM profiling guide, B300, pre-quantized: 6.812 ms (FP8 current) / 7.161 ms (MXFP8) per layer
    assert number_format("mxfp8").gemm_rate == pytest.approx(0.951)
    assert number_format("fp8-mx").gemm_rate == pytest.approx(0.951)
    for f in ("bf16", "fp8", "fp8-delayed", "fp8-blockwise", "nvfp4"):
        assert number_format(f).gemm_rate == 1.0
    for sys_ in (B200, GB200):
        shapes = (8192, 28672, 8192, 1), (4096, 1024, 16384, 1), (512, 4096, 4096, 8)
        for m, n, k, b in shapes:
            ratio = K.gemm_efficiency(m, n, k, b, sys_.device, C, "mxfp8") / K.gemm_efficiency(
                m, n, k, b, sys_.device, C, "fp8")
            assert ratio == pytest.approx(0.951)


def test_quantized_linear_pays_its_casts():
    d = H100.device
    tok, n_out, n_in = 8192, 4096, 8192
    f8, b8 = K.linear_fwd_bwd_time(tok, n_out, n_in, 1, d, C, "fp8", 1.0, weight_cast_share=0.25)
    gf = K.gemm_time(tok, n_out, n_in, 1, d, C, "fp8", 1.0)
    gb = K.gemm_time(tok, n_in, n_out, 1, d, C, "fp8", 1.0) + K.gemm_time(n_in, n_out, tok, 1, d, C, "fp8", 1.0)
    hbm = d.hbm_gb_s * 1e9 * C.hbm_efficiency
    # current scaling: 7 bytes per cast element (amax read 2, cast 2 + 1, FP8 transpose 1 + 1)
    assert f8 - gf == pytest.approx(7.0 * (tok * n_in + 0.25 * n_in * n_out) / hbm)
    assert b8 - gb == pytest.approx(7.0 * tok * n_out / hbm)
    fd, _ = K.linear_fwd_bwd_time(tok, n_out, n_in, 1, d, C, "fp8-delayed", 1.0)
    assert fd - gf == pytest.approx(5.0 * tok * n_in / hbm)  # delayed scaling: no amax pass
    bf, bb = K.linear_fwd_bwd_time(tok, n_out, n_in, 1, d, C, "bf16", 2.0)
    assert bf == pytest.approx(K.gemm_time(tok, n_out, n_in, 1, d, C, "bf16", 2.0))  # no cast in BF16
    assert 1.2 < (bf + bb) / (f8 + b8) < 2.0  # FP8 speeds a big linear up, less than the 2x peak


def test_fp4_format_needs_a_fp4_device():
    with pytest.raises(Exception, match="does not run nvfp4"):
        K.gemm_time(1024, 1024, 1024, 1, H100.device, C, "nvfp4", 0.5625)


# ---- MoE -------------------------------------------------------------------------------
def test_tokens_per_expert_hand_calculation():
    # DeepSeek-V3-like: 4096 tokens per rank, top-8 of 256 experts, EP 64 -> 4096 x 8 x 64 / 256
    assert moe.tokens_per_expert(4096, 8, 256, 64) == pytest.approx(8192)
    assert moe.tokens_per_expert(4096, 8, 256, 8, etp=2, tp=2) == pytest.approx(4096 * 8 * 8 * 2 / (256 * 2))


def test_grouped_gemm_pads_few_tokens_to_the_alignment():
    d = B200.device
    t_few, _ = moe.grouped_linear_fwd_bwd_time(5, 2048, 7168, 4, d, C, "mxfp8", 1.03125)
    t_32, _ = moe.grouped_linear_fwd_bwd_time(32, 2048, 7168, 4, d, C, "mxfp8", 1.03125)
    # 5 tokens are padded to one 32-row MX block: the GEMMs cost as much as 32 tokens'
    g5 = K.gemm_time(32, 2048, 7168, 4, d, C, "mxfp8", 1.03125)
    assert t_few - K.quantize_time(4 * 32 * 7168, "mxfp8", d, C) == pytest.approx(g5)
    assert t_few == pytest.approx(t_32)
    # per routed token an expert with 64 tokens is less efficient than a dense FFN with 8192
    e_small = K.gemm_efficiency(64, 2048, 7168, 4, d, C, "mxfp8")
    e_dense = K.gemm_efficiency(8192, 2048, 7168, 1, d, C, "mxfp8")
    assert e_small < 0.6 * e_dense


def test_routing_imbalance():
    # mu = 128 x 4 = 512 tokens per rank; max over 64 ranks ~ mu + sqrt(2 mu ln 64)
    assert moe.routing_imbalance(128, 4, 64) == pytest.approx(1 + np.sqrt(2 * np.log(64) / 512))
    assert moe.routing_imbalance(128, 4, 64, balanced=True) == 1.0
    assert moe.routing_imbalance(128, 4, 1) == 1.0


def test_all_to_all_on_nvlink_nvl72_and_infiniband():
    payload = 4096 * 8 * 7168 * 2.0  # bytes one rank dispatches (4096 tokens, top-8, d 7168, BF16)
    # H100 nodes, EP 8 inside a node: 7/8 of the data over NVLink
    t8 = all_to_all_time(payload, 8, 1, H100, C)
    lat8 = C.nvlink_latency_s * 3
    assert t8 == pytest.approx(payload * 7 / 8 / scale_up_bandwidth(H100, C) + lat8)
    # EP 64 over 8 nodes: 56/64 of it leaves the node on the GPU's own NIC, which binds
    t64 = all_to_all_time(payload, 64, 1, H100, C)
    assert t64 == pytest.approx(payload * 56 / 64 / scale_out_bandwidth(H100, C) + C.scale_out_latency_s * 6)
    # GB200 NVL72: the 64 ranks share one NVLink domain
    g64 = all_to_all_time(payload, 64, 1, GB200, C)
    assert g64 == pytest.approx(payload * 63 / 64 / scale_up_bandwidth(GB200, C) + C.nvlink_latency_s * 6)
    assert t64 / g64 > 5  # NVL72 turns the inter-node all-to-all into an NVLink one
    disp, comb = moe.dispatch_combine_bytes(4096, 8, 7168, tp=2, dispatch_bytes=1.0)
    assert disp == pytest.approx(4096 * 8 * 7168 / 2) and comb == pytest.approx(2 * disp)


# ---- Mamba-2 ---------------------------------------------------------------------------
def test_ssd_flops_hand_calculation():
    # Nemotron 3 Nano mixer: 64 heads x 64, state 128, chunk 128
    per_head = 2 * 128 * (128 + 64) + 4 * 128 * 64
    assert ssm.ssd_flops_per_token(64, 64, 128, 128) == 64 * per_head == 5_242_880
    width = 2 * 4096 + 2 * 8 * 128 + 64
    assert ssm.mamba2_in_proj_width(64, 64, 128, 8) == width
    assert ssm.mamba2_flops_per_token(2688, 64, 64, 128, 8, 128) == 2 * 2688 * (width + 4096) + 64 * per_head
    conv = (4096 + 2 * 8 * 128) * 5
    assert ssm.mamba2_params(2688, 64, 64, 128, 8) == 2688 * width + 4096 * 2688 + conv + 3 * 64 + 4096


def test_mamba_conv_kernel_is_the_sourced_framework_default():
    # d_conv = 4 lives in data/ssm_kernels.yaml (Megatron-Core MambaMixer, mamba_ssm Mamba2), not in code:
    # the default of mamba2_params is that entry, and each extra tap adds one weight per conv channel.
    entry = ssm._kernel_table()["conv_kernel"]
    assert entry["value"] == 4 and entry["verified"] is True and "mamba_mixer.py" in entry["source"]
    conv_channels = 4096 + 2 * 8 * 128
    assert ssm.mamba2_params(2688, 64, 64, 128, 8) == ssm.mamba2_params(2688, 64, 64, 128, 8, conv_kernel=4)
    assert ssm.mamba2_params(2688, 64, 64, 128, 8, conv_kernel=5) - ssm.mamba2_params(2688, 64, 64, 128, 8) \
        == conv_channels


def test_ssd_kernel_bytes_by_hand():
    # Nemotron 3 Nano's mixer on one rank: H 64, P 64, N 128, G 8, chunk 128 (ssm_kernels.yaml).
    # Per token: d_inner = 4096, B or C = 1024, heads = 64, chunk states 64 x 64 x 128 / 128 = 4096,
    # CB = 8 x 128 = 1024, in_proj output 2 x 4096 + 2 x 1024 + 64 = 10,304.
    work = ssm.ssd_kernel_work(64, 64, 128, 8, 128, batched=True)
    fwd = {name: nbytes for name, nbytes, _ in work["forward"]}
    assert fwd["in_proj_to_batch_major"] == 2 * 2 * 10_304               # read + write the BF16 projection
    assert fwd["causal_conv1d_fwd"] == 2 * 2 * (4096 + 2 * 1024)          # xBC in and out
    assert fwd["chunk_state_fwd"] == 2 * (4096 + 1024) + 4 * (2 * 64 + 4096)  # x, B; dt, dA; fp32 states
    assert fwd["state_passing_fwd"] == 4 * 4096 + 2 * 4096                # fp32 in, BF16 out
    assert fwd["chunk_scan_fwd"] == 2 * (4 * 4096 + 1024 + 4096) + 4 * (1024 + 2 * 64)
    assert sum(fwd.values()) == 206_720
    bwd = sum(nbytes for _, nbytes, _ in work["backward"])
    assert bwd == 492_288
    # one sequence per microbatch: the two layout copies forward and one backward move nothing
    single = ssm.ssd_kernel_work(64, 64, 128, 8, 128, batched=False)
    assert sum(float(b) for _, b, _ in single["forward"]) == 206_720 - 41_216 - 16_384
    assert sum(float(b) for _, b, _ in single["backward"]) == 492_288 - 41_216
    # tensor-core work: chunk state B^T x (2 H P N), C B^T per group (2 G Q N), C h and the
    # causal blocks of CB x (2 H P Q x 0.75)
    flops = {name: f for name, _, f in work["forward"]}
    assert flops["chunk_state_fwd"] == 2 * 4096 * 128
    assert flops["bmm_chunk_fwd"] == 2 * 8 * 128 * 128
    assert flops["chunk_scan_fwd"] == 2 * 4096 * 128 + 2 * 4096 * 128 * 0.75


def test_ssd_kernel_times_are_memory_bound_on_h100():
    # At 15-40 FLOP per byte every kernel sits below H100's ridge (BF16 fused-attention rate over
    # the achievable HBM bandwidth), so the time is the bytes over the bandwidth.
    rate = H100.device.peak_flops("bf16") * C.flash_fraction_of_peak * C.gemm_in_situ_factor
    bw = H100.device.hbm_gb_s * 1e9 * C.hbm_efficiency
    assert 2 * 4096 * 128 * 1.75 / 47_616 < rate / bw
    fwd, bwd = ssm.ssd_kernel_times(8192, 64, 64, 128, 8, 128, H100.device, C, batched=True)
    assert fwd == pytest.approx(8192 * 206_720 / bw, rel=1e-12)
    assert bwd == pytest.approx(8192 * 492_288 / bw, rel=1e-12)


def test_ssd_kernel_times_take_the_matmuls_when_bandwidth_is_ample():
    # With 1000x the HBM bandwidth the kernels that do matmuls bind on the BF16 rate and the
    # pure copies vanish: the time is the FLOPs over the fused-attention rate.
    fast = H100.device.model_copy(update={"hbm_gb_s": H100.device.hbm_gb_s * 1000})
    rate = fast.peak_flops("bf16") * C.flash_fraction_of_peak * C.gemm_in_situ_factor
    bw = fast.hbm_gb_s * 1e9 * C.hbm_efficiency
    work = ssm.ssd_kernel_work(64, 64, 128, 8, 128, batched=True)
    fwd, bwd = ssm.ssd_kernel_times(8192, 64, 64, 128, 8, 128, fast, C, batched=True)
    want_f = sum(max(8192 * b / bw, 8192 * f / rate) for _, b, f in work["forward"])
    assert fwd == pytest.approx(want_f, rel=1e-12)
    flops_f = 2 * 4096 * 128 + 2 * 8 * 128 * 128 + 2 * 4096 * 128 * 1.75  # chunk state, CB, chunk scan
    assert fwd == pytest.approx(8192 * flops_f / rate, rel=0.02)
    assert bwd > fwd


def test_mamba_layer_time_splits_over_tp_and_adds_its_parts():
    d = H100.device
    f1, b1 = ssm.mamba2_layer_times(8192, 2688, 64, 64, 128, 8, 128, 1, d, C)
    f2, b2 = ssm.mamba2_layer_times(8192, 2688, 64, 64, 128, 8, 128, 2, d, C)
    assert 0.45 < f2 / f1 < 0.7 and 0.45 < b2 / b1 < 0.7
    # every per-token tensor of the SSD kernels is per local head or group: TP 2 halves them
    k1 = ssm.ssd_kernel_times(8192, 64, 64, 128, 8, 128, d, C)
    k2 = ssm.ssd_kernel_times(8192, 32, 64, 128, 4, 128, d, C)
    assert k2[0] == pytest.approx(k1[0] / 2) and k2[1] == pytest.approx(k1[1] / 2)
    assert k1[1] > 2 * k1[0]  # the backward recomputes the conv and chunk states, then 13 gradient kernels


# ---- MoE dispatch (flex / DeepEP-HybridEP) and permutations ----------------------------------
def test_flex_dispatch_sends_one_copy_per_remote_node():
    payload = 4096 * 8 * 7168 * 2.0
    # EP 32 over 4 DGX nodes: D = 4 domains, a token's 8 experts hit 3 x (1 - (3/4)^8) other nodes
    remote = 3 * (1 - 0.75 ** 8)
    assert moe.remote_domains_per_token(8, 32, 8) == pytest.approx(remote)
    t = moe.dispatch_time(payload, 8, 32, 1, H100, C)
    assert t == pytest.approx(payload * remote / 8 / scale_out_bandwidth(H100, C) + C.scale_out_latency_s * 5)
    plain = moe.dispatch_time(payload, 8, 32, 1, H100, C, dedup=False)
    assert plain == pytest.approx(all_to_all_time(payload, 32, 1, H100, C))
    lat = C.scale_out_latency_s * 5
    assert (plain - lat) / (t - lat) == pytest.approx((24 / 32) / (remote / 8))  # ~2.2x less network traffic
    # inside one NVL72 rack nothing crosses the network: both dispatchers cost the same
    assert moe.dispatch_time(payload, 8, 64, 1, GB200, C) == pytest.approx(
        moe.dispatch_time(payload, 8, 64, 1, GB200, C, dedup=False))


def test_token_permutations_are_four_copies_each_way():
    d = B200.device
    f, b = moe.permute_time(4096, 8, 4096, 2, d, C)
    elems = 4096 * 8 * 4096 / 2
    assert f == b == pytest.approx(16 * elems / (d.hbm_gb_s * 1e9 * C.hbm_efficiency))


def test_norm_fused_input_cast_is_free_only_with_scales_known_in_advance():
    d = B200.device
    args = (8192, 4096, 8192, 1, d, C)
    for fmt, free in (("mxfp8", True), ("fp8-delayed", True), ("fp8", False)):
        plain, _ = K.linear_fwd_bwd_time(*args, fmt, 1.0)
        fused, _ = K.linear_fwd_bwd_time(*args, fmt, 1.0, norm_fused=True)
        saved = K.quantize_time(8192 * 8192, fmt, d, C)
        assert plain - fused == pytest.approx(saved if free else 0.0)
    # Blackwell per-tensor FP8 needs no transposed copy: one cast of 2 + 2 + 1 bytes per element
    assert K.quantize_time(1e9, "fp8", d, C) == pytest.approx(5e9 / (d.hbm_gb_s * 1e9 * C.hbm_efficiency))
    assert K.quantize_time(1e9, "fp8", H100.device, C) == pytest.approx(
        7e9 / (H100.device.hbm_gb_s * 1e9 * C.hbm_efficiency))
