"""Write src/carbonscaling/data/hardware_modern.yaml from data/hardware_modern.csv.

The CSV (copied verbatim from the project's shared data) gives the cited values and a
per-cell verification flag. This script adds what the CSV lacks (compute units, SRAM,
measured GEMM maxima, number formats, and the assumptions for empty cells), each with a
flag, so the YAML is reproducible. Run it after changing the CSV or the decisions below:

    python tools/gen_hardware_modern.py
"""
from __future__ import annotations

import csv
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parents[1] / "src" / "carbonscaling" / "data"
MAMF = ("stas00/ml-engineering compute/accelerator/README.md, 'Maximum Achievable Matmul FLOPS comparison "
        "table' (BF16 and FP8 mamf-finder means); fraction = MAMF / this catalog's peak")
TE_LAYOUT = ("Transformer Engine docs, 'Performance considerations: handling transposes': Hopper needs FP8 "
             "column-wise tensors physically transposed; Blackwell supports column-wise access natively")
CSV_FLAG_FIELD = {
    "bf16": "peak_tflops", "fp8": "peak_tflops_fp8", "fp4": "peak_tflops_fp4", "hbm_gb": "hbm_gb",
    "hbm_bw": "hbm_gb_s", "hbm_type": "hbm_type", "scale_up": "scale_up_gb_s", "tdp": "tdp_w",
    "die_area": "die_area_mm2", "process": "process_node", "n_dies": "n_dies",
    "scale_up_domain": "system.scale_up_domain", "scale_out": "system.scale_out_gbit_s",
    "ref_system": "system.devices_per_node", "ref_power": "system.ref_system_max_power_w",
}
REQUIRED_FLAGS = ("peak_tflops", "hbm_gb", "hbm_gb_s", "scale_up_gb_s", "tdp_w", "die_area_mm2", "process_node",
                  "hbm_type", "compute_units", "sram_mb", "system.devices_per_node", "system.scale_up_domain",
                  "system.scale_out_gbit_s", "system.node_other_power_w")
HOPPER = ["bf16", "fp16", "fp8", "fp8-delayed", "fp8-blockwise"]
BLACKWELL = HOPPER + ["mxfp8", "nvfp4", "mxfp4"]
CDNA3 = ["bf16", "fp16", "fp8", "fp8-delayed"]
CDNA4 = CDNA3 + ["mxfp8", "mxfp4"]
#: Source of the Blackwell products' enabled SM counts (the catalog's ``compute_units``).
BLACKWELL_SMS = ("SMs enabled on the shipping part, as CUDA reports them (cudaDevAttrMultiProcessorCount) in "
                 "public kernel repositories (GitHub, read 2026-11-30): facebookexperimental/triton PR #2768 "
                 "(cuBLAS on GB300: 'sm_count 152 ... the same as GB200's'); 'B200 (sm_100a, 148 SMs)', "
                 "'GB300 (sm_103a, 152 SMs)' (a FlashInfer sampling benchmark table); 'the tested B300 has 148 SMs "
                 "at 2032 MHz, the local GB200 152 SMs at 2062 MHz' (an attention-kernel port log); 'The B300 has "
                 "148 (measured), the same as the B200' (a DeepGEMM build note). NVIDIA's MIG profiles agree that "
                 "GB200 has more SMs than B200 (1g/2g slices of 32/38 SMs vs 30/36; NVIDIA/gpu-operator PRs #1303 "
                 "and #1242). The 160 SMs of NVIDIA's 'Inside Blackwell Ultra' blog are the full die, not the product")

# name: (csv row, decisions). Values given here override/extend the CSV; every such
# value carries a flag in `flags` and, when assumed, a reason in `assume`.
E = {}


def entry(name, row, **kw):
    E[name] = (row, kw)


