"""Pinned layout parts: which parts may be pinned and the rules a pinned value must obey.

:func:`_check_pinned` validates the pinned parts of a search request (whole numbers in range,
then the model's and Megatron-Core's rules: TP divides the heads, EP the experts, 2 CP the
sequence, a splittable pipeline, FSDP as ZeRO-3, a pinned pipeline layout); :func:`check_offload`
and :func:`check_ep_overlap` are Megatron-Core's ``TransformerConfig`` assertions for activation
CPU offloading and the EP all-to-all overlap. Every rule raises one :class:`InputError` naming the
part. :mod:`carbonscaling.search` runs them before it searches and re-exports every name here.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError
from .hardware import System
from .perf.layout import RECOMPUTE_MODES, TrainingOptions
from .perf.pipeline import layout_stage_split, parse_pipeline_layout, stage_plan, stage_split
from .perf.pipeline_cost import stage_cost_weights
from .scaling import ModelSpec

PINNABLE = ("devices", "tp", "pp", "dp", "cp", "ep", "etp", "zero", "fsdp", "microbatch", "vp", "interleave",
            "recompute", "recompute_layers", "global_batch")


def _whole(key, val, lo, hi) -> int:
    if isinstance(val, bool) or not isinstance(val, (int, np.integer)) and not (
            isinstance(val, float) and math.isfinite(val) and val.is_integer()):
        raise InputError(key, f"must be a whole number, got {val!r}")
    val = int(val)
    if not lo <= val <= hi:
        raise InputError(key, f"must be in [{lo}, {hi}], got {val}")
    return val


def _check_pinned(pinned: dict, model: ModelSpec, o: TrainingOptions | None = None) -> dict:
    """Pinned layout parts, validated against the model and Megatron-Core's rules."""
    o = o or TrainingOptions()
    out = {}
    for key, val in pinned.items():
        if val is None:
            continue
        if key not in PINNABLE:
            raise InputError(key, f"cannot be pinned (pinnable: {', '.join(PINNABLE)})")
        if key == "recompute":
            if val not in RECOMPUTE_MODES:
                raise InputError("recompute", f"must be one of {', '.join(RECOMPUTE_MODES)}, got {val!r}")
            out[key] = val
            continue
        lo = 0 if key in ("zero", "fsdp", "recompute_layers") else 1
        hi = 4 if key == "zero" else 10**9
        key = "vp" if key == "interleave" else key
        out[key] = _whole(key, val, lo, hi)
    _check_model_rules(out, model, o)
    return out


def check_offload(pins: dict, model: ModelSpec, system: System, o: TrainingOptions) -> None:
    """Megatron-Core's rules for activation CPU offloading (``TransformerConfig.__post_init__``):
    ``0 <= cpu_offloading_num_layers < num_layers``, no pipeline parallelism, no activation recompute, no
    per-layer CUDA graphs ("CUDA graphs not supported with CPU offloading" unless ``full_iteration``); and a
    host link to offload over (data/host_link.yaml)."""
    n = o.cpu_offload_layers
    if not n:
        return
    if n >= model.n_layers:
        raise InputError("cpu_offload_layers", f"must be < n_layers ({model.n_layers}), got {n}")
    if o.legacy:
        raise InputError("cpu_offload_layers", "CPU offloading needs ep_convention='megatron'")
    if system.device.host_link_gb_s is None:
        from ._data import load_yaml

        have = ", ".join(load_yaml("host_link.yaml")["devices"])
        raise InputError("cpu_offload_layers", f"{system.device.name} has no host link in the catalog "
                                               f"(data/host_link.yaml); CPU offloading needs one "
                                               f"(devices with one: {have})")
    if pins.get("pp", 1) != 1:
        raise InputError("pp", f"CPU offloading (cpu_offload_layers) needs pp 1 (Megatron-Core), got {pins['pp']}")
    if o.cuda_graph_scope and o.cuda_graph_scope != ("full_iteration",):
        raise InputError("cuda_graph_scope", "CPU offloading (cpu_offload_layers) runs eager or with full_iteration "
                                             f"graphs only (Megatron-Core), got {','.join(o.cuda_graph_scope)}")
    if pins.get("recompute", "none") != "none":
        raise InputError("recompute", "CPU offloading (cpu_offload_layers) needs recompute='none' (Megatron-Core), "
                                      f"got {pins['recompute']!r}")


