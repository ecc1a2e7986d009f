"""Megatron-Bridge performance-recipe options of the validation rows (``data/nemo_performance.csv``).

A row is described with the options of the recipe it ran: the workload config of its release
(``scripts/performance/configs/<model>/<model>_workload_base_configs.py`` and the model's
``*_llm_pretrain.py``), taken only from the first container that has the config *and* only
where the row's TP/PP/VP/EP/microbatch is the config's. The facts, each with the files and
commits that state it and a verification flag, are ``data/megatron_bridge_recipes.yaml``; this
module checks that file once and builds the lookup tables below from it. A row no entry matches
keeps the defaults of :func:`throughput.describe_row` and its unstated choices are left to the search.

Attention of the gpt-oss rows (learnable sinks, ``softmax_type="learnable"``) has no entry: every row
keeps the fused default (``flash_attention=True``). Megatron-Core's TE attention needs Transformer Engine
>= 2.8 for a non-vanilla softmax, and Megatron-Bridge's ``GPTOSSProvider.provide`` (gpt_oss_provider.py
at 12bc34a / 355cef4) falls back to Megatron-Core's unfused ``local`` attention only below TE 2.8; TE
then selects cuDNN fused attention for sinks from cuDNN 9.13.1 (``get_fused_attn_backend``: "9.13.1+:
vanilla, off-by-one, learnable"; FlashAttention is disabled for them). docs/releases/software-versions.md
(at 2075a5b / c4a4b56) lists TE 2.7.0 / cuDNN 9.11.0.98 for 25.09 (no gpt-oss row), TE 2.9 / cuDNN
9.13.1.26 for 25.11, TE 2.12 / cuDNN 9.18.0.50 for 26.02, TE 2.14 / cuDNN 9.20.0.48 for 26.04: fused.
26.02.01, 26.04.01, 26.06, 26.06.01 and 26.08 are not listed in any stored version (not established).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .._data import load_yaml
from ..errors import InputError

DATA_FILE = "megatron_bridge_recipes.yaml"
_LAYOUT_KEYS = ("tp", "pp", "vp", "ep", "microbatch")
_ENTRY_KEYS = {"fact", "model", "system", "precisions", "layout", "first_container", "last_container", "containers",
               "sets", "note", "source", "verified"}


def _is_bool(v) -> bool:
    return isinstance(v, bool)


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _is_names(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is(value):
    return lambda v: v is value


#: Megatron-Core ``moe_token_dispatcher_type`` values a recipe may name.
_DISPATCHER = (lambda v: v in ("alltoall", "allgather", "flex"), "alltoall, allgather or flex")

#: Per fact: ``keyed`` -- True: model, system and layout; False: the model only; None: neither (precisions
#: only); ``ends``: may have a last_container; ``exact``: names its releases, patch included, in ``containers``
#: (no first/last container); ``note``: must say what the row reports; and the options it
#: must (``sets``) or may (``optional``) set -> (check, allowed values in words).
_FACTS: dict[str, dict[str, Any]] = {
    "fused_moe": {"keyed": True, "sets": {"cutedsl_fused_grouped_mlp": (_is(True), "true"),
                                          "moe_a2a_overlap": (_is_bool, "true or false")},
                  "optional": {"fp8_dot_product_attention": (_is_bool, "true or false")}},
    "recompute": {"keyed": True, "sets": {"recompute_modules": (lambda v: _is_names(v) and v, "a list of module names"),
                                          "moe_a2a_overlap": (_is_bool, "true or false")}},
    "moe_comm": {"keyed": True, "sets": {"moe_a2a_overlap": (_is_bool, "true or false")},
                 "optional": {"moe_token_dispatcher_type": _DISPATCHER}},
    "no_recompute": {"keyed": False, "sets": {"recompute_granularity": (_is(None), "null")}},
    "etp": {"keyed": False, "sets": {"expert_tensor_parallel_size": (_is_count, "a positive integer")}},
    "no_grad_overlap": {"keyed": True, "ends": True, "sets": {"overlap_grad_reduce": (_is(False), "false")}},
    "offload": {"keyed": True, "sets": {"cpu_offloading_num_layers": (_is_count, "a positive integer")}},
    "not_modelled": {"keyed": True, "note": True, "sets": {}},
    "no_tp_overlap": {"keyed": None, "sets": {"tp_comm_overlap": (_is(False), "false")}},
    "tp_comm": {"keyed": True, "sets": {"tp_comm_overlap": (_is_bool, "true or false")}},
    "dispatcher": {"keyed": False, "ends": True,
                   "sets": {"moe_token_dispatcher_type": _DISPATCHER}},
    "cuda_graph": {"keyed": True, "ends": True, "sets": {"cuda_graph_scope": (_is_names, "a list of graph scopes")}},
    "kernel_regression": {"keyed": "model", "exact": True, "note": True,
                          "sets": {"fused_mlp_dgrad_slowdown": (lambda v: _is_number(v) and 1.0 <= v <= 100.0,
                                                                "a factor from 1 to 100")}},
    "pp_layout": {"keyed": "model", "sets": {"pipeline_model_parallel_layout": (
        lambda v: _layout_map_problem(v) is None, "a mapping 'PPxVP': layout string with {mtp} before the loss")}},
}


def _layout_map_problem(v) -> str | None:
    """What is wrong with a ``pp_layout`` entry's ``{"PPxVP": layout}`` mapping, or None. A layout is
    Megatron-Core's string with ``{mtp}`` where the recipe puts ``["mtp"] * mtp_num_layers``."""
    from ..perf.pipeline import parse_pipeline_layout
    if not isinstance(v, dict) or not v:
        return "not a mapping"
    for key, layout in v.items():
        m = re.fullmatch(r"(\d+)x(\d+)", str(key))
        if not m or not isinstance(layout, str):
            return f"{key!r}"
        try:
            chunks = parse_pipeline_layout(layout.replace("{mtp}", ""))
        except ValueError:
            return f"{key!r}"
        if len(chunks) != int(m.group(1)) * int(m.group(2)):
            return f"{key!r}: {len(chunks)} chunks"
    return None


