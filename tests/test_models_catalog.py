"""The named-architecture catalog (data/models.yaml) loads, is cited, and counts right."""

from __future__ import annotations

import numbers

import pytest

from carbonscaling.errors import UnknownNameError
from carbonscaling.scaling import ModelSpec, catalog_entry, model_names, named_model
from carbonscaling._data import load_yaml

CATALOG: dict[str, dict] = load_yaml("models.yaml")["models"]
NAMES = sorted(CATALOG)

META_KEYS = {"display_name", "source", "notes", "reported_params", "reported_active_params", "aliases"}
SPEC_KEYS = set(ModelSpec.model_fields) - {"name", "preset", "law_params", "law_train_flops", "loss_law"}

# Relative tolerance of params_total / params_active against the reported figures.
DEFAULT_TOL = 0.03
DEFAULT_ACTIVE_TOL = 0.05
ACTIVE_TOL = {
    # The gpt-oss card's 5.1B active parameters count one of its two 201088 x 2880 embedding
    # matrices (0.58B); params_active counts both (5.71B, 12 % over).
    "gpt-oss-120b": 0.13,
}
WIDER_TOL = {
    # Llama 2 paper prints "7B"; the checkpoint holds 6.74B (LLaMA-1 Table 2: 6.7B for the
    # same shape). Our count is exact (6.738e9), so it sits 3.7 % under the rounded headline.
    "llama2-7b": 0.04,
    # Megatron-LM Table 1 prints 1.7B for a model its own eq. (2) puts at 1.652e9; we also
    # leave out biases and position embeddings: 3.1 % under the printed figure.
    "megatron-1.7b": 0.04,
}

# SPEC.md section 1 minimum set: every one of these must be in the catalog.
REQUIRED = [
    "gpt3-175b", "bloom-176b", "opt-175b",
    "llama2-7b", "llama2-13b", "llama2-70b",
    "llama3.1-8b", "llama3.1-70b", "llama3.1-405b",
    "deepseek-v3", "palm-540b", "mixtral-8x7b",
    "megatron-1.7b", "megatron-3.6b", "megatron-7.5b", "megatron-18.4b", "megatron-39.1b",
    "megatron-76.1b", "megatron-145.6b", "megatron-310.1b", "megatron-529.6b", "megatron-1t",
]  # fmt: skip

# Narayanan et al. SC'21 Table 1: (heads, hidden, layers, batch sequences).
MEGATRON_TABLE1 = {
    "megatron-1.7b": (24, 2304, 24, 512),
    "megatron-3.6b": (32, 3072, 30, 512),
    "megatron-7.5b": (32, 4096, 36, 512),
    "megatron-18.4b": (48, 6144, 40, 1024),
    "megatron-39.1b": (64, 8192, 48, 1536),
    "megatron-76.1b": (80, 10240, 60, 1792),
    "megatron-145.6b": (96, 12288, 80, 2304),
    "megatron-310.1b": (128, 16384, 96, 2160),
    "megatron-529.6b": (128, 20480, 105, 2520),
    "megatron-1t": (160, 25600, 128, 3072),
}


def test_catalog_has_required_models():
    assert set(REQUIRED) <= set(model_names())
    # (model_names() == sorted keys of the same YAML could not fail.) Every listed name is a
    # CLI name that resolves to itself, once.
    names = model_names()
    assert names == sorted(set(names))
    assert all(named_model(n).name == n for n in names)


@pytest.mark.parametrize("key", NAMES)
def test_entry_loads_and_is_well_formed(key):
    entry = CATALOG[key]
    assert key == key.strip().lower(), "catalog keys are lowercase CLI names"
    unknown = set(entry) - META_KEYS - SPEC_KEYS
    assert not unknown, f"unknown keys {unknown}"
    assert isinstance(entry.get("source"), str) and entry["source"].strip(), "every entry cites a source"
    assert isinstance(entry.get("display_name"), str) and entry["display_name"].strip()
    for field in ("reported_params", "reported_active_params"):
        if field in entry:  # meta fields are not coerced by the loader: must parse as numbers
            assert isinstance(entry[field], numbers.Real) and not isinstance(entry[field], bool), field
    spec = named_model(key)
    assert isinstance(spec, ModelSpec)
    assert spec.name == key
    assert spec.tokens is not None, "every entry states its token budget (or a documented placeholder)"
    assert spec.train_tokens > 0 and spec.train_flops > 0


@pytest.mark.parametrize("key", NAMES)
def test_params_total_matches_reported(key):
    spec = named_model(key)
    reported = CATALOG[key]["reported_params"]
    tol = WIDER_TOL.get(key, DEFAULT_TOL)
    assert spec.params_total == pytest.approx(reported, rel=tol), (
        f"{key}: params_total {spec.params_total:.4g} vs reported {reported:.4g}"
    )


