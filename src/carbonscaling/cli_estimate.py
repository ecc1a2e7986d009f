"""``carbonscaling estimate``: search the layout of a run and account its carbon.

The options are generated from :mod:`carbonscaling.specs` (the block between the
markers; ``python -m carbonscaling.specs --write-cli`` rewrites it and a test fails when
it is stale), so the CLI, the Python API and scenario files take the same options with
the same ranges. They are written out here rather than built at run time so that
``carbonscaling --help`` does not import pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import DeviceFileOpt, JsonOpt, ModelFileOpt, ModelOpt, app, emit_json, num, print_table
from .errors import InputError


#: ``--device`` of estimate: the catalog device, defaulting to HardwareSpec's (a test checks the text).
EstimateDeviceOpt = Annotated[Optional[str], typer.Option(
    "--device", "-d", metavar="NAME", help="Catalog device name (see `devices`; any case). Default: H100.")]


@app.command()
def estimate(
    model: ModelOpt = None,
    model_file: ModelFileOpt = None,
    device: EstimateDeviceOpt = None,
    device_file: DeviceFileOpt = None,
    # BEGIN generated estimate options (python -m carbonscaling.specs --write-cli)
    preset: Annotated[Optional[str], typer.Option('--preset', metavar='NAME', help='Scaling-law preset: cs-v1, cs-v1-aggressive-batch, cs-v2.')] = None,
    d_model: Annotated[Optional[str], typer.Option('--d-model', metavar='N', help='Model width for --preset. A whole number in [1, 1e9].')] = None,
    years_ahead: Annotated[Optional[str], typer.Option('--years-ahead', metavar='Y', help='Project the device this many years ahead (v1 Table 1 rates). A finite number in [0, 50]. Default: 0.')] = None,
    cpa_growth: Annotated[Optional[str], typer.Option('--cpa-growth', metavar='G', help='Yearly growth of carbon per area for the projection (v2 EUV case: 0.1). A finite number in [-0.5, 2]. Default: 0.')] = None,
    devices: Annotated[Optional[str], typer.Option('--devices', metavar='N', help='Pin the device count. A whole number in [1, 1e9].')] = None,
    tp: Annotated[Optional[str], typer.Option('--tp', metavar='N', help='Pin tensor parallelism. A whole number in [1, 1e9].')] = None,
    pp: Annotated[Optional[str], typer.Option('--pp', metavar='N', help='Pin pipeline parallelism. A whole number in [1, 1e9].')] = None,
    dp: Annotated[Optional[str], typer.Option('--dp', metavar='N', help='Pin data parallelism. A whole number in [1, 1e9].')] = None,
    cp: Annotated[Optional[str], typer.Option('--cp', metavar='N', help='Pin context parallelism. A whole number in [1, 1e9].')] = None,
    ep: Annotated[Optional[str], typer.Option('--ep', metavar='N', help='Pin expert parallelism. A whole number in [1, 1e9].')] = None,
    etp: Annotated[Optional[str], typer.Option('--etp', metavar='N', help='Pin expert tensor parallelism. A whole number in [1, 1e9].')] = None,
    vp: Annotated[Optional[str], typer.Option('--vp', '--interleave', metavar='N', help='Pin virtual pipeline stages per device (interleaving). A whole number in [1, 1e9].')] = None,
    zero: Annotated[Optional[str], typer.Option('--zero', metavar='N', help='Pin the ZeRO stage (4 = hierarchical ZeRO-3). A whole number in [0, 4].')] = None,
    fsdp: Annotated[Optional[str], typer.Option('--fsdp', metavar='N', help='Pin the FSDP sharding group size (0 = off). A whole number in [0, 1e9].')] = None,
    microbatch: Annotated[Optional[str], typer.Option('--microbatch', metavar='N', help='Pin the microbatch size (sequences). A whole number in [1, 1e9].')] = None,
    recompute: Annotated[Optional[str], typer.Option('--recompute', metavar='none|selective|full', help='Pin activation recompute.')] = None,
    recompute_layers: Annotated[Optional[str], typer.Option('--recompute-layers', metavar='N', help='Pin the layers per stage recomputed under full recompute. A whole number in [0, 1e9].')] = None,
    global_batch: Annotated[Optional[str], typer.Option('--global-batch', metavar='N', help='Pin the global batch in sequences. A whole number in [1, 1e9].')] = None,
    global_batch_tokens: Annotated[Optional[str], typer.Option('--global-batch-tokens', metavar='T', help='Pin the global batch in tokens. A finite number in (0, 1e12].')] = None,
    precision: Annotated[Optional[str], typer.Option('--precision', metavar='NAME', help='GEMM number format: bf16, fp16, fp8 (fp8-cs), fp8-delayed, fp8-blockwise, mxfp8 (fp8-mx), nvfp4, mxfp4; the device must run it. Default: bf16.')] = None,
    flash_attention: Annotated[Optional[bool], typer.Option('--flash-attention/--no-flash-attention', help='Fused attention kernels. Default: on.')] = None,
    sequence_parallel: Annotated[Optional[bool], typer.Option('--sequence-parallel/--no-sequence-parallel', help='Megatron sequence parallelism with TP. Default: on.')] = None,
    overlap_grad_reduce: Annotated[Optional[bool], typer.Option('--overlap-grad-reduce/--no-overlap-grad-reduce', help='Overlap the data-parallel gradient reduction with the backward pass. Default: on.')] = None,
    grad_reduce_in_fp32: Annotated[Optional[bool], typer.Option('--grad-reduce-in-fp32/--no-grad-reduce-in-fp32', help="Accumulate and reduce gradients in fp32 (Megatron DDP grad_reduce_in_fp32); off: in BF16, as Megatron-Bridge's performance recipes run. Default: on.")] = None,
    overlap_tp_comm: Annotated[Optional[bool], typer.Option('--overlap-tp-comm/--no-overlap-tp-comm', help='Hide TP collectives under compute. Default: off.')] = None,
    overlap_pp_comm: Annotated[Optional[bool], typer.Option('--overlap-pp-comm/--no-overlap-pp-comm', help="Overlap pipeline sends with the neighbouring chunk's compute when interleaving (VP > 1; Megatron overlap_p2p_comm); with VP = 1 they are exposed. Default: on.")] = None,
    overlap_ep_comm: Annotated[Optional[bool], typer.Option('--overlap-ep-comm/--no-overlap-ep-comm', help="Hide the expert all-to-all under another microbatch's compute (Megatron-Core overlap_moe_expert_parallel_comm); MoE models only: no effect on a dense model. Default: off.")] = None,
    capacity_factor: Annotated[Optional[str], typer.Option('--capacity-factor', metavar='X', help='MoE expert capacity factor. A finite number in [1, 4]. Default: 1.')] = None,
    moe_dispatcher: Annotated[Optional[str], typer.Option('--moe-dispatcher', metavar='flex|alltoall', help="MoE token dispatcher: flex (DeepEP/HybridEP: one network copy per destination node, as Megatron-Bridge's MoE recipes run) or alltoall (one per expert). Default: flex.")] = None,
    moe_grouped_gemm: Annotated[Optional[str], typer.Option('--moe-grouped-gemm', metavar='loop|fused', help="MoE expert GEMMs: loop (Transformer Engine's grouped GEMM, one cuBLAS GEMM per local expert) or fused (one fused grouped-MLP kernel, TE's CuTe-DSL kernel of recent MXFP8 recipes): no per-expert cost. Default: loop.")] = None,
    recompute_modules: Annotated[Optional[str], typer.Option('--recompute-modules', metavar='MODULES', help='Modules selective recompute repeats (Megatron-Core recompute_modules, comma-separated): core_attn, moe_act, layernorm, mla_up_proj, mlp, moe, shared_experts. Default: core_attn.')] = None,
    cuda_graph_scope: Annotated[Optional[str], typer.Option('--cuda-graph-scope', metavar='SCOPES', help='CUDA graphs (Megatron-Core cuda_graph_scope, comma-separated; none = eager): full_iteration (the whole step: no host launch cost), or per-layer graphs of attn, mlp (dense FFNs), moe, moe_router, moe_preprocess (MoE layers: no effect on a dense model), mamba (Mamba layers); every kernel outside a graph costs host launch time (perf/host.py). Default: full_iteration.')] = None,
    cpu_offload_layers: Annotated[Optional[str], typer.Option('--cpu-offload-layers', metavar='LAYERS', help="Activation CPU offloading (Megatron-Core cpu_offloading_num_layers; 0 = off): the first LAYERS layers' saved activations go to host memory in their forward and come back for their backward (Transformer Engine), overlapped with the other layers' compute; needs PP 1, no recompute and a device with a host link (data/host_link.yaml). A whole number in [0, 100000]. Default: 0.")] = None,
    fp8_attention: Annotated[Optional[bool], typer.Option('--fp8-attention/--no-fp8-attention', help="Attention core (the score and value matmuls) in FP8 (Megatron-Core fp8_dot_product_attention: Transformer Engine's cuDNN FP8 fused attention) when the GEMM format is an 8-bit one; off: BF16, as most recipes run it. No effect without fused attention (flash_attention off) or under fp8-blockwise and the FP4 formats, whose recipes Transformer Engine runs with BF16 attention. Default: off.")] = None,
    fused_mlp_dgrad_slowdown: Annotated[Optional[str], typer.Option('--fused-mlp-dgrad-slowdown', metavar='FACTOR', help="Known-regression factor on the fused grouped MLP's backward dGLU + dbias grouped GEMM (FC2's data gradient with the activation and FC1-bias gradients in its epilogue), for a software release that shipped a slow kernel (1 = the healthy kernel); fused grouped MLP only (moe_grouped_gemm fused). A finite number in [1, 100]. Default: 1.")] = None,
    pipeline_layout: Annotated[Optional[str], typer.Option('--pipeline-layout', metavar='LAYOUT', help="Megatron-Core pipeline_model_parallel_layout: the layers each pipeline chunk holds (E embedding, t decoder layer, m MTP layer, L loss; '|' between chunks, chunk i on pipeline rank i mod PP; (...)*n and x*n repeat), e.g. Et*4|(t*4|)*14tmL (16 chunks); needs PP pinned (VP = chunks / PP). Default: the split pipeline_balance chooses.")] = None,
    pipeline_balance: Annotated[Optional[str], typer.Option('--pipeline-balance', metavar='cost|layers', help="Pipeline split when no pipeline_layout is pinned: cost (a custom layout, Megatron-Core >= 0.13, whose heaviest rank is lightest with the output layer and MTP modules weighed by their FLOPs in decoder layers; reported as pipeline_layout) or layers (Megatron's classic splits, embedding and loss one layer each: how runs without a layout are split). cs-v1 keeps v1's rule. Default: cost.")] = None,
    dynamic_eviction: Annotated[Optional[bool], typer.Option('--dynamic-eviction/--no-dynamic-eviction', help='Coop-style allocator (less fragmentation). Default: off.')] = None,
    flexible_sharding: Annotated[Optional[bool], typer.Option('--flexible-sharding/--no-flexible-sharding', help='LinS/hpZ-style ZeRO-3 within the node. Default: off.')] = None,
    qat: Annotated[Optional[bool], typer.Option('--qat/--no-qat', help='Quantization-aware training: 8-bit compute, memory and communication. Default: off.')] = None,
    force_balanced_routing: Annotated[Optional[bool], typer.Option('--force-balanced-routing/--no-force-balanced-routing', help="MoE experts get exactly their share of tokens (token-drop runs padded to capacity); off: random top-k loads the busiest rank more (learned routers, and Megatron's moe_router_force_load_balancing, which routes on random logits). Default: off.")] = None,
    ep_convention: Annotated[Optional[str], typer.Option('--ep-convention', metavar='megatron|cs-v1', help='Layout convention: megatron (devices = TP x CP x PP x DP, EP inside DP x CP) or cs-v1 (the papers: EP multiplies the devices). Default: megatron.')] = None,
    mfu_convention: Annotated[Optional[str], typer.Option('--mfu-convention', metavar='megatron|palm|cs-paper', help='How MFU counts model FLOPs (carbonscaling.mfu): megatron (6 x non-embedding matmul weights incl. the logit layer + causal attention counted half), palm (PaLM App. B / torchtitan: 6N without the input embedding + full attention) or cs-paper (the papers: 6 N_active incl. embeddings + full attention). Default: megatron.')] = None,
    deadline_days: Annotated[Optional[str], typer.Option('--deadline-days', metavar='DAYS', help='Maximum training duration in days. A finite number in (0, 36500]. Default: 90.')] = None,
    objective: Annotated[Optional[str], typer.Option('--objective', metavar='fastest|carbon', help='Layout objective at the minimal device count. Default: fastest.')] = None,
    ci: Annotated[Optional[str], typer.Option('--ci', metavar='CI|REGION|ISO3', help='Grid intensity: g/kWh in [0, 2000], a region (us-east5) or, with codecarbon, an ISO3 country (FRA); default: 323.05 g/kWh, data/power.yaml.')] = None,
    region: Annotated[Optional[str], typer.Option('--region', metavar='REGION', help='Google Cloud region (see `regions`); like --ci.')] = None,
    year: Annotated[Optional[str], typer.Option('--year', metavar='YYYY', help='Year of the region table (default: latest). A whole number in [1900, 2200].')] = None,
    pue: Annotated[Optional[str], typer.Option('--pue', metavar='X', help='Power usage effectiveness (default: 1.1, data/power.yaml). A finite number in [1, 3].')] = None,
    lifetime_years: Annotated[Optional[str], typer.Option('--lifetime', metavar='YEARS', help='Hardware lifetime in years (default: 6 years, data/power.yaml). A finite number in [0.01, 50].')] = None,
    alpha: Annotated[Optional[str], typer.Option('--alpha', metavar='X', help='Dynamic-power scale of --power-model paper (default: 1, data/power.yaml). A finite number in [0, 10].')] = None,
    power_split: Annotated[Optional[str], typer.Option('--power-split', metavar='default|low_static', help='Device power split of --power-model paper: default (dynamic share of TDP from data/power.yaml, static the rest) or low_static (the shares swapped, v1 Fig. 4).')] = None,
    embodied_mode: Annotated[Optional[str], typer.Option('--embodied-mode', metavar='paper|vendor', help='Embodied carbon method: paper (die area x carbon per area + HBM per GB, v1/v2) or vendor (--vendor-kg per device). Default: paper.')] = None,
    vendor_kg_per_device: Annotated[Optional[str], typer.Option('--vendor-kg', metavar='KG', help='Per-device embodied kgCO2e (with --embodied-mode vendor). A finite number in (0, 100000].')] = None,
    infrastructure: Annotated[Optional[bool], typer.Option('--infrastructure/--no-infrastructure', help="Add v2's infrastructure share to embodied carbon. Default: on.")] = None,
    include_embodied: Annotated[Optional[bool], typer.Option('--embodied/--no-embodied', help='Include embodied carbon. Default: on.')] = None,
    median_carbon: Annotated[Optional[bool], typer.Option('--median-carbon/--no-median-carbon', help='Also report the median-latency layout (median duration among the layouts that fit at the chosen device count; v1 Fig. 5a). Default: on.')] = None,
    power_model: Annotated[Optional[str], typer.Option('--power-model', metavar='measured|nameplate|paper', help='Node power: measured (metered MLPerf node power, devices driven by their busy share; default), nameplate (TDP + system maximum: upper bound) or paper (static + dynamic x MFU).')] = None,
    allocation: Annotated[Optional[str], typer.Option('--allocation', metavar='share|node', help='A run on part of a node is charged its share (cloud slice; default) or whole nodes.')] = None,
    lifetime_policy: Annotated[Optional[str], typer.Option('--lifetime-policy', metavar='refuse|whole_run|replace', help="A run longer than the hardware lifetime: refuse (default; the deadline is capped at the lifetime), whole_run (charged once) or replace (charged replacements, the papers' rule).")] = None,
    cooling: Annotated[Optional[str], typer.Option('--cooling', metavar='auto|air|liquid', help='Server cooling: air adds fan power (default auto: GPU servers air, TPUs liquid).')] = None,
    goodput: Annotated[Optional[str], typer.Option('--goodput', metavar='G', help='Fixed goodput in (0, 1]; 1 = steady state only (default: modelled from data/goodput.yaml). A finite number in (0, 1].')] = None,
    interruptions_per_device_day: Annotated[Optional[str], typer.Option('--interruptions', metavar='R', help="Job interruptions per device-day (default: Llama 3's 5.27e-4, data/goodput.yaml). A finite number in [0, 1].")] = None,
    restart_minutes: Annotated[Optional[str], typer.Option('--restart-minutes', metavar='MIN', help='Minutes lost per restart (default: 10 min, data/goodput.yaml). A finite number in [0, 10080].')] = None,
    checkpoint_minutes: Annotated[Optional[str], typer.Option('--checkpoint-minutes', metavar='MIN', help='Training stall per checkpoint save, minutes (default: 1 min, data/goodput.yaml). A finite number in [0, 1440].')] = None,
    evaluation_fraction: Annotated[Optional[str], typer.Option('--evaluation-fraction', metavar='F', help='Share of wall clock in evaluation (default 0). A finite number in [0, 0.9].')] = None,
    development_overhead: Annotated[Optional[str], typer.Option('--development-overhead', metavar='X', help='Development compute before the final run, as a multiple of its device-hours; reported separately, never added (default 0). A finite number in [0, 100].')] = None,
    uncertainty: Annotated[Optional[bool], typer.Option('--uncertainty/--no-uncertainty', help='Monte-Carlo p5/p50/p95 bands and sensitivity ranking (off for fast sweeps). Default: on.')] = None,
    uncertainty_samples: Annotated[Optional[str], typer.Option('--samples', metavar='N', help='Monte-Carlo samples. A whole number in [16, 1e6]. Default: 4096.')] = None,
    uncertainty_seed: Annotated[Optional[str], typer.Option('--seed', metavar='S', help='Monte-Carlo seed (same seed, same bands). A whole number in [0, 1e9]. Default: 0.')] = None,
    contractual_ci: Annotated[Optional[str], typer.Option('--contractual-ci', metavar='G', help='Market-based: contract intensity g/kWh for all consumption. A finite number in [0, 2000].')] = None,
    renewable_share: Annotated[Optional[str], typer.Option('--renewable-share', metavar='F', help='Market-based: share of consumption covered by certificates. A finite number in [0, 1].')] = None,
    residual_ci: Annotated[Optional[str], typer.Option('--residual-ci', metavar='G', help='Market-based: residual-mix g/kWh for uncovered consumption (default: the grid average). A finite number in [0, 2000].')] = None,
    wue_l_per_kwh: Annotated[Optional[str], typer.Option('--wue', metavar='L', help='On-site water, litres per IT kWh (default: 0.55 L/kWh, data/water.yaml). A finite number in [0, 20].')] = None,
    ewif_l_per_kwh: Annotated[Optional[str], typer.Option('--ewif', metavar='L', help='Off-site water of generation, litres per kWh (default: 3.142 L/kWh, data/water.yaml). A finite number in [0, 100].')] = None,
    # END generated estimate options
    as_json: JsonOpt = False,
) -> None:
    """Find the minimal device count and fastest layout meeting the deadline, then its carbon.

    Any of the layout options (--devices --tp --pp --dp --cp --ep --etp --vp --zero --fsdp
    --microbatch --recompute --recompute-layers --global-batch) fixes that part of the
    layout; with all fixed, only that layout is evaluated. The table and --json say which
    defaults were used.
    """
    from .chain import run
    from .specs import RunSpec, cli_values

    options = cli_values(locals())
    if model is not None and model_file is not None:
        raise InputError("model", "give at most one of --model NAME and --model-file PATH")
    if device is not None and device_file is not None:
        raise InputError("device", "give at most one of --device NAME and --device-file PATH")
    spec = RunSpec.from_kwargs(model=Path(model_file) if model_file is not None else model,
                               device=Path(device_file) if device_file is not None else device, **options)
    d = run(spec).to_dict()
    if as_json:
        emit_json(d)
        return
    _print_summary(d)


def _print_summary(d: dict) -> None:
    m, lay, perf, c, used = d["model"], d["layout"], d["performance"], d["carbon"], d["used"]
    step = d["breakdown"]["step_fraction"]
    mem = d["breakdown"]["memory_per_device"]
    title = (f"{m['name']} ({m['params_total']:.3g} params, {m['params_active']:.3g} active) on "
             f"{lay['devices']:,} x {d['hardware']['name']}")
    from .serialize import layout_label

    rows = [
        ["tokens / train FLOPs", f"{m['tokens']:.3g} / {m['train_flops']:.3g}"],
        ["loss (scaling law)", f"{m['loss']:.4f}"],
        ["layout", _label(lay, layout_label)],
        *([["pipeline layout (Megatron-Core)", lay["pipeline_layout"]]] if lay.get("pipeline_layout") else []),
        ["global batch (sequences) / microbatches", _batch_text(lay, m, d["settings"].get("pinned") or {})],
        ["step time (s)", num(perf["step_time_s"])],
        ["duration (days) / deadline", f"{perf['duration_days']:.4g} / {perf['deadline_days']:g}"],
        ["device-hours: steady state / expected (goodput)",
         f"{perf['device_hours']:,.0f} / {perf['expected_device_hours']:,.0f} ({perf['goodput']:.3f})"],
        [f"MFU ({perf.get('mfu_convention', 'megatron')} count, vs the GEMM format's peak)", f"{perf['mfu']:.3f}"],
        ["step: compute / bubble", f"{step['compute_s']:.1%} / {step['bubble_s']:.1%}"],
        ["step: exposed TP / CP / PP / DP / EP comm",
         " / ".join(f"{step[k]:.1%}" for k in ("tp_comm_s", "cp_comm_s", "pp_comm_s", "dp_comm_s", "ep_comm_s"))],
        ["step: optimizer / overlap slowdown / host launch / CPU offload",
         " / ".join(f"{step[k]:.1%}" for k in ("optimizer_s", "overlap_slowdown_s", "host_s", "offload_s"))],
        ["memory per device (GB, 1e9 bytes): total / capacity", f"{mem['total_gb']:.1f} / {mem['capacity_gb']:.1f}"],
        ["energy (kWh, facility)", d["energy_kwh"]],
        ["W per device slot / kWh per device-hour: node, facility",
         f"{d['energy']['w_per_device_slot']:,.0f} W (busy {perf['busy_share']:.2f}) / "
         f"{d['energy']['node_kwh_per_device_hour']:.3f}, {d['energy']['facility_kwh_per_device_hour']:.3f}"],
        ["operational (tCO2e)", c["operational_tco2e"]],
        ["embodied (tCO2e)", c["embodied_tco2e"]],
        ["total (tCO2e)", c["total_tco2e"]],
        ["total range, embodied spread only (tCO2e)", f"{num(c['total_low_tco2e'])} .. {num(c['total_high_tco2e'])}"],
        *_decision_rows(d),
    ]
    if "median_layout" in d:
        med = d["median_layout"]
        rows.append(["median-latency layout: days / MFU / tCO2e",
                     f"{med['duration_days']:.1f} / {med['mfu']:.3f} / {_median_tco2e(med)}"])
    rows += _used_rows(used)
    if d["settings"]["options"].get("qat"):  # QAT runs its GEMMs in 8 bits whatever --precision says
        next(r for r in rows if r[0] == "precision")[1] += " + QAT (8-bit compute, memory and communication)"
    rows.append(["catalog cells assumed / unverified", _unverified_text(d["hardware"])])
    print_table(title, ["quantity", "value"], rows)
    typer.echo(f"scope: {c['scope']}")
    if perf["deadline_days"] < used["deadline_days"] * (1 - 1e-9):
        typer.echo(f"note: the {used['deadline_days']:g}-day deadline is capped at the hardware lifetime "
                   f"({perf['deadline_days']:g} days; lifetime policy 'refuse': a longer run is not charged, "
                   "--lifetime-policy whole_run or replace allows it)")
    if d["energy"]["lifetime_note"]:
        typer.echo(f"lifetime: {d['energy']['lifetime_note']}")
    if d["energy"]["development_device_hours"]:
        typer.echo(f"development (not in the totals): {d['energy']['development_device_hours']:,.0f} device-hours, "
                   f"{num(d['energy']['development_tco2e'])} tCO2e")
    hw = d["hardware"]
    if "fp8" in used["precision"] and hw.get("peak_tflops_fp8") == hw["peak_tflops"]:
        typer.echo(f"note: {hw['name']} runs FP8 at its BF16 rate ({hw['peak_tflops']:g} TFLOP/s): FP8 saves memory and "
                   "communication only, and its casts cost time")
    if not perf["meets_deadline"]:
        typer.echo(f"note: the pinned layout takes {perf['duration_days']:.1f} days, past the "
                   f"{perf['deadline_days']:g}-day deadline")
    elif perf["expected_duration_days"] > perf["deadline_days"] * (1 + 1e-9):  # docs/carbon.md: steady state
        typer.echo(f"note: the {perf['deadline_days']:g}-day deadline bounds steady-state training "
                   f"({perf['duration_days']:.1f} days); with "
                   f"goodput {perf['goodput']:.3f} (restarts, checkpoints) the expected wall clock is "
                   f"{perf['expected_duration_days']:.1f} days")


def _batch_text(lay: dict, m: dict, pinned: dict) -> str:
    """The layout's global batch and microbatches; the batch asked for (pinned, else the model's)
    next to it when whole microbatches per data-parallel rank rounded it down (deepseek-v3 on 1,072
    Gaudi3: 8,576 of 15,360)."""
    got = lay["global_batch_sequences"]
    asked, whose = (pinned["global_batch"], "pinned") if "global_batch" in pinned else \
        (m.get("global_batch_sequences"), "model's")
    of = f" of the {whose} {asked:,}" if asked and asked != got else ""
    return f"{got:,}{of} / {lay['microbatches']:,}"


def _unverified_text(hw: dict) -> str:
    """The assumed / unverified catalog cells; an entry without per-cell flags (the papers' tables,
    older datasheet entries, a device file without cell_flags) says so and quotes its verification
    note instead of claiming 'none' (B100: 'sram_mb and compute_units unverified')."""
    flags = hw.get("cell_flags", {})
    listed = ", ".join(f"{k} ({v})" for k, v in flags.items() if v in ("assumed", "unverified"))
    if hw.get("catalog_row"):  # a modern entry: every cell has its flag
        return listed or "none"
    note = f"{listed}; the other cells have no flag" if listed else "no per-cell flags"
    return f"{note} ({hw['verification']})" if hw.get("verification") else note


def _median_tco2e(med: dict) -> str:
    """The median-latency layout's tCO2e cell: absent with --no-median-carbon, or refused (its note)."""
    if med.get("total_tco2e") is not None:
        return num(med["total_tco2e"])
    return med.get("carbon_note") or "not charged (--no-median-carbon)"


