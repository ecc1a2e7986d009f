"""``carbonscaling estimate``: search the layout of a run and account its carbon."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import (CiOpt, DeviceFileOpt, JsonOpt, LifetimeOpt, ModelFileOpt, ModelOpt, Num, PueOpt, RegionOpt,
                  app, emit_json, integer, number, print_table)
from .errors import InputError



def _int_opt(name: str, help_: str):
    return Annotated[Num, typer.Option(name, metavar="N", help=help_)]


DModelOpt = _int_opt("--d-model", "Model width for --preset.")
DevicesOpt = _int_opt("--devices", "Pin the device count.")
TpOpt = _int_opt("--tp", "Pin tensor parallelism.")
PpOpt = _int_opt("--pp", "Pin pipeline parallelism.")
DpOpt = _int_opt("--dp", "Pin data parallelism.")
EpOpt = _int_opt("--ep", "Pin expert parallelism.")
ZeroOpt = _int_opt("--zero", "Pin the ZeRO stage (0-3).")
MicrobatchOpt = _int_opt("--microbatch", "Pin the microbatch size (sequences).")
InterleaveOpt = _int_opt("--interleave", "Pin pipeline interleaving (virtual stages per device).")
GlobalBatchOpt = _int_opt("--global-batch", "Pin the global batch in sequences.")


@app.command()
def estimate(
    model: ModelOpt = None,
    model_file: ModelFileOpt = None,
    preset: Annotated[Optional[str], typer.Option("--preset", metavar="NAME", help="Scaling-law preset: cs-v1, cs-v1-aggressive-batch, cs-v2.")] = None,
    d_model: DModelOpt = None,
    device: Annotated[Optional[str], typer.Option("--device", "-d", metavar="NAME", help="Catalog device (see `devices`).")] = None,
    device_file: DeviceFileOpt = None,
    years_ahead: Annotated[Num, typer.Option("--years-ahead", metavar="Y", help="Project the device Y years ahead (v1 Table 1 rates).")] = None,
    cpa_growth: Annotated[Num, typer.Option("--cpa-growth", metavar="G", help="Yearly CPA growth for projection (v2 EUV case: 0.1).")] = None,
    deadline_days: Annotated[Num, typer.Option("--deadline-days", metavar="DAYS", help="Maximum training duration (default 90).")] = None,
    devices: DevicesOpt = None,
    tp: TpOpt = None,
    pp: PpOpt = None,
    dp: DpOpt = None,
    ep: EpOpt = None,
    zero: ZeroOpt = None,
    microbatch: MicrobatchOpt = None,
    interleave: InterleaveOpt = None,
    recompute: Annotated[Optional[str], typer.Option("--recompute", metavar="none|selective|full", help="Pin activation recompute.")] = None,
    global_batch: GlobalBatchOpt = None,
    global_batch_tokens: Annotated[Num, typer.Option("--global-batch-tokens", metavar="T", help="Pin the global batch in tokens.")] = None,
    precision: Annotated[str, typer.Option("--precision", metavar="FORMAT", help="GEMM number format: bf16, fp16, fp8 (fp8-cs), fp8-delayed, fp8-blockwise, mxfp8 (fp8-mx), nvfp4, mxfp4; the device must run it.")] = "bf16",
    flash_attention: Annotated[bool, typer.Option("--flash-attention/--no-flash-attention", help="Fused attention kernels.")] = True,
    sequence_parallel: Annotated[bool, typer.Option("--sequence-parallel/--no-sequence-parallel")] = True,
    overlap_grad_reduce: Annotated[bool, typer.Option("--overlap-grad-reduce/--no-overlap-grad-reduce")] = True,
    overlap_tp_comm: Annotated[bool, typer.Option("--overlap-tp-comm", help="Hide TP collectives under compute.")] = False,
    overlap_ep_comm: Annotated[bool, typer.Option("--overlap-ep-comm", help="Hide the expert all-to-all under compute (DeepSeek DualPipe).")] = False,
    dynamic_eviction: Annotated[bool, typer.Option("--dynamic-eviction", help="Coop-style allocator (less fragmentation).")] = False,
    flexible_sharding: Annotated[bool, typer.Option("--flexible-sharding", help="LinS/hpZ-style ZeRO-3 within the node.")] = False,
    qat: Annotated[bool, typer.Option("--qat", help="Quantization-aware training: 8-bit compute, memory and communication.")] = False,
    objective: Annotated[str, typer.Option("--objective", metavar="fastest|carbon", help="Layout objective.")] = "fastest",
    ci: CiOpt = None,
    region: RegionOpt = None,
    pue: PueOpt = None,
    lifetime: LifetimeOpt = None,
    power_split: Annotated[str, typer.Option("--power-split", metavar="default|low_static")] = "default",
    embodied_mode: Annotated[str, typer.Option("--embodied-mode", metavar="paper|vendor")] = "paper",
    infrastructure: Annotated[bool, typer.Option("--infrastructure/--no-infrastructure")] = True,
    embodied: Annotated[bool, typer.Option("--embodied/--no-embodied")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Find the minimal device count and fastest layout meeting the deadline, then its carbon.

    Any of --devices --tp --pp --dp --ep --zero --microbatch --interleave --recompute
    --global-batch fixes that part of the layout; with all fixed, only that layout is evaluated.
    """
    from .chain import estimate as run_estimate

    if model is not None and model_file is not None:
        raise InputError("model", "give at most one of --model NAME and --model-file PATH")
    if device is not None and device_file is not None:
        raise InputError("device", "give at most one of --device NAME and --device-file PATH")
    ints = {k: integer(v) for k, v in dict(devices=devices, tp=tp, pp=pp, dp=dp, ep=ep, zero=zero,
                                             microbatch=microbatch, interleave=interleave,
                                             global_batch=global_batch).items()}
    dm = integer(d_model)
    est = run_estimate(
        model=Path(model_file) if model_file is not None else model,
        device=Path(device_file) if device_file is not None else (device or "H100"),
        preset=preset, d_model=dm, years_ahead=_num_default(years_ahead, 0.0),
        cpa_growth=_num_default(cpa_growth, 0.0), deadline_days=_num_default(deadline_days, 90.0),
        recompute=recompute, global_batch_tokens=number(global_batch_tokens), precision=precision,
        flash_attention=flash_attention, sequence_parallel=sequence_parallel,
        overlap_grad_reduce=overlap_grad_reduce, overlap_tp_comm=overlap_tp_comm,
        overlap_ep_comm=overlap_ep_comm, dynamic_eviction=dynamic_eviction,
        flexible_sharding=flexible_sharding, qat=qat, objective=objective, ci=ci, region=region,
        pue=number(pue), lifetime_years=number(lifetime), power_split=power_split, embodied_mode=embodied_mode,
        infrastructure=infrastructure, include_embodied=embodied, **ints)
    d = est.to_dict()
    if as_json:
        emit_json(d)
        return
    _print_summary(d)