entry("H100-SXM", "H100-SXM-80GB", kind="gpu", vendor="NVIDIA", display_name="NVIDIA H100 SXM 80GB (DGX H100)",
      aliases=["H100-SXM-80GB", "H100-80GB", "DGX-H100", "HGX-H100"], process_node="5nm", hbm_type="HBM3",
      compute_units=132, sram_mb=80.0, mamf=(794.5, 1402.6), formats=HOPPER,
      system=dict(devices_per_node=8, scale_up_domain=8),
      flags={"compute_units": "datasheet", "sram_mb": "datasheet"},
      notes={"process_node": "TSMC 4N counted at the 5 nm CPA (a 5 nm-family node)",
             "compute_units": "132 SMs, 50 MB L2 + 132 x 228 KB shared (NVIDIA H100 whitepaper 2022)"})
entry("H200", "H200-SXM-141GB", kind="gpu", vendor="NVIDIA", display_name="NVIDIA H200 SXM 141GB (DGX H200)",
      aliases=["H200-SXM-141GB", "H200-SXM", "DGX-H200", "HGX-H200"], process_node="5nm", hbm_type="HBM3e",
      compute_units=132, sram_mb=80.0, mamf=(794.5, 1453.4), formats=HOPPER,
      system=dict(devices_per_node=8, scale_up_domain=8),
      flags={"compute_units": "secondary", "sram_mb": "secondary", "gemm_efficiency_max": "assumed"},
      notes={"process_node": "TSMC 4N counted at the 5 nm CPA",
             "compute_units": "same GH100 die as H100 (132 SMs)",
             "gemm_efficiency_max": "BF16 MAMF of H100 SXM (the table notes 'H200 is the same'); FP8 measured on H200"})
entry("H20", "H20-96GB", kind="gpu", vendor="NVIDIA", display_name="NVIDIA H20 96GB (HGX H20, China export part)",
      aliases=["H20-96GB", "HGX-H20"], process_node="5nm", hbm_type="HBM3",
      compute_units=78, sram_mb=80.0, mamf=(None, None), formats=HOPPER,
      system=dict(devices_per_node=8, scale_up_domain=8, scale_out_gbit_s=400, node_other_power_w=4600),
      flags={"process_node": "unverified", "compute_units": "assumed", "sram_mb": "assumed",
             "system.scale_out_gbit_s": "assumed", "system.node_other_power_w": "assumed"},
      notes={"process_node": "cut-down GH100 (TSMC 4N), counted at the 5 nm CPA",
             "compute_units": "NVIDIA publishes no SM count; 78 SMs as reported by the trade press, unverified",
             "sram_mb": "as H100 (same die)",
             "system.scale_out_gbit_s": "no NIC found: assumed one 400 Gb/s NIC per GPU as HGX H100",
             "system.node_other_power_w": "no system power found: assumed DGX H100's 4.6 kW beyond the GPUs"})
entry("B200", "B200-HGX", kind="gpu", vendor="NVIDIA", display_name="NVIDIA B200 (DGX/HGX B200, 1000 W)",
      aliases=["B200-HGX", "DGX-B200", "HGX-B200"], process_node="4nm", hbm_type="HBM3e", die_area_mm2=1600,
      compute_units=148, sram_mb=160.0, mamf=(1745.0, 3432.5), formats=BLACKWELL,
      system=dict(devices_per_node=8, scale_up_domain=8),
      flags={"die_area_mm2": "assumed", "compute_units": "secondary", "sram_mb": "assumed",
             "formats.mxfp4": "assumed"},
      notes={"die_area_mm2": "not published: two reticle-sized dies, taken as CarbonScaling's B100 figure (1600 mm^2)",
             "process_node": "TSMC 4NP counted at the 4 nm CPA",
             "compute_units": "148 SMs. " + BLACKWELL_SMS, "sram_mb": "assumption: ~126 MB L2 + 148 x 228 KB shared",
             "formats.mxfp4": "MXFP4 assumed at the NVFP4 rate (Blackwell FP4 tensor cores take both block scalings)"})