def _release(value) -> tuple[int, int] | None:
    """A release ``"26.06"`` as ``(26, 6)``; None stays None; anything else is a ValueError."""
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d{2}\.\d{2}", value):
        raise ValueError
    return int(value[:2]), int(value[3:])


def _source_problem(source) -> tuple[str, str] | None:
    """``(field, what is wrong)`` of an entry's ``source`` list, or None."""
    if not isinstance(source, list) or not source:
        return "source", "must be a non-empty list of {repo, path, commit}"
    for k, ref in enumerate(source):
        field = f"source[{k}]"
        thread = isinstance(ref, dict) and bool({"issue", "pull"} & set(ref))  # a GitHub issue or PR thread
        keys = {"repo", "issue", "pull", "says"} if thread else {"repo", "path", "commit", "says"}
        if not isinstance(ref, dict) or not set(ref) <= keys:
            return field, "must be a mapping of repo, path, commit (or repo and an issue or pull number) and optionally says"
        if not isinstance(ref.get("repo"), str) or not re.fullmatch(r"[\w.-]+/[\w.-]+", ref["repo"]):
            return f"{field}.repo", f"must be owner/name, got {ref.get('repo')!r}"
        if thread:
            number = ref.get("issue", ref.get("pull"))
            if len({"issue", "pull"} & set(ref)) > 1 or not _is_count(number):
                return field, "must name one issue or pull request by its number"
            continue
        if not isinstance(ref.get("path"), str) or not ref["path"].strip():
            return f"{field}.path", "must be a file path in the repository"
        if not isinstance(ref.get("commit"), str) or not re.fullmatch(r"[0-9a-f]{7,40}", ref["commit"]):
            return f"{field}.commit", f"must be a commit hash (7 to 40 hex digits), got {ref.get('commit')!r}"
    return None


