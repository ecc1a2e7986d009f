"""data/megatron_bridge_recipes.yaml: every recipe fact is sourced and flagged, and a broken entry is
one line naming the entry and its field (validation/recipes.py checks the file once on load).

The first test reads the file with plain PyYAML, not through the package's checker, so it fails on its
own if an entry lost its source or flag; what the facts do to the rows is tests/test_recipe_tables.py's.
"""

import copy
import re

import pytest
import yaml

from carbonscaling._data import data_path, load_yaml
from carbonscaling.errors import InputError
from carbonscaling.validation import recipes

RAW = yaml.safe_load(data_path(recipes.DATA_FILE).read_text(encoding="utf-8"))["recipes"]


def test_every_entry_has_a_source_at_a_commit_and_a_verification_flag():
    assert len(RAW) >= 60
    for i, entry in enumerate(RAW):
        assert isinstance(entry["verified"], bool), i
        assert entry["source"], i
        for ref in entry["source"]:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", ref["repo"]), (i, ref)
            if entry["fact"] == "kernel_regression" and ("issue" in ref or "pull" in ref):
                assert isinstance(ref.get("issue", ref.get("pull")), int), (i, ref)  # a GitHub thread by number
                continue
            # configs, scripts, recipes, bridges: all Python; a regression's footnote: the performance summary
            assert ref["path"].endswith(".md" if entry["fact"] == "kernel_regression" else ".py"), (i, ref)
            assert re.fullmatch(r"[0-9a-f]{7,40}", ref["commit"]), (i, ref)


def test_the_tables_are_the_files_entries_in_order():
    recompute = [e for e in RAW if e["fact"] == "recompute"]
    assert len(recipes.RECOMPUTE_RECIPES) == len(recompute)
    for row, entry in zip(recipes.RECOMPUTE_RECIPES, recompute):  # first match wins: order is meaning
        assert row[:2] == (entry["model"], entry["system"])
        assert row[5] == tuple(entry["sets"]["recompute_modules"])
    assert recipes.FUSED_MOE_RECIPES[0] == ("DeepSeekV3", "DGX-GB300", ("MXFP8",), (1, 2, 8, 32, 1), (26, 6), True)
    assert recipes.RECIPE_ETP["DeepSeekV3"] == ((25, 9), 1)
    assert recipes.NO_GRAD_OVERLAP_RECIPES == [("DeepSeekV3", "DGX-H100", None, (2, 8, 4, 64, 1), (25, 9), (25, 9))]
    assert sum(e["fact"] == "cuda_graph" for e in RAW) == len(recipes.CUDA_GRAPH_RECIPES)
    assert recipes.TP_COMM_RECIPES == [("Qwen3_235B_a22B", "DGX-H100", None, (2, 8, 4, 32, 1), (26, 2), False)]
    assert recipes.DISPATCHER_RECIPES == [("DeepSeekV3", (25, 9), (25, 11), "alltoall"),
                                          ("Qwen3_30B_a3B", (25, 9), (25, 11), "alltoall"),
                                          ("Qwen3_235B_a22B", (25, 9), (25, 11), "alltoall")]
    assert [(m, s, tuple(sorted(lay))) for m, s, _, _, lay in recipes.PP_LAYOUT_RECIPES] == [
        ("DeepSeekV3", "DGX-H100", ((8, 4),)), ("DeepSeekV3", "DGX-GB300", ((2, 8), (4, 4))),
        ("DeepSeekV3", None, ((4, 1), (4, 2), (4, 4), (8, 1), (8, 2), (16, 1)))]
    assert recipes.recipe_entries() is recipes.recipe_entries()  # read once


def _broken(i, **change):
    data = copy.deepcopy(load_yaml(recipes.DATA_FILE))
    for key, value in change.items():
        if value is ...:
            del data["recipes"][i][key]
        else:
            data["recipes"][i][key] = value
    return data


def _index(fact, model):
    return next(i for i, e in enumerate(RAW) if (e["fact"], e["model"]) == (fact, model))


@pytest.mark.parametrize("fact, model, change, field, words", [
    ("fused_moe", "Kimi_K2", {"source": ...}, "source", "non-empty list"),
    ("fused_moe", "Kimi_K2", {"verified": "yes"}, "verified", "true"),
    ("recompute", "Nemotron_3_Nano", {"source": [{"repo": "NVIDIA-NeMo/Megatron-Bridge", "path": "a.py",
                                                   "commit": "HEAD"}]}, "source[0].commit", "commit hash"),
    ("recompute", "Nemotron_3_Nano", {"layout": {"tp": 1, "pp": 0, "vp": 1, "ep": 8, "microbatch": 1}},
     "layout", "positive integer"),
    ("recompute", "Nemotron_3_Nano", {"sets": {"recompute_modules": "moe", "moe_a2a_overlap": False}},
     "sets.recompute_modules", "list of module names"),
    ("offload", "LLAMA3_70B", {"first_container": 26.02}, "first_container", "'YY.MM' in quotes"),
    ("offload", "LLAMA3_70B", {"last_container": "26.04"}, "last_container", "must be null"),
    ("etp", "DeepSeekV3", {"system": "DGX-H100"}, "system", "every system"),
    ("no_recompute", "Qwen3_30B_a3B", {"sets": {"recompute": "none"}}, "sets", "recompute_granularity"),
    ("cuda_graph", "Nemotron_3_Nano", {"layers": 2}, "fields", "unknown layers"),
    ("dispatcher", "Qwen3_30B_a3B", {"sets": {"moe_token_dispatcher_type": "deepep"}},
     "sets.moe_token_dispatcher_type", "alltoall, allgather or flex"),
    ("dispatcher", "Qwen3_30B_a3B", {"system": "DGX-H100"}, "system", "every system"),
    ("tp_comm", "Qwen3_235B_a22B", {"sets": {"tp_comm_overlap": "no"}}, "sets.tp_comm_overlap", "true or false"),
])
def test_a_broken_entry_is_one_line_naming_the_entry_and_field(fact, model, change, field, words):
    i = _index(fact, model)
    with pytest.raises(InputError) as err:
        recipes.check_recipes(_broken(i, **change))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{recipes.DATA_FILE} recipes[{i}] ({fact} {model}")
    assert f").{field}: " in message and words in message


def test_a_second_entry_for_the_same_key_is_refused():
    data = copy.deepcopy(load_yaml(recipes.DATA_FILE))
    data["recipes"].append(copy.deepcopy(data["recipes"][_index("etp", "DeepSeekV3")]))
    with pytest.raises(InputError, match=r"recipes\[\d+\] \(etp DeepSeekV3\)\.model: repeats recipes\["):
        recipes.check_recipes(data)