entry("B300", "B300-HGX", kind="gpu", vendor="NVIDIA", display_name="NVIDIA B300 (DGX/HGX B300, Blackwell Ultra)",
      aliases=["B300-HGX", "DGX-B300", "HGX-B300"], process_node="4nm", hbm_type="HBM3e", die_area_mm2=1600,
      compute_units=148, sram_mb=160.0, mamf=(1769.0, 3353.3), formats=BLACKWELL,
      system=dict(devices_per_node=8, scale_up_domain=8, node_other_power_w=6300),
      flags={"die_area_mm2": "assumed", "compute_units": "secondary", "sram_mb": "assumed",
             "system.node_other_power_w": "assumed", "formats.mxfp4": "assumed"},
      notes={"die_area_mm2": "not published: two reticle-sized dies, as B200 (1600 mm^2)",
             "process_node": "TSMC 4NP counted at the 4 nm CPA", "compute_units": "148 SMs as B200 (the 160 of NVIDIA's blog are the full die). " + BLACKWELL_SMS,
             "sram_mb": "assumption as B200", "tdp_w": "1100 W (dgxc-benchmarking) vs 1000 W max TGP in the DGX B300 power guide; 1100 used",
             "system.node_other_power_w": "DGX B300 maximum power not found: assumed DGX B200's 6.3 kW beyond the GPUs",
             "formats.mxfp4": "MXFP4 assumed at the NVFP4 rate"})
entry("GB200", "GB200 (per B200 GPU, NVL72)", kind="gpu", vendor="NVIDIA",
      display_name="NVIDIA GB200 NVL72 (per B200 GPU, 1200 W)",
      aliases=["DGX-GB200", "GB200-NVL72", "GB200 NVL72"], process_node="4nm", hbm_type="HBM3e", die_area_mm2=1600,
      compute_units=152, sram_mb=160.0, mamf=(1822.0, 3615.6), formats=BLACKWELL,
      system=dict(devices_per_node=4, scale_up_domain=72, cpus_per_node=2, cpu_die_area_mm2=400),
      flags={"die_area_mm2": "assumed", "compute_units": "secondary", "sram_mb": "assumed",
             "system.cpu_die_area_mm2": "assumed", "formats.mxfp4": "assumed"},
      notes={"die_area_mm2": "as B200 (1600 mm^2, assumed)", "process_node": "TSMC 4NP counted at the 4 nm CPA",
             "sram_mb": "assumption as B200", "compute_units": "152 SMs (4 more than B200). " + BLACKWELL_SMS,
             "system.devices_per_node": "a compute tray: 4 GPUs + 2 Grace; 18 trays per rack",
             "system.node_other_power_w": "derived: rack ~120 kW / 18 trays - 4 x 1200 W (switch trays, Grace, NICs shared over the trays)",
             "system.cpu_die_area_mm2": "Grace die area not published: ~400 mm^2 assumed",
             "formats.mxfp4": "MXFP4 assumed at the NVFP4 rate"})
entry("GB300", "GB300 (per B300 GPU, NVL72)", kind="gpu", vendor="NVIDIA",
      display_name="NVIDIA GB300 NVL72 (per B300 GPU, 1400 W)",
      aliases=["DGX-GB300", "GB300-NVL72", "GB300 NVL72"], process_node="4nm", hbm_type="HBM3e", die_area_mm2=1600,
      compute_units=152, sram_mb=160.0, mamf=(1769.0, 3353.3), mamf_peak=(2250.0, 4500.0), formats=BLACKWELL,
      system=dict(devices_per_node=4, scale_up_domain=72, cpus_per_node=2, cpu_die_area_mm2=400),
      flags={"die_area_mm2": "assumed", "compute_units": "secondary", "sram_mb": "assumed",
             "gemm_efficiency_max": "assumed", "gemm_efficiency_max_fp8": "assumed",
             "system.cpu_die_area_mm2": "assumed", "formats.mxfp4": "assumed"},
      notes={"die_area_mm2": "as B300 (1600 mm^2, assumed)", "process_node": "TSMC 4NP counted at the 4 nm CPA",
             "sram_mb": "assumption as B300", "compute_units": "152 SMs (as GB200). " + BLACKWELL_SMS,
             "gemm_efficiency_max": "no GB300 MAMF: B300 SXM's measured BF16 fraction of its own peak, applied to this peak",
             "gemm_efficiency_max_fp8": "no GB300 MAMF: B300 SXM's measured FP8 fraction of its own peak, applied to this peak",
             "system.devices_per_node": "a compute tray: 4 GPUs + 2 Grace; 18 trays per rack",
             "system.node_other_power_w": "derived: 135 kW rack budget / 18 trays (7.5 kW) - 4 x 1400 W",
             "system.cpu_die_area_mm2": "Grace die area not published: ~400 mm^2 assumed",
             "formats.mxfp4": "MXFP4 assumed at the NVFP4 rate"})