def _entry_problem(e: dict) -> tuple[str, str] | None:
    """``(field, what is wrong)`` of one entry of the data file, or None."""
    spec = _FACTS[e["fact"]]
    keyed = spec["keyed"]  # True: model, system, layout; "model": model (system optional); False: model only
    for field, want in (("model", keyed is not None), ("system", keyed is True)):
        if want and not (isinstance(e.get(field), str) and e[field]):
            return field, "must be a name as nemo_performance.csv spells it"
        optional = field == "system" and keyed == "model" and (e.get(field) is None or isinstance(e[field], str))
        if not want and e.get(field) is not None and not optional:
            return field, f"must be null for fact {e['fact']} (it applies to every {field})"
    if e.get("precisions") is not None and not (_is_names(e["precisions"]) and e["precisions"]):
        return "precisions", "must be null (every precision) or a non-empty list of precision labels"
    if keyed is None and not e.get("precisions"):
        return "precisions", f"must list the precisions fact {e['fact']} applies to"
    layout = e.get("layout")
    if keyed is True and not (isinstance(layout, dict) and set(layout) == set(_LAYOUT_KEYS)
                              and all(_is_count(v) for v in layout.values())):
        return "layout", f"must be a mapping of {', '.join(_LAYOUT_KEYS)}, each a positive integer"
    if keyed is not True and layout is not None:
        return "layout", f"must be null for fact {e['fact']}"
    exact = spec.get("exact", False)  # named releases, patch included (a fix can come in a patch release)
    if exact and not (isinstance(e.get("containers"), list) and e["containers"]
                      and all(isinstance(c, str) and re.fullmatch(r"\d{2}\.\d{2}(\.\d{2})?", c)
                              for c in e["containers"])):
        return "containers", "must list the releases 'YY.MM' or 'YY.MM.PP' (in quotes) that shipped it"
    if not exact and e.get("containers") is not None:
        return "containers", f"must be absent for fact {e['fact']} (it uses first_container)"
    for field, allowed in (("first_container", keyed is not None and not exact),
                           ("last_container", spec.get("ends", False))):
        try:
            release = _release(e.get(field))
        except ValueError:
            return field, f"must be a release 'YY.MM' in quotes, got {e.get(field)!r}"
        if field == "first_container" and allowed and release is None:
            return field, "must be the first release 'YY.MM' that ran the recipe"
        if not allowed and release is not None:
            return field, f"must be null for fact {e['fact']}"
    sets = e.get("sets")
    if not isinstance(sets, dict) or (spec.get("note") and not sets):
        return "sets", "must be a mapping of the options the recipe sets"
    known = {**spec["sets"], **spec.get("optional", {})}
    for key, (check, words) in known.items():
        if key in sets and not check(sets[key]):
            return f"sets.{key}", f"must be {words}, got {sets[key]!r}"
    missing = set(spec["sets"]) - set(sets)
    extra = set(sets) - set(known) if known else set()
    if missing or extra:
        return "sets", f"must set exactly {', '.join(sorted(spec['sets']))} (+ optional " \
                       f"{', '.join(spec.get('optional', {})) or 'none'}); got {', '.join(sorted(sets))}"
    if spec.get("note") and not (isinstance(e.get("note"), str) and e["note"].strip()):
        return "note", "must say what the row reports (the option the step model does not model, the regression)"
    problem = _source_problem(e.get("source"))
    if problem:
        return problem
    if not isinstance(e.get("verified"), bool):
        return "verified", "must be true (read in the cited files) or false (inferred: say from what in note)"
    return None