def _decision_rows(d: dict) -> list[list[str]]:
    """Uncertainty bands, market-based next to location-based, and water (docs/decisions.md)."""
    rows = []
    if "uncertainty" in d:
        u = d["uncertainty"]
        for q, label in (("total_tco2e", "total p5 / p50 / p95 (tCO2e)"),
                         ("operational_tco2e", "  operational p5 / p50 / p95 (tCO2e)"),
                         ("embodied_tco2e", "  embodied p5 / p50 / p95 (tCO2e)"),
                         ("energy_kwh", "energy p5 / p50 / p95 (kWh, facility)")):
            b = u["bands"][q]
            rows.append([label, f"{num(b['p5'])} / {num(b['p50'])} / {num(b['p95'])}"])
        rows.append(["inputs moving the total most (p5-p95 swing)",
                     ", ".join(f"{s['input']} {s['swing_fraction']:.0%}" for s in u["sensitivity"][:3])])
        rows += [[f"{name} drawn from", m["pool"]["line"]] for name, m in u.get("inputs", {}).items() if m.get("pool")]
    a, w = d["accounting"], d["water"]
    rows.append(["operational: location / market-based (tCO2e)",
                 f"{num(a['location_tco2e'])} / {num(a['market_tco2e'])} ({a['market_method']})"])
    rows.append(["water on-site / off-site (m3)", f"{num(w['onsite_l'] / 1000)} / {num(w['offsite_l'] / 1000)}"])
    return rows


def _label(record: dict, layout_label) -> str:
    """The one-line layout of a ``layout`` record (a Layout rebuilt from its fields)."""
    from .perf.layout import Layout

    fields = {k: v for k, v in record.items() if k in Layout.model_fields}
    return layout_label(Layout(**fields))


def _used_rows(used: dict) -> list[list[str]]:
    """What the run assumed; '(default)' marks what the user left to the defaults."""
    dflt = set(used["defaults"])

    def mark(name: str) -> str:
        return " (default)" if name in dflt else ""

    return [
        ["model (from)", f"{used['model']} ({used['model_from']}), seq_len {used['seq_len']:,}, "
                         f"{used['tokens']:.3g} tokens"],
        ["device", used["device"] + mark("device")],
        ["deadline (days)", f"{used['deadline_days']:g}{mark('deadline_days')}"],
        ["grid intensity (g/kWh)", f"{used['ci_g_per_kwh']:g}{mark('ci')}: {used['ci_source']}"],
        ["PUE / lifetime (years)", f"{used['pue']:g}{mark('pue')} / {used['lifetime_years']:g}"
                                   f"{mark('lifetime_years')}"],
        ["precision", used["precision"] + mark("precision")],
    ]