entry("MI300X", "MI300X", kind="gpu", vendor="AMD", display_name="AMD Instinct MI300X",
      aliases=["MI300X-OAM"], process_node="5nm", hbm_type="HBM3", die_area_mm2=1480,
      compute_units=304, sram_mb=304.0, mamf=(668.4, None), formats=CDNA3,
      system=dict(devices_per_node=8, scale_up_domain=8, scale_out_gbit_s=400, node_other_power_w=4600),
      flags={"die_area_mm2": "assumed", "compute_units": "datasheet", "sram_mb": "datasheet",
             "system.scale_out_gbit_s": "assumed", "system.node_other_power_w": "assumed"},
      notes={"die_area_mm2": "AMD publishes none: 8 XCD x ~115 mm^2 (N5) + 4 IOD x ~370 mm^2 (N6), approximate, all at the 5 nm CPA",
             "process_node": "N5 XCDs + N6 IODs counted at the 5 nm CPA",
             "compute_units": "304 CUs; 256 MB Infinity Cache + 304 x 64 KB LDS (AMD CDNA3 whitepaper)",
             "system.scale_out_gbit_s": "platform-dependent, not sourced: one 400 Gb/s NIC per GPU assumed",
             "system.node_other_power_w": "platform power not sourced: DGX H100's 4.6 kW beyond the GPUs assumed"})
entry("MI325X", "MI325X", kind="gpu", vendor="AMD", display_name="AMD Instinct MI325X",
      aliases=["MI325X-OAM"], process_node="5nm", hbm_type="HBM3e", die_area_mm2=1480,
      compute_units=304, sram_mb=304.0, mamf=(784.9, None), formats=CDNA3,
      system=dict(devices_per_node=8, scale_up_domain=8, scale_out_gbit_s=400, node_other_power_w=4600),
      flags={"die_area_mm2": "assumed", "compute_units": "assumed", "sram_mb": "assumed",
             "system.scale_out_gbit_s": "assumed", "system.node_other_power_w": "assumed"},
      notes={"die_area_mm2": "same CDNA3 silicon as MI300X (assumed 1480 mm^2)", "compute_units": "as MI300X (same compute)",
             "sram_mb": "as MI300X (same compute dies)",
             "system.scale_out_gbit_s": "not sourced: 400 Gb/s per GPU assumed",
             "system.node_other_power_w": "not sourced: 4.6 kW beyond the GPUs assumed"})
entry("MI355X", "MI355X", kind="gpu", vendor="AMD", display_name="AMD Instinct MI355X",
      aliases=["MI355X-OAM"], process_node="4nm", hbm_type="HBM3e", die_area_mm2=1480,
      compute_units=256, sram_mb=297.0, mamf=(1565.0, None), formats=CDNA4,
      system=dict(devices_per_node=8, scale_up_domain=8, scale_out_gbit_s=400, node_other_power_w=4600),
      flags={"die_area_mm2": "assumed", "process_node": "assumed", "compute_units": "datasheet", "sram_mb": "assumed",
             "system.scale_out_gbit_s": "assumed", "system.node_other_power_w": "assumed",
             "formats.mxfp8": "secondary"},
      notes={"die_area_mm2": "8 XCD x ~110 mm^2 (secondary) + 2 IODs of unknown area: MI300X's 1480 mm^2 assumed",
             "process_node": "N3P XCDs: the CPA tables stop at 4 nm, so the 4 nm CPA is used (a lower bound)",
             "compute_units": "256 CUs (ROCm GPU specifications)", "sram_mb": "assumption: 256 MB Infinity Cache + 256 x 160 KB LDS",
             "formats.mxfp8": "CDNA4 runs OCP MX formats; MXFP8 at the FP8 rate",
             "system.scale_out_gbit_s": "not sourced: 400 Gb/s per GPU assumed",
             "system.node_other_power_w": "not sourced: 4.6 kW beyond the GPUs assumed"})