def check_recipes(data) -> tuple[dict, ...]:
    """The entries of ``data/megatron_bridge_recipes.yaml``, checked: a broken entry is an
    :class:`~carbonscaling.errors.InputError` naming the entry and its field."""
    if not isinstance(data, dict) or not isinstance(data.get("recipes"), list):
        raise InputError(DATA_FILE, "must be a mapping with a list 'recipes'")
    seen: dict[tuple, int] = {}
    for i, e in enumerate(data["recipes"]):
        name = f"{DATA_FILE} recipes[{i}]"
        if not isinstance(e, dict):
            raise InputError(name, "must be a mapping")
        if e.get("fact") not in _FACTS:
            raise InputError(f"{name}.fact", f"must be one of {', '.join(_FACTS)}, got {e.get('fact')!r}")
        name += f" ({e['fact']} {e.get('model') or 'every model'} {e.get('system') or ''})".replace(" )", ")")
        unknown = set(e) - _ENTRY_KEYS
        problem = ("fields", f"unknown {', '.join(sorted(unknown))}") if unknown else _entry_problem(e)
        if problem:
            raise InputError(f"{name}.{problem[0]}", problem[1])
        # facts keyed without a layout, or by (model, system), allow one entry per key
        key = {"fused_moe": (e.get("model"), e.get("system")), "no_recompute": (e.get("model"),),
               "etp": (e.get("model"),)}.get(e["fact"])
        if key is not None:
            if (e["fact"], key) in seen:
                raise InputError(f"{name}.model", f"repeats recipes[{seen[(e['fact'], key)]}]")
            seen[(e["fact"], key)] = i
        if e["fact"] == "fused_moe" and e.get("precisions") != ["MXFP8"]:
            raise InputError(f"{name}.precisions", "must be [MXFP8] (the fused grouped MLP recipes are MXFP8)")
    fused = {e["first_container"] for e in data["recipes"] if e["fact"] == "fused_moe"}
    if len(fused) > 1:
        raise InputError(f"{DATA_FILE} fused_moe.first_container", f"must be one release, got {sorted(fused)}")
    return tuple(data["recipes"])


@lru_cache(maxsize=None)
def recipe_entries() -> tuple[dict, ...]:
    """The checked entries of ``data/megatron_bridge_recipes.yaml`` (read once)."""
    return check_recipes(load_yaml(DATA_FILE))


def _key(e: dict) -> tuple:
    """``(model, system, precisions or None, (TP, PP, VP, EP, microbatch), first release)`` of an entry."""
    precs = tuple(e["precisions"]) if e["precisions"] is not None else None
    return (e["model"], e["system"], precs, tuple(e["layout"][k] for k in _LAYOUT_KEYS), _release(e["first_container"]))


def _of(fact: str) -> list[dict]:
    return [e for e in recipe_entries() if e["fact"] == fact]


# The lookup tables, in the file's order (within a fact the first matching entry wins).
#: Recipes with the fused grouped MLP: (model, system, precisions, layout, first release, EP overlap).
FUSED_MOE_RECIPES = [(*_key(e), e["sets"]["moe_a2a_overlap"]) for e in _of("fused_moe")]
#: FP8 attention core (``fp8_dot_product_attention``) of those recipes: (model, system, precisions, layout,
#: first release, on).
FP8_ATTENTION_RECIPES = [(*_key(e), e["sets"].get("fp8_dot_product_attention", False)) for e in _of("fused_moe")]
#: Selective recompute: (model, system, precisions, layout, first release, modules, EP all-to-all overlapped).
RECOMPUTE_RECIPES = [(*_key(e), tuple(e["sets"]["recompute_modules"]), e["sets"]["moe_a2a_overlap"])
                     for e in _of("recompute")]
#: EP communication: (model, system, precisions, layout, first release, dispatcher or None, overlapped).
MOE_COMM_RECIPES = [(*_key(e), e["sets"].get("moe_token_dispatcher_type"), e["sets"]["moe_a2a_overlap"])
                    for e in _of("moe_comm")]
#: Models whose performance script turns recompute off: model -> first release.
NO_RECOMPUTE_RECIPES = {e["model"]: _release(e["first_container"]) for e in _of("no_recompute")}
#: Expert tensor parallelism of the recipes: model -> (first release, ETP).
RECIPE_ETP = {e["model"]: (_release(e["first_container"]), e["sets"]["expert_tensor_parallel_size"])
              for e in _of("etp")}