def _num_default(text, default):
    v = number(text)
    return default if v is None else v


def _print_summary(d: dict) -> None:
    m, lay, perf, c = d["model"], d["layout"], d["performance"], d["carbon"]
    step = d["breakdown"]["step_fraction"]
    mem = d["breakdown"]["memory_per_device"]
    title = (f"{m['name']} ({m['params_total']:.3g} params, {m['params_active']:.3g} active) on "
             f"{lay['devices']:,} x {d['hardware']['name']}")
    rows = [
        ["tokens / train FLOPs", f"{m['tokens']:.3g} / {m['train_flops']:.3g}"],
        ["loss (scaling law)", f"{m['loss']:.4f}"],
        ["layout TP x PP x DP x EP", f"{lay['tp']} x {lay['pp']} x {lay['dp']} x {lay['ep']}"],
        ["ZeRO / microbatch / interleave / recompute",
         f"{lay['zero']} / {lay['microbatch']} / {lay['interleave']} / {lay['recompute']}"],
        ["global batch (sequences) / microbatches", f"{lay['global_batch_sequences']:,} / {lay['microbatches']:,}"],
        ["step time (s)", perf["step_time_s"]],
        ["duration (days)", perf["duration_days"]],
        ["device-hours", perf["device_hours"]],
        ["MFU", f"{perf['mfu']:.3f}"],
        ["step: compute / bubble", f"{step['compute_s']:.1%} / {step['bubble_s']:.1%}"],
        ["step: exposed TP / PP / DP / EP comm",
         f"{step['tp_comm_s']:.1%} / {step['pp_comm_s']:.1%} / {step['dp_comm_s']:.1%} / {step['ep_comm_s']:.1%}"],
        ["step: optimizer / overlap slowdown", f"{step['optimizer_s']:.1%} / {step['overlap_slowdown_s']:.1%}"],
        ["memory per device (GB): total / capacity", f"{mem['total_gb']:.1f} / {mem['capacity_gb']:g}"],
        ["energy (kWh, facility)", d["energy_kwh"]],
        ["operational (tCO2e)", c["operational_tco2e"]],
        ["embodied (tCO2e)", c["embodied_tco2e"]],
        ["total (tCO2e)", c["total_tco2e"]],
        ["total range (tCO2e)", f"{c['total_low_tco2e']:,.4g} .. {c['total_high_tco2e']:,.4g}"],
    ]
    if "median_layout" in d:
        med = d["median_layout"]
        rows.append(["median-latency layout: days / MFU / tCO2e",
                     f"{med['duration_days']:.1f} / {med['mfu']:.3f} / {med['total_tco2e']:,.4g}"])
    print_table(title, ["quantity", "value"], rows)
    if not perf["meets_deadline"]:
        typer.echo(f"note: the pinned layout takes {perf['duration_days']:.1f} days, past the "
                   f"{perf['deadline_days']:g}-day deadline")