# TPUs: Google publishes no TDP, die area or process. Power is assumed from energy per peak
# FLOP: v5e at the CarbonScaling v2 table's TPU v5p figure (600 W / 459 TF), Trillium
# 67 % more energy-efficient than v5e (Google's launch claim), Ironwood 2x Trillium's
# perf/W (Google's claim, in the CSV notes). All flagged assumed.
W_PER_TF_V5 = 600.0 / 459.0
# Formats: the Cloud TPU docs give BF16 (and INT8/FP8) peaks and no FP16 rate; the MXU multiplies
# in BF16 with FP32 accumulation (Jouppi et al., "TPU v4", ISCA 2023), so no TPU lists fp16.
TPU_FORMATS = ["bf16", "fp8"]
TPU_FP16 = "no fp16: Cloud TPU docs give BF16/INT8/FP8 peaks and no FP16 rate (MXU: BF16 in, FP32 accumulate)"
entry("TPU-v5e", "TPUv5e", kind="tpu", vendor="Google", display_name="Google TPU v5e",
      aliases=["TPUv5e", "TPU v5e", "v5e"], tdp_w=round(197 * W_PER_TF_V5), die_area_mm2=426, process_node="5nm",
      hbm_type="HBM2", compute_units=4, sram_mb=128.0, mamf=(None, None), formats=["bf16"],
      system=dict(devices_per_node=8, scale_up_domain=256, torus_dims=2, node_other_power_w=800),
      flags={"tdp_w": "assumed", "die_area_mm2": "assumed", "process_node": "assumed", "compute_units": "secondary",
             "sram_mb": "assumed", "system.node_other_power_w": "assumed"},
      notes={"formats": TPU_FP16, "tdp_w": "no TDP published: energy per peak FLOP of the v2 paper's TPU v5p (600 W / 459 TF) x 197 TF",
             "die_area_mm2": "not published: the v2 paper's TPU v5p 426 mm^2 assumed", "process_node": "not published: 5 nm assumed",
             "compute_units": "one TensorCore with 4 MXUs (Cloud TPU docs)", "sram_mb": "assumption as TPU v4's 128 MiB CMEM",
             "peak_tflops_fp8": "no FP8 rate published (INT8 393 TOPS): FP8 runs are rejected",
             "system.node_other_power_w": "host power not published: 100 W per chip assumed (as TPU v4 here)"})
entry("TPU-v5p", "TPUv5p", kind="tpu", vendor="Google", display_name="Google TPU v5p (Cloud TPU docs)",
      aliases=["TPU v5p", "v5p"], tdp_w=600, die_area_mm2=426, process_node="5nm", hbm_type="HBM2e",
      compute_units=8, sram_mb=160.0, mamf=(None, None), formats=TPU_FORMATS,
      system=dict(devices_per_node=4, scale_up_domain=8960, torus_dims=3, node_other_power_w=400),
      flags={"tdp_w": "paper", "die_area_mm2": "paper", "process_node": "paper", "compute_units": "secondary",
             "sram_mb": "assumed", "system.node_other_power_w": "assumed"},
      notes={"formats": TPU_FP16, "tdp_w": "Google publishes none: CarbonScaling v2 Table 1's 600 W", "die_area_mm2": "CarbonScaling v2 Table 1",
             "process_node": "CarbonScaling v2 Table 1", "compute_units": "2 TensorCores x 4 MXUs",
             "sram_mb": "assumption as TPU v4", "peak_tflops_fp8": "FP8 runs at the BF16 rate (no speed-up)",
             "system.node_other_power_w": "host power not published: 100 W per chip assumed"})