#: Gradient reduction not overlapped: (model, system, precisions, layout, first release, last release).
NO_GRAD_OVERLAP_RECIPES = [(*_key(e), _release(e["last_container"])) for e in _of("no_grad_overlap")]
#: Activation CPU offloading: (model, system, precisions, layout, first release, layers offloaded).
OFFLOAD_RECIPES = [(*_key(e), e["sets"]["cpu_offloading_num_layers"]) for e in _of("offload")]
#: Options the step model has no term for: (model, system, precisions, layout, first release, note).
NOT_MODELLED_RECIPES = [(*_key(e), e["note"]) for e in _of("not_modelled")]
#: Precisions whose recipes turn TP communication overlap (userbuffers) off on every model and system.
NO_TP_OVERLAP_PRECISIONS = tuple(p for e in _of("no_tp_overlap") for p in e["precisions"])
#: TP communication overlap of one model, system and layout: (model, system, precisions, layout, first release,
#: tp_comm_overlap); rows no entry matches keep :func:`_tp_overlap_recipe`'s default.
TP_COMM_RECIPES = [(*_key(e), e["sets"]["tp_comm_overlap"]) for e in _of("tp_comm")]
#: The token dispatcher a model's recipe runs when no config names one (the model provider's default):
#: (model, first release, last release or None, dispatcher), first matching entry wins.
DISPATCHER_RECIPES = [(e["model"], _release(e["first_container"]), _release(e["last_container"]),
                       e["sets"]["moe_token_dispatcher_type"]) for e in _of("dispatcher")]
#: CUDA graphs (``TrainingOptions.cuda_graph_scope``): (model, system, precisions, layout, first release,
#: last release or None, scope); rows no entry matches keep the option's default (full iteration).
CUDA_GRAPH_RECIPES = [(*_key(e), _release(e["last_container"]), tuple(e["sets"]["cuda_graph_scope"]))
                      for e in _of("cuda_graph")]


#: Kernel regressions of named releases: (model, system or None, precisions or None, releases, slowdown, note).
KERNEL_REGRESSION_RECIPES = [(e["model"], e.get("system"), tuple(e["precisions"]) if e["precisions"] else None,
                              tuple(e["containers"]), float(e["sets"]["fused_mlp_dgrad_slowdown"]), e["note"])
                             for e in _of("kernel_regression")]
#: Pipeline layouts (``TrainingOptions.pipeline_layout``): (model, system or None, precisions, first release,
#: {(PP, VP): Megatron-Core layout with ``{mtp}`` for the MTP layers}); the first entry with the row's (PP, VP) wins.
PP_LAYOUT_RECIPES = [(e["model"], e.get("system"), tuple(e["precisions"]) if e["precisions"] else None,
                      _release(e["first_container"]),
                      {tuple(int(x) for x in k.split("x")): v for k, v in e["sets"]["pipeline_model_parallel_layout"].items()})
                     for e in _of("pp_layout")]


def _num(v: str) -> float | None:
    return float(v) if v not in ("", None) else None


def _container(row: dict) -> tuple[int, ...]:
    return tuple(int(x) for x in row["container"].split("."))


def _as_run(row: dict) -> tuple[int, ...]:
    """The row's (TP, PP, VP, EP, microbatch), empty cells read as 1."""
    return tuple(int(_num(row[k]) or 1) for k in ("tp", "pp", "vp", "ep", "mbs"))


def _first_match(table, row: dict, ranged: bool = False):
    """What the first entry of a recipe table that describes ``row`` sets, or None.

    Entries are ``(model, system, precisions or None, layout, first release[, last release], *sets)``
    (``ranged``: with a last release); the first one matching the row's model, system, number
    format, (TP, PP, VP, EP, microbatch) and release wins."""
    as_run, release = _as_run(row), _container(row)[:2]
    for entry in table:
        model, system, precs, layout, first = entry[:5]
        last, sets = (entry[5], entry[6:]) if ranged else (None, entry[5:])
        if (model, system, layout) == (row["model"], row["system"], as_run) and release >= first \
                and (last is None or release <= last) and (precs is None or row["precision"] in precs):
            return sets
    return None


def _fused_moe_recipe(row: dict) -> tuple[bool, bool]:
    """``(fused grouped MLP, EP all-to-all overlapped)`` of a row's recipe (:data:`FUSED_MOE_RECIPES`)."""
    sets = _first_match(FUSED_MOE_RECIPES, row)
    return (True, sets[0]) if sets else (False, False)


def _fp8_attention_recipe(row: dict) -> bool:
    """Whether a row's recipe runs the attention core in FP8 (:data:`FP8_ATTENTION_RECIPES`)."""
    sets = _first_match(FP8_ATTENTION_RECIPES, row)
    return bool(sets and sets[0])


