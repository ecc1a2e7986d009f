"""Step-time validation on measured Megatron-Bridge throughput (``data/nemo_performance.csv``).

Every pre-training row whose architecture is known (``data/nemo_model_architectures.csv``,
both copied from ``shared/data`` with their sources) is described as it was run and
predicted with the search, whose only freedom is what the table does not state:

* pinned from the row: devices, TP, PP, CP, VP, EP, microbatch, global batch, sequence
  length, precision, FSDP group (``fsdp > 0``); ``fsdp = 0`` (DDP) is read as Megatron's
  distributed optimizer (ZeRO-1), the Megatron-Bridge recipes' default -- an assumption;
* left to the search (the report lists them per row): ZeRO stage where the table has no
  FSDP column, activation recompute (none / full on the fewest layers that fit),
  expert tensor parallelism (ETP = TP or 1), and whether DeepSeek-V3's MTP module ran
  when the label does not say (the catalog's 1 is used);
* fixed software options (not in the table, from the Megatron-Bridge performance
  recipes): FlashAttention, sequence parallelism with TP, overlapped gradient reduction, gradients
  kept and reduced in BF16 (every model's ``set_*_common_configs`` sets ``grad_reduce_in_fp32=False``),
  TP communication overlapped (userbuffers) when TP > 1 except in the NVFP4 recipes, which turn it
  off (:data:`NO_TP_OVERLAP_PRECISIONS`), capacity factor 1, and the routing the table's
  footnote states: "force-balanced" dropless routing is Megatron-Core's
  ``moe_router_force_load_balancing``, top-k over per-rank random logits (``TopKRouter.forward``,
  ``apply_random_logits``), so expert loads are random and the busiest EP rank waits
  (``force_balanced_routing=False``); the 25.09 ``tokendrop`` rows pad every expert to its
  capacity (``moe_pad_expert_input_to_capacity``): exactly even (``force_balanced_routing=True``); MoE expert GEMMs as Transformer Engine's
  per-expert loop and no EP communication overlap, except on the rows that ran an MXFP8
  recipe with the fused grouped MLP and overlapped all-to-all (:data:`FUSED_MOE_RECIPES`);
  the other recipe options a row's release and layout state (module recompute, the Qwen3
  scripts' recompute off, token dispatcher, all-to-all overlap, ETP) come from the tables of
  :mod:`carbonscaling.validation.recipes`, built from ``data/megatron_bridge_recipes.yaml`` (each
  entry with the config files and commits it was read from);
* job placement on NVL72 racks: the launcher's default Slurm segment (:func:`segment_domain`),
  so jobs of 128+ GPUs see 64-GPU NVLink domains, not the rack's 72.

Rows that cannot be expressed are listed with the reason (a device or number format not
in the catalog, a hybrid Mamba architecture, a layout that does not fit), never dropped.
Measured step times are the table's ``gbs x seq_len / (tokens/s/GPU x GPUs)``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, NamedTuple

from .._data import load_csv
from .throughput_report import _floor_line, figure, markdown  # noqa: F401  (re-exported: the report moved)
from .recipes import (  # noqa: F401  (re-exported: the recipe tables live in recipes.py)
    CUDA_GRAPH_RECIPES, DISPATCHER_RECIPES, FUSED_MOE_RECIPES, MOE_COMM_RECIPES, NO_GRAD_OVERLAP_RECIPES,
    NO_RECOMPUTE_RECIPES, NO_TP_OVERLAP_PRECISIONS, NOT_MODELLED_RECIPES, PP_LAYOUT_RECIPES, RECIPE_ETP,
    RECOMPUTE_RECIPES, TP_COMM_RECIPES, _container, _cuda_graph_recipe, _default_dispatcher, _fp8_attention_recipe, _fused_moe_recipe,
    _moe_comm_recipe, _no_grad_overlap_recipe, _no_recompute_recipe, _not_modelled_recipe, _num, _offload_recipe,
    _pp_layout_recipe, _recompute_recipe, _tp_overlap_recipe, OFFLOAD_RECIPES, _kernel_regression_recipe,
)

#: Megatron-Bridge system names -> catalog devices (DGX/HGX nodes of 8; GB*: NVL72 racks).
SYSTEMS = {"DGX-H100": "H100-SXM", "DGX-B200": "B200", "DGX-GB200": "GB200", "DGX-B300": "B300",
           "DGX-GB300": "GB300"}
#: Table precision labels -> TrainingOptions.precision (FP8 on H100 is per-tensor current scaling).
PRECISIONS = {"BF16": "bf16", "FP8": "fp8", "FP8-CS": "fp8", "FP8-MX": "mxfp8", "MXFP8": "mxfp8",
              "NVFP4": "nvfp4", "FP8-blockwise": "fp8-blockwise"}
#: Table model names -> catalog keys whose numbers are model_architectures.csv's.
MODELS = {"LLAMA3_8B": "llama3-8b", "LLAMA3_70B": "llama3-70b", "LLAMA3.1_405B": "llama3.1-405b",
          "DeepSeekV3": "deepseek-v3", "Kimi_K2": "kimi-k2", "Qwen3_30B_a3B": "qwen3-30b-a3b",
          "Qwen3_235B_a22B": "qwen3-235b-a22b", "GPT OSS 120B": "gpt-oss-120b",
          "Nemotron_3_Nano": "nemotron-3-nano"}
#: Rows whose model is a catalog model with a change the architecture table states.
MODEL_CHANGES = {"Nemotron_3_5_Lightning": ("nemotron-3-nano", {"mtp_layers": 2})}  # Nano + 2 MTP layers


def segment_domain(gpus: int, system) -> int:
    """Devices per NVLink domain a job of ``gpus`` sees under the launcher's default Slurm segment.

    Megatron-Bridge's performance launcher (``scripts/performance/utils/executors.py``
    @023219e, ``slurm_executor``) asks Slurm for ``--segment`` blocks on 4-GPU-node (NVL72)
    systems: all nodes when the job has at most 18 (one rack's trays), otherwise the largest
    divisor of the node count up to 18. A 128- or 256-GPU job thus runs as 16-tray segments:
    64 GPUs per NVLink domain, not the rack's 72. Other systems keep their catalog domain.

    Parameters
    ----------
    gpus : int
        Devices of the job.
    system : System
        The catalog system (``devices_per_node``, ``scale_up_domain``).

    Returns
    -------
    int
        Devices per scale-up domain for this job.
    """
    per_node = system.devices_per_node
    trays = system.scale_up_domain // per_node  # 18 compute trays per NVL72 rack
    if system.scale_up_domain <= per_node or trays < 2:
        return system.scale_up_domain
    nodes = -(-gpus // per_node)
    seg = nodes if nodes <= trays else max(c for c in range(trays, 0, -1) if nodes % c == 0)
    return seg * per_node


class Unexpressible(Exception):
    """A row the package cannot describe (the message says why)."""


def known_architecture(name: str) -> bool:
    """A complete row of model_architectures.csv (dense, MoE, MLA or hybrid)."""
    arch = {r["model"]: r for r in load_csv("nemo_model_architectures.csv")}.get(name)
    return bool(arch and arch["d_model"] and arch["n_layers"] and arch["n_heads"] and arch["vocab"])


def pretrain_rows() -> list[dict]:
    """Pre-training rows with a measured step time and a known architecture (the validation set)."""
    return [r for r in load_csv("nemo_performance.csv")
            if r["task"] == "pretrain" and r["step_time_s"] and known_architecture(r["model"])]


def _row_model(row: dict):
    """``(model, assumptions)`` of one row: the catalog model at the row's sequence and batch, with
    its MTP layers as the row's label says and the loss the performance script runs."""
    from ..scaling import named_model

    key, change = MODEL_CHANGES.get(row["model"], (MODELS.get(row["model"]), {}))
    model = named_model(key).model_copy(update=change)
    seq, gbs = int(row["seq_len"]), int(row["gbs"])
    # The performance script's common overrides run Transformer Engine's cross entropy for every model
    # (Megatron-Bridge scripts/performance/utils/overrides.py _set_common_perf_overrides at 9d70874 and
    # 00538e2: cross_entropy_fusion_impl = "te"), whatever the library recipe sets (gpt-oss: native).
    update: dict[str, Any] = {"seq_len": seq, "global_batch_tokens": float(gbs * seq),
                              "cross_entropy_fusion_impl": "te"}
    assumed = []
    if model.mtp_layers:
        label = row["notes"]
        if "w/o MTP" in label:
            update["mtp_layers"] = 0
        elif "w/ MTP" not in label:
            assumed.append(f"MTP layers {model.mtp_layers} (label silent)")
    model = model.model_copy(update=update)
    return model, assumed


def describe_row(row: dict):
    """``(model, system, options, pins, assumptions)`` of one row as it was run.

    The model at the row's sequence and batch (:func:`_row_model`), the system with the job's
    NVLink domain (:func:`_row_system`), the training options the row's recipe sets
    (:func:`_recipe_facts`, :func:`_row_options`), the layout the row states (:func:`_row_pins`),
    and every assumption in the order the report lists them (``left to search``).
    """
    model, assumed = _row_model(row)
    system = _row_system(row)
    prec = PRECISIONS.get(row["precision"], row["precision"])
    try:
        facts = _recipe_facts(row, model)
        options = _row_options(row, facts, prec)
    except ValueError:
        raise Unexpressible(f"number format {row['precision']} ({prec}) not supported") from None
    if prec not in ("bf16", "fp16") and system.device.peak_flops(prec) <= 0:
        raise Unexpressible(f"no {prec} peak for {system.device.name}")
    pins, pin_notes = _row_pins(row, model, facts)
    return model, system, options, pins, assumed + pin_notes + _recipe_notes(row, facts, options, pins["tp"])


def _row_system(row: dict):
    """The catalog system of a row, with the NVLink domain its job sees (:func:`segment_domain`)."""
    from ..errors import CarbonScalingError
    from ..hardware import load_system

    try:
        system = load_system(SYSTEMS[row["system"]])
    except CarbonScalingError:
        raise Unexpressible(f"device {SYSTEMS[row['system']]} ({row['system']}) not in the catalog") from None
    domain = segment_domain(int(row["gpus"]), system)
    if domain != system.scale_up_domain:
        system = system.model_copy(update={"scale_up_domain": domain})
    return system


class _RecipeFacts(NamedTuple):
    """What a row's recipe sets beyond the table (:mod:`.recipes`); ``None`` / falsy: not set."""

    fused: bool                 # MXFP8 fused grouped MLP
    ep_overlap: bool            # EP all-to-all overlapped (fused recipe, recompute recipe or listed)
    recompute: tuple | None     # (selective modules, EP overlap with it)
    modules: tuple              # recompute_modules
    dispatcher: str | None      # token dispatcher (MoE)
    listed_overlap: bool        # all-to-all overlap listed for the row's release
    graphs: tuple | None        # CUDA graph scope
    offload: int                # layers whose activations go to CPU memory
    pp_layout: str | None       # Megatron-Core pipeline layout
    fp8_attention: bool
    regression: tuple | None    # (fused_mlp_dgrad_slowdown, note) of a release with a slow kernel


def _recipe_facts(row: dict, model) -> _RecipeFacts:
    """The recipe options of a row's release and layout (tables of :mod:`.recipes`)."""
    fused, ep_overlap = _fused_moe_recipe(row)
    recompute = _recompute_recipe(row)
    dispatcher, listed_overlap = _moe_comm_recipe(row)
    return _RecipeFacts(
        fused=fused, ep_overlap=ep_overlap or bool(recompute and recompute[1]) or listed_overlap,
        recompute=recompute, modules=recompute[0] if recompute else ("core_attn",),
        dispatcher=dispatcher or (_default_dispatcher(row) if model.is_moe else None),
        listed_overlap=listed_overlap, graphs=_cuda_graph_recipe(row), offload=_offload_recipe(row),
        pp_layout=_pp_layout_recipe(row, model.mtp_layers), fp8_attention=_fp8_attention_recipe(row),
        regression=_kernel_regression_recipe(row))


def _row_options(row: dict, f: _RecipeFacts, prec: str):
    """TrainingOptions of a row: its precision and its recipe's options (``ValueError``: a number
    format the package does not know)."""
    from ..perf.layout import TrainingOptions

    # Dropless rows route on random logits (Megatron's force_load_balancing: random loads);
    # token-drop rows pad each expert to capacity (even). The performance
    # recipes overlap TP communication with userbuffers whenever TP > 1, except NVFP4's
    # (Megatron-Bridge scripts/performance: CommOverlapConfig; recipes.NO_TP_OVERLAP_PRECISIONS).
    extra: dict[str, Any] = {} if f.graphs is None else {"cuda_graph_scope": f.graphs}
    if f.offload:
        extra["cpu_offload_layers"] = f.offload
    if f.pp_layout:
        extra["pipeline_layout"] = f.pp_layout
    if f.fp8_attention:
        extra["fp8_attention"] = True
    if f.regression:
        extra["fused_mlp_dgrad_slowdown"] = f.regression[0]
    return TrainingOptions(precision=prec, force_balanced_routing="tokendrop" in row["notes"],
                           overlap_tp_comm=_tp_overlap_recipe(row),
                           grad_reduce_in_fp32=False, overlap_grad_reduce=not _no_grad_overlap_recipe(row),
                           moe_grouped_gemm="fused" if f.fused else "loop", overlap_ep_comm=f.ep_overlap,
                           recompute_modules=f.modules, moe_dispatcher=f.dispatcher or "flex",
                           pipeline_balance="layers", **extra)  # as run: the recipes' splits


def _row_pins(row: dict, model, f: _RecipeFacts) -> tuple[dict, list[str]]:
    """``(pins, assumptions)``: the layout the row states, the ZeRO stage, ETP and recompute its
    recipe sets, and what is left to the search (ZeRO stage, ETP, recompute) when it sets none."""
    pins: dict[str, Any] = {"devices": int(row["gpus"]), "tp": int(row["tp"]), "pp": int(row["pp"]),
                            "cp": int(_num(row["cp"]) or 1), "vp": int(_num(row["vp"]) or 1),
                            "ep": int(_num(row["ep"]) or 1), "microbatch": int(row["mbs"]),
                            "global_batch": int(row["gbs"])}
    assumed = []
    fsdp = _num(row["fsdp"])
    if fsdp:
        pins["fsdp"] = int(fsdp)
    elif fsdp == 0:
        pins["zero"] = 1
        assumed.append("DDP = distributed optimizer (ZeRO-1)")
    else:
        assumed.append("ZeRO stage")
    if f.fused:
        assumed.append("recipe: fused grouped MLP" + (", EP all-to-all overlapped" if f.ep_overlap else ""))
    if model.is_moe and pins["tp"] > 1:
        first, etp = RECIPE_ETP.get(row["model"], (None, None))
        if etp and _container(row)[:2] >= first:
            pins["etp"] = etp
            assumed.append(f"recipe: ETP {etp}")
        else:
            assumed.append("ETP")
    if f.offload:  # Megatron-Core runs CPU offloading without recompute
        pins["recompute"] = "none"
        assumed.append(f"recipe: CPU offloading of {f.offload} layers' activations, no recompute")
    elif f.recompute:
        pins["recompute"] = "selective"
        assumed.append("recipe: selective recompute of " + " + ".join(f.recompute[0])
                       + (", EP all-to-all overlapped" if f.recompute[1] and not f.fused else ""))
    elif _no_recompute_recipe(row):
        pins["recompute"] = "none"
        assumed.append("recipe: no recompute")
    else:
        assumed.append("recompute")
    return pins, assumed


def _recipe_notes(row: dict, f: _RecipeFacts, options, tp: int) -> list[str]:
    """The recipe's other options, as the report lists them (and what it sets that is not modelled)."""
    notes = []
    if f.dispatcher:
        notes.append(f"recipe: {f.dispatcher} dispatcher")
    if f.pp_layout:
        notes.append(f"recipe: pipeline layout {f.pp_layout}")
    if f.fp8_attention:
        notes.append("recipe: FP8 attention (fp8_dot_product_attention)")
    if f.listed_overlap and not f.fused:
        notes.append("recipe: EP all-to-all overlapped")
    if f.graphs is not None and not (f.fused and f.graphs == ("full_iteration",)):
        notes.append("recipe: " + ("no CUDA graphs" if not f.graphs else "CUDA graphs " + "+".join(f.graphs)))
    if _no_grad_overlap_recipe(row):
        notes.append("recipe: gradient reduction not overlapped")
    if tp > 1 and not options.overlap_tp_comm:
        notes.append("recipe: TP communication not overlapped")
    if f.regression:
        notes.append(f"release: {f.regression[1]} (fused_mlp_dgrad_slowdown {f.regression[0]:.2f})")
    not_modelled = _not_modelled_recipe(row)
    if not_modelled:
        notes.append(f"recipe, not modelled: {not_modelled}")
    return notes


def predict_row(row: dict, consts=None, description: tuple | None = None) -> dict:
    """Predicted step time of one row (or ``Unexpressible``).

    ``description``: the row's :func:`describe_row`, when the caller has it already (it is not
    described twice); ``None``: described here.
    """
    from ..errors import InfeasibleError, InputError
    from ..search import search

    model, system, options, pins, assumed = describe_row(row) if description is None else description
    try:
        try:
            res = search(model, system, deadline_days=36500, options=options, pinned=pins, consts=consts)
        except InfeasibleError:
            if "recompute" not in pins:
                raise
            if options.cpu_offload_layers:
                return _offload_unfit(row, model, system, options, pins, assumed, consts)
            # Our memory model does not fit the recipe's recompute (selective or none): say so, and let
            # the search pick the recompute (none / full on the fewest layers) as for rows without a recipe.
            kind = pins["recompute"]
            pins = {k: v for k, v in pins.items() if k != "recompute"}
            options = options.model_copy(update={"recompute_modules": ("core_attn",)})
            assumed = [a for a in assumed if not a.startswith(("recipe: selective", "recipe: no recompute"))] + [
                f"recompute (the recipe's {'selective recompute' if kind == 'selective' else 'no recompute'} "
                "does not fit our memory model)"]
            res = search(model, system, deadline_days=36500, options=options, pinned=pins, consts=consts)
    except (InfeasibleError, InputError) as err:
        raise Unexpressible(f"{type(err).__name__}: {err}") from None
    return _row_result(row, model, system, res, assumed)


def _offload_unfit(row, model, system, options, pins, assumed, consts) -> dict:
    """A row whose recipe's CPU offloading does not fit our memory model: say so, and let the search pick
    the recompute (none / full on the fewest layers) without offloading."""
    from ..errors import InfeasibleError, InputError
    from ..search import search

    n = options.cpu_offload_layers
    options = options.model_copy(update={"cpu_offload_layers": 0})
    pins = {k: v for k, v in pins.items() if k != "recompute"}
    assumed = [a for a in assumed if not a.startswith("recipe: CPU offloading")] + [
        f"recompute (the recipe's CPU offloading of {n} layers does not fit our memory model)"]
    try:
        res = search(model, system, deadline_days=36500, options=options, pinned=pins, consts=consts)
    except (InfeasibleError, InputError) as err:
        raise Unexpressible(f"{type(err).__name__}: {err}") from None
    return _row_result(row, model, system, res, assumed)


def _row_result(row, model, system, res, assumed) -> dict:
    measured = float(row["step_time_s"])
    pred = float(res.step.step_time_s)
    return {"model": row["model"], "system": row["system"], "container": row["container"],
            "precision": row["precision"], "gpus": int(row["gpus"]), "gbs": int(row["gbs"]),
            "seq_len": int(row["seq_len"]), "dense": not model.is_moe, "layout": res.layout.describe(),
            "measured_step_s": measured, "predicted_step_s": pred, "error": pred / measured - 1.0,
            "left_to_search": ", ".join(assumed),
            "mem_gb": float(res.step.mem_total_gb), "hbm_gb": system.device.hbm_gb}


def _mape(rows: list[dict]) -> dict:
    errs = [abs(r["error"]) for r in rows]
    return {"n": len(errs), "mape": sum(errs) / len(errs) if errs else None,
            "mean_signed": sum(r["error"] for r in rows) / len(rows) if rows else None}


def step_time_section(consts=None) -> dict:
    """The step-time validation: per-row errors, MAPE groupings and the unexpressible rows."""
    from .noise_floor import described_key, noise_floor

    rows, failed, expressed, described = [], [], [], []
    for row in pretrain_rows():
        try:
            desc = describe_row(row)  # once per row: the prediction and the described noise floor share it
            rows.append(predict_row(row, consts, desc))
            expressed.append(row)
            described.append(described_key(row, desc))
        except Unexpressible as why:
            failed.append({"model": row["model"], "system": row["system"], "container": row["container"],
                           "precision": row["precision"], "gpus": int(row["gpus"]), "reason": str(why)})
    groups: dict[str, dict] = {}
    for key in ("system", "precision", "model"):
        by = defaultdict(list)
        for r in rows:
            by[r[key]].append(r)
        groups[key] = {k: _mape(v) for k, v in sorted(by.items())}
    h100 = [r for r in rows if r["system"] == "DGX-H100"]
    total = len(rows) + len(failed)
    return {
        "rows": rows, "unexpressible": failed, "by": groups,
        "summary": {"rows": total, "expressible": len(rows),
                    "expressible_share": len(rows) / total if total else math.nan,
                    "all": _mape(rows), "dense_h100": _mape([r for r in h100 if r["dense"]]),
                    "moe_h100": _mape([r for r in h100 if not r["dense"]]),
                    # spread between releases of rows described alike (validation/noise_floor.py)
                    "noise_floor": {"container_blind": noise_floor(expressed)["summary"],
                                    "as_described": noise_floor(expressed, keys=described)["summary"]}},
    }


def __getattr__(name: str):
    """The step-time fit (``fit_constant``, ``hold_out``, ``_row_errors``) moved to :mod:`.calibration`
    in stop 17; old imports from here keep working."""
    if name in ("fit_constant", "hold_out", "_row_errors"):
        from . import calibration

        return getattr(calibration, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