entry("TPU-v6e", "TPUv6e (Trillium)", kind="tpu", vendor="Google", display_name="Google TPU v6e (Trillium)",
      aliases=["TPUv6e", "TPU v6e", "v6e", "Trillium"], tdp_w=round(918 * W_PER_TF_V5 / 1.67), die_area_mm2=426,
      process_node="5nm", hbm_type="HBM3", compute_units=8, sram_mb=160.0, mamf=(None, None),
      formats=TPU_FORMATS,
      system=dict(devices_per_node=8, scale_up_domain=256, torus_dims=2, scale_out_gbit_s=25, node_other_power_w=800),
      flags={"tdp_w": "assumed", "die_area_mm2": "assumed", "process_node": "assumed", "hbm_type": "assumed",
             "compute_units": "assumed", "sram_mb": "assumed", "system.scale_out_gbit_s": "assumed",
             "system.node_other_power_w": "assumed"},
      notes={"formats": TPU_FP16, "tdp_w": "no TDP published: v5e's assumed energy per FLOP improved 67 % (Google's Trillium launch claim)",
             "die_area_mm2": "not published: 426 mm^2 assumed", "process_node": "not published: 5 nm assumed",
             "hbm_type": "not found: HBM3 assumed (32 GB at 1.6 TB/s)",
             "compute_units": "2 MXUs of 256x256 = 8 units of 128x128 (assumed)", "sram_mb": "assumption as TPU v4",
             "peak_tflops_fp8": "FP8 at the BF16 rate (no speed-up)",
             "system.scale_out_gbit_s": "per-host NIC not found: v5e's 25 Gb/s per chip assumed",
             "system.node_other_power_w": "host power not published: 100 W per chip assumed"})
entry("TPU7x", "TPU7x (Ironwood)", kind="tpu", vendor="Google", display_name="Google TPU7x (Ironwood)",
      aliases=["Ironwood", "TPUv7", "TPU v7", "TPU7"], tdp_w=round(2307 * W_PER_TF_V5 / 1.67 / 2.0), die_area_mm2=852,
      process_node="4nm", compute_units=16, sram_mb=160.0, mamf=(None, None), formats=TPU_FORMATS,
      hbm_type="HBM3e",
      system=dict(devices_per_node=4, scale_up_domain=9216, torus_dims=3, scale_out_gbit_s=50, node_other_power_w=400),
      flags={"tdp_w": "assumed", "die_area_mm2": "assumed", "process_node": "assumed", "compute_units": "assumed",
             "sram_mb": "assumed", "system.scale_out_gbit_s": "assumed", "system.node_other_power_w": "assumed"},
      notes={"formats": TPU_FP16, "tdp_w": "no TDP published: Trillium's assumed energy per FLOP halved (Google: 2x perf/W vs Trillium)",
             "die_area_mm2": "two compute dies of unknown area: 2 x 426 mm^2 assumed", "process_node": "not published: 4 nm assumed",
             "compute_units": "not published: 2 dies x 8 units assumed", "sram_mb": "assumption as TPU v4",
             "system.scale_out_gbit_s": "2 NICs per 4-chip VM, speed not found: 50 Gb/s per chip assumed (as v5p)",
             "system.node_other_power_w": "host power not published: 100 W per chip assumed"})