def check_ep_overlap(pins: dict, model: ModelSpec, o: TrainingOptions) -> None:
    """Megatron-Core's rule for the EP all-to-all overlap (``overlap_moe_expert_parallel_comm``,
    ``TransformerConfig.__post_init__``): with pipeline parallelism the schedule must be interleaved
    ("virtual_pipeline_model_parallel_size must be specified when pipeline_model_parallel_size > 1"), and
    expert parallelism is needed; the search leaves such layouts out (search_space.inner_combos; its EP
    options are >= 2 for MoE models), a pinned one is refused."""
    if not (o.overlap_ep_comm and model.is_moe and not o.legacy):
        return
    if pins.get("ep") == 1:  # "overlap_moe_expert_parallel_comm is only supported with expert model parallelism"
        raise InputError("ep", "the EP all-to-all overlap (overlap_ep_comm) needs ep > 1 (Megatron-Core), got 1")
    if pins.get("pp", 1) > 1 and pins.get("vp") == 1:
        raise InputError("vp", f"the EP all-to-all overlap (overlap_ep_comm) with pp {pins['pp']} needs vp > 1 "
                               "(Megatron-Core), got 1")


def _check_model_rules(p: dict, model: ModelSpec, o: TrainingOptions) -> None:
    if "tp" in p and model.n_heads % p["tp"]:
        raise InputError("tp", f"must divide n_heads ({model.n_heads}), got {p['tp']}")
    if "pp" in p and p["pp"] > model.n_layers:
        raise InputError("pp", f"must be <= n_layers ({model.n_layers}), got {p['pp']}")
    if "ep" in p and (p["ep"] > model.n_experts or model.n_experts % p["ep"]):
        raise InputError("ep", f"must divide n_experts ({model.n_experts}), got {p['ep']}")
    if p.get("cp", 1) > 1:
        if o.legacy:
            raise InputError("cp", "context parallelism needs ep_convention='megatron'")
        if model.seq_len % (2 * p["cp"]):
            raise InputError("cp", f"2 x cp must divide seq_len ({model.seq_len}) for causal load balancing, "
                                   f"got cp={p['cp']}")
    # Inert on a dense model: never echo it as if it ran. Answers show ETP = TP (Megatron-Core's default
    # expert_tensor_parallel_size), and every answer must be accepted when pinned back.
    if p.get("etp", 1) not in (1, p.get("tp")) and not model.is_moe:
        raise InputError("etp", f"ETP applies to MoE expert layers and {model.name} is dense: leave it unset "
                                f"(it follows TP), got {p['etp']}")
    if "etp" in p and o.legacy and p["etp"] != p.get("tp", p["etp"]):
        raise InputError("etp", "expert tensor parallelism other than TP needs ep_convention='megatron'")
    if p.get("recompute_layers") and p.setdefault("recompute", "full") != "full":
        raise InputError("recompute_layers", f"needs recompute='full', got recompute={p['recompute']!r}")
    if p.get("fsdp"):
        if p.setdefault("zero", 3) != 3:
            raise InputError("fsdp", f"FSDP shards like ZeRO-3; got zero={p['zero']}")
        if "dp" in p and p["dp"] % p["fsdp"]:
            raise InputError("fsdp", f"must divide dp ({p['dp']}), got {p['fsdp']}")
    if o.pipeline_layout is not None:
        if o.legacy:  # v1's split rule has no layouts; never drop a pinned one silently
            raise InputError("pipeline_layout", "a pinned pipeline layout needs ep_convention='megatron'")
        _check_layout(p, model, o.pipeline_layout)
    elif p.get("vp", 1) > 1:
        _check_vp(p, model, o)
    _check_recompute_layers(p, model, o)