@pytest.mark.parametrize("key", [k for k in NAMES if "reported_active_params" in CATALOG[k]])
def test_params_active_matches_reported(key):
    spec = named_model(key)
    reported = CATALOG[key]["reported_active_params"]
    assert spec.is_moe
    assert spec.params_active < spec.params_total
    assert spec.params_active == pytest.approx(reported, rel=ACTIVE_TOL.get(key, DEFAULT_ACTIVE_TOL)), (
        f"{key}: params_active {spec.params_active:.4g} vs reported {reported:.4g}"
    )


@pytest.mark.parametrize("key", NAMES)
def test_moe_entries_report_active_params(key):
    spec = named_model(key)
    if spec.is_moe:
        assert "reported_active_params" in CATALOG[key]
    else:
        assert spec.params_active == spec.params_total


@pytest.mark.parametrize("key", [k for k in NAMES if "global_batch_tokens" in CATALOG[k]])
def test_stated_batch_is_whole_sequences(key):
    spec = named_model(key)
    # batch_sequences rounds; the stated batch must be (nearly) a whole number of sequences.
    assert spec.batch_sequences * spec.seq_len == pytest.approx(spec.global_batch_tokens, rel=1e-3)


@pytest.mark.parametrize("key", NAMES)
def test_aliases_resolve(key):
    for alias in CATALOG[key].get("aliases", []):
        assert alias == alias.lower()
        assert catalog_entry(alias) is CATALOG[key]
        assert named_model(alias).name == key
        assert named_model(alias.upper()).name == key
        assert named_model(f"  {alias} ").name == key


def test_aliases_are_unique_and_do_not_shadow_keys():
    seen: dict[str, str] = {}
    for key in NAMES:
        for alias in CATALOG[key].get("aliases", []):
            assert alias not in CATALOG, f"alias {alias!r} of {key} is itself a key"
            assert alias not in seen, f"alias {alias!r} used by {seen.get(alias)} and {key}"
            seen[alias] = key


@pytest.mark.parametrize(
    ("typo", "expected"),
    [("gpt3-175", "gpt3-175b"), ("llama2-7", "llama2-7b"), ("deepseek-v2", "deepseek-v3"), ("megatron-1tb", "megatron-1t")],
)
def test_unknown_name_suggests(typo, expected):
    with pytest.raises(UnknownNameError) as exc:
        named_model(typo)
    msg = str(exc.value)
    assert "did you mean" in msg
    assert repr(expected) in msg
    assert exc.value.field == "model"


def test_unknown_name_without_close_match_lists_known():
    with pytest.raises(UnknownNameError) as exc:
        named_model("zzzz-qqqq")
    assert "known:" in str(exc.value)


@pytest.mark.parametrize("key", sorted(MEGATRON_TABLE1))
def test_megatron_matches_table1(key):
    heads, hidden, layers, batch = MEGATRON_TABLE1[key]
    spec = named_model(key)
    assert (spec.n_heads, spec.d_model, spec.n_layers) == (heads, hidden, layers)
    assert spec.d_ff == 4 * hidden and spec.vocab == 51200 and spec.seq_len == 2048
    assert spec.global_batch_tokens == batch * 2048
    assert spec.tied_embeddings


def test_architecture_spot_checks():
    palm = named_model("palm-540b")
    assert (palm.n_kv_heads, palm.head_dim, palm.vocab) == (1, 256, 256000)
    assert palm.ffn_gated and palm.tied_embeddings
    assert palm.params_total == pytest.approx(540.35e9, rel=1e-3)

    ds = named_model("deepseek-v3")
    assert (ds.n_layers, ds.first_dense_layers, ds.n_moe_layers) == (61, 3, 58)
    assert (ds.n_experts, ds.n_shared_experts, ds.top_k, ds.d_expert) == (256, 1, 8, 2048)
    assert ds.batch_sequences == 15360 and ds.seq_len == 4096
    # MLA approximation: attention weights per layer equal MLA's low-rank projections.
    mla = 7168 * 1536 + 1536 * 128 * 192 + 7168 * (512 + 64) + 512 * 128 * 256 + 128 * 128 * 7168
    assert ds.attn_params_per_layer == pytest.approx(mla, rel=0.01)

    k2 = named_model("kimi-k2")
    mla_k2 = 7168 * 1536 + 1536 * 64 * 192 + 7168 * (512 + 64) + 512 * 64 * 256 + 64 * 128 * 7168
    assert k2.attn_params_per_layer == pytest.approx(mla_k2, rel=0.03)

    mixtral = named_model("mixtral-8x7b")
    assert (mixtral.n_experts, mixtral.top_k, mixtral.n_kv_heads) == (8, 2, 8)

    assert named_model("llama3.1-405b").train_tokens == 15.6e12
    assert named_model("llama2-70b").n_kv_heads == 8
    assert named_model("gpt3-175b").global_batch_tokens == 3.2e6