entry("Gaudi3", "Gaudi3", kind="asic", vendor="Intel", display_name="Intel Gaudi 3 (OAM, 900 W)",
      aliases=["Gaudi 3", "Gaudi-3", "HL-325L"], die_area_mm2=1600, process_node="5nm", hbm_type="HBM2e",
      compute_units=8, sram_mb=96.0, mamf=(1243.0, 1289.5), formats=CDNA3,
      system=dict(devices_per_node=8, scale_up_domain=8, node_other_power_w=4600),
      flags={"die_area_mm2": "assumed", "compute_units": "secondary", "sram_mb": "secondary",
             "system.node_other_power_w": "assumed"},
      notes={"die_area_mm2": "two compute dies of unpublished area: 1600 mm^2 (two reticle-class dies) assumed",
             "process_node": "TSMC 5 nm (unverified in the CSV)",
             "compute_units": "8 matrix-multiplication engines (MME), 4 per die", "sram_mb": "96 MB on-die SRAM (Intel Gaudi 3 white paper)",
             "gemm_efficiency_max": "MAMF measured at the shipping 1600 MHz MME clock (1677 TF theory); fraction taken against this catalog's 1835",
             "system.node_other_power_w": "server power not verified: 4.6 kW beyond the accelerators assumed"})
entry("Trainium2", "Trainium2", kind="asic", vendor="AWS", display_name="AWS Trainium2 (trn2.48xlarge / UltraServer)",
      aliases=["Trn2", "Trainium 2", "trn2"], tdp_w=500, die_area_mm2=814, process_node="5nm", hbm_type="HBM3",
      compute_units=8, sram_mb=224.0, mamf=(None, None), formats=["bf16", "fp16", "fp8"],
      system=dict(devices_per_node=16, scale_up_domain=64, torus_dims=2, node_other_power_w=1600),
      flags={"tdp_w": "assumed", "die_area_mm2": "assumed", "process_node": "assumed", "compute_units": "secondary",
             "sram_mb": "assumed", "system.node_other_power_w": "assumed"},
      notes={"tdp_w": "AWS publishes none: 500 W assumed (order of an HBM3 accelerator at 667 TF; cf. MI300X 750 W at 1307 TF)",
             "die_area_mm2": "not published: one reticle-class die (814 mm^2) assumed", "process_node": "not published: 5 nm assumed",
             "compute_units": "8 NeuronCore-v3 (AWS Neuron docs)", "sram_mb": "assumption: 8 x 28 MB on-chip SBUF",
             "hbm_gb": "96 GiB (= 103 GB) as AWS lists it",
             "system.scale_up_domain": "the 64-chip Trn2 UltraServer (16 per instance on a 4x4 torus + 256 GB/s between instances)",
             "system.node_other_power_w": "host power not published: 100 W per chip assumed"})


def num(x):
    x = x.strip()
    if not x:
        return None
    v = float(x)
    return int(v) if v.is_integer() else v