def _recompute_recipe(row: dict):
    """``(recompute_modules, EP all-to-all overlapped)`` of a row's recipe, or None (:data:`RECOMPUTE_RECIPES`)."""
    return _first_match(RECOMPUTE_RECIPES, row)


def _moe_comm_recipe(row: dict):
    """``(token dispatcher or None, all-to-all overlapped)`` of a row's recipe (:data:`MOE_COMM_RECIPES`)."""
    return _first_match(MOE_COMM_RECIPES, row) or (None, False)


def _no_recompute_recipe(row: dict) -> bool:
    """Whether a row's performance script turns recompute off (:data:`NO_RECOMPUTE_RECIPES`)."""
    first = NO_RECOMPUTE_RECIPES.get(row["model"])
    return first is not None and _container(row)[:2] >= first


def _not_modelled_recipe(row: dict) -> str | None:
    """What a row's recipe ran that the step model does not model (:data:`NOT_MODELLED_RECIPES`), or None."""
    sets = _first_match(NOT_MODELLED_RECIPES, row)
    return sets[0] if sets else None


def _kernel_regression_recipe(row: dict) -> tuple[float, str] | None:
    """``(fused_mlp_dgrad_slowdown, note)`` of a row whose release shipped a slow kernel
    (:data:`KERNEL_REGRESSION_RECIPES`, matched on the release with its patch number), or None."""
    for model, system, precs, releases, slowdown, note in KERNEL_REGRESSION_RECIPES:
        if model == row["model"] and system in (None, row["system"]) and row["container"] in releases \
                and (precs is None or row["precision"] in precs):
            return slowdown, note
    return None


def _offload_recipe(row: dict) -> int:
    """Layers whose activations a row's recipe offloads to the CPU (:data:`OFFLOAD_RECIPES`), or 0."""
    sets = _first_match(OFFLOAD_RECIPES, row)
    return sets[0] if sets else 0


def _no_grad_overlap_recipe(row: dict) -> bool:
    """Whether a row's recipe turns the gradient-reduction overlap off (:data:`NO_GRAD_OVERLAP_RECIPES`)."""
    return _first_match(NO_GRAD_OVERLAP_RECIPES, row, ranged=True) is not None


def _tp_overlap_recipe(row: dict) -> bool:
    """Whether a row's recipe overlaps TP communication: TP > 1, except :data:`NO_TP_OVERLAP_PRECISIONS`
    and where a :data:`TP_COMM_RECIPES` entry says otherwise."""
    sets = _first_match(TP_COMM_RECIPES, row)
    return int(_num(row["tp"]) or 1) > 1 and row["precision"] not in NO_TP_OVERLAP_PRECISIONS \
        and (sets is None or sets[0])


def _default_dispatcher(row: dict) -> str | None:
    """The token dispatcher a row's release runs when its config names none (:data:`DISPATCHER_RECIPES`), or None."""
    release = _container(row)[:2]
    for model, first, last, dispatcher in DISPATCHER_RECIPES:
        if model == row["model"] and release >= first and (last is None or release <= last):
            return dispatcher
    return None


def _cuda_graph_recipe(row: dict):
    """``cuda_graph_scope`` of a row's recipe (:data:`CUDA_GRAPH_RECIPES`, the fused MXFP8 recipes), or None."""
    sets = _first_match(CUDA_GRAPH_RECIPES, row, ranged=True)
    if sets:
        return sets[0]
    return ("full_iteration",) if _fused_moe_recipe(row)[0] else None


def _pp_layout_recipe(row: dict, mtp_layers: int) -> str | None:
    """The Megatron-Core ``pipeline_model_parallel_layout`` a row's recipe sets for its (PP, VP), with
    ``mtp_layers`` MTP layers before the loss (:data:`PP_LAYOUT_RECIPES`), or None."""
    _, pp, vp, _, _ = _as_run(row)
    release = _container(row)[:2]
    for model, system, precs, first, layouts in PP_LAYOUT_RECIPES:
        if model == row["model"] and system in (None, row["system"]) and release >= first \
                and (precs is None or row["precision"] in precs) and (pp, vp) in layouts:
            return layouts[(pp, vp)].replace("{mtp}", "m" * mtp_layers)
    return None