def _check_vp(p: dict, model: ModelSpec, o: TrainingOptions) -> None:
    """A pinned VP > 1: PP > 1 and a split Megatron (or v1) can make."""
    pp = p.get("pp")
    if pp == 1:
        raise InputError("vp", "interleaving needs pp > 1")
    if pp is None:
        if p["vp"] > model.n_layers // 2:
            raise InputError("vp", f"must be <= n_layers / 2 ({model.n_layers // 2}), got {p['vp']}")
    elif o.legacy and p["vp"] > model.n_layers // pp:
        raise InputError("vp", f"must be <= layers per stage ({model.n_layers // pp}), got {p['vp']}")
    elif not o.legacy and stage_split(model.n_layers, pp, p["vp"]) is None:
        raise InputError("vp", f"Megatron cannot split {model.n_layers} layers over pp {pp} x vp {p['vp']} "
                               "(even, embedding/loss-accounted, or uneven first/last stages)")


def largest_chunk(model: ModelSpec, pp: int, vp: int, o: TrainingOptions) -> int | None:
    """Layers of the largest model chunk (one virtual stage) at ``pp x vp``, split as the step model
    splits them (:func:`.perf.pipeline.stage_plan`); None where that split does not exist."""
    n, _ = stage_plan(model.n_layers, np.array([pp]), np.array([vp]), legacy=o.legacy, layout=o.pipeline_layout,
                      mtp_layers=model.mtp_layers, leading_dense=0 if o.legacy else model.first_dense_layers,
                      cost_weights=stage_cost_weights(model) if o.pipeline_balance == "cost" else None)
    most = max(int(k[0]) for k in n)
    return -(-most // vp) if most > 0 else None


def _check_recompute_layers(p: dict, model: ModelSpec, o: TrainingOptions) -> None:
    """A pinned ``recompute_layers`` (Megatron-Core's ``recompute_num_layers``, per model chunk) is at
    most the layers of the largest chunk of the pinned PP x VP: ``TransformerConfig.__post_init__`` says
    "recompute_num_layers must be between 1 and num_layers_per_pipeline_rank" (0 here = no recompute).
    Without PP pinned any count up to the model's layers is some layout's whole stage; the memory model
    records a count above a searched layout's chunk as that chunk (perf.memory)."""
    rl = p.get("recompute_layers")
    if not rl or "pp" not in p:
        if rl and rl > model.n_layers:
            raise InputError("recompute_layers", f"must be in [0, {model.n_layers}] (the model's layers), got {rl}")
        return
    vp = p.get("vp", 1)  # unpinned: the search's VP >= 1, whose chunks are at most the VP-1 stage's layers
    hi = largest_chunk(model, p["pp"], vp, o)
    if hi is not None and rl > hi:
        raise InputError("recompute_layers", f"must be in [0, {hi}] (layers per model chunk at pp {p['pp']} x "
                                             f"vp {vp}), got {rl}")


def _check_layout(p: dict, model: ModelSpec, layout: str) -> None:
    """A pinned ``pipeline_model_parallel_layout``: PP pinned, VP its chunks / PP, and the model's layers in it."""
    if "pp" not in p:
        raise InputError("pipeline_layout", "needs pp pinned (vp follows from the layout's chunks)")
    chunks = len(parse_pipeline_layout(layout))
    if chunks % p["pp"] or p.setdefault("vp", chunks // p["pp"]) * p["pp"] != chunks:
        raise InputError("pipeline_layout", f"has {chunks} chunks, not pp x vp = {p['pp']} x {p.get('vp', 1)}")
    try:
        layout_stage_split(layout, p["pp"], p["vp"], model.n_layers, model.mtp_layers, model.first_dense_layers)
    except ValueError as err:
        raise InputError("pipeline_layout", str(err)) from None