def main():
    rows = {r["accelerator"]: r for r in csv.DictReader((DATA / "hardware_modern.csv").open(encoding="utf-8"))}
    out = {}
    for name, (row_name, d) in E.items():
        r = rows[row_name]
        flags = {}
        for part in r["verification"].split(";"):
            if "=" in part:
                k, v = (s.strip() for s in part.split("=", 1))
                if k in CSV_FLAG_FIELD:
                    flags[CSV_FLAG_FIELD[k]] = v.split()[0]
        dev = {"kind": d["kind"], "vendor": d["vendor"], "display_name": d["display_name"], "aliases": d["aliases"],
               "catalog_row": row_name}
        dev["peak_tflops"] = num(r["dense_bf16_fp16_tflops"])
        fp8 = num(r["dense_fp8_tflops"])
        if fp8 is not None:
            dev["peak_tflops_fp8"] = fp8
        fp4 = num(r["dense_fp4_tflops"])
        if fp4 is not None:
            dev["peak_tflops_fp4"] = fp4
        dev["formats"] = [f for f in d["formats"] if (f not in ("nvfp4", "mxfp4") or fp4) and
                          (f in ("bf16", "fp16") or fp8)]
        dev["hbm_gb"] = num(r["hbm_gb"])
        dev["hbm_gb_s"] = num(r["hbm_gb_s"])
        dev["scale_up_gb_s"] = num(r["scale_up_gb_s_per_device"])
        for field, col in (("tdp_w", "tdp_w"), ("die_area_mm2", "die_area_mm2")):
            v = num(r[col])
            dev[field] = v if v is not None else d[field]
            if v is None:
                flags.setdefault(field, "assumed")
        dev["process_node"] = d["process_node"]
        dev["hbm_type"] = d["hbm_type"]
        if not r["hbm_type"].strip():
            flags.setdefault("hbm_type", "assumed")
        n_dies = num(r["n_dies"])
        if n_dies is not None:
            dev["n_dies"] = n_dies
        if d["formats"] is BLACKWELL:
            dev["fp8_columnwise_native"] = True
            d["notes"].setdefault("fp8_columnwise_native", TE_LAYOUT)
        dev["compute_units"] = d["compute_units"]
        dev["sram_mb"] = d["sram_mb"]
        bf, f8 = d["mamf"]
        pb, p8 = d.get("mamf_peak", (dev["peak_tflops"], dev.get("peak_tflops_fp8")))
        if bf is not None:
            dev["gemm_efficiency_max"] = round(bf / pb, 3)
            flags.setdefault("gemm_efficiency_max", "measured")
        if f8 is not None:
            dev["gemm_efficiency_max_fp8"] = round(f8 / p8, 3)
            flags.setdefault("gemm_efficiency_max_fp8", flags.get("gemm_efficiency_max", "measured"))
        for k, v in d["flags"].items():
            flags[k] = v
        sys_ = dict(d["system"])
        sys_.setdefault("scale_out_gbit_s", num(r["scale_out_gbit_s_per_device"]))
        sys_["ref_system"] = r["ref_system"]
        pw = num(r["ref_system_max_power_w"])
        if pw is not None:
            sys_["ref_system_max_power_w"] = pw
            per_node = pw / (72 // sys_["devices_per_node"]) if sys_["scale_up_domain"] == 72 else pw
            sys_.setdefault("node_other_power_w", round(per_node - sys_["devices_per_node"] * dev["tdp_w"], 1))
            flags.setdefault("system.node_other_power_w", "derived")
        sys_["source"] = (f"reference system: {r['ref_system']}; NIC: {r['scale_out_nic'] or 'not found'}; "
                          f"scale-up: {r['scale_up_interconnect']} ({r['scale_up_direction']})")
        dev["system"] = sys_
        for f in REQUIRED_FLAGS:
            flags.setdefault(f, "assumed")
        if dev.get("fp8_columnwise_native"):
            flags["fp8_columnwise_native"] = "datasheet"
        missing = [k for k, v in flags.items() if v == "assumed" and k not in d["notes"]]
        if missing:
            raise SystemExit(f"{name}: assumed without a reason: {missing}")
        dev["cell_flags"] = dict(sorted(flags.items()))
        assumed = {k: v for k, v in d["notes"].items()}
        dev["source"] = (f"data/hardware_modern.csv row {row_name!r}: " + r["sources"]
                         + (f" | GEMM maxima: {MAMF}" if bf is not None or f8 is not None else ""))
        dev["verification"] = "; ".join(f"{k}: {v}" for k, v in assumed.items()) + (
            f". CSV notes: {r['notes']}" if r["notes"] else "")
        out[name] = dev
    header = ("# Current accelerators and their reference systems, generated by tools/gen_hardware_modern.py\n"
              "# from data/hardware_modern.csv (a verbatim copy of the project's shared data, with sources and\n"
              "# per-cell verification flags). Do not edit by hand: change the CSV or the generator's decisions.\n"
              "# cell_flags: per field, datasheet | secondary | unverified (as the CSV says), measured (a published\n"
              "# microbenchmark), paper (a CarbonScaling table), derived (arithmetic from flagged cells) or assumed\n"
              "# (the CSV cell is empty or the field is not in it; `verification` says what was assumed and why).\n")
    text = header + yaml.safe_dump({"devices": out}, sort_keys=False, width=120, allow_unicode=True)
    (DATA / "hardware_modern.yaml").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
