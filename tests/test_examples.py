"""Shipped example model files: they load, match the catalog models they copy, are printed by
`models --example`, and a gated-looking model without ffn_gated draws a one-line warning."""

from __future__ import annotations

import warnings

import pytest

from carbonscaling.cli import main
from carbonscaling.errors import CarbonScalingWarning
from carbonscaling.scaling import EXAMPLE_MODEL_FILES, example_model_file, model_from_file, named_model

from helpers import write_file


@pytest.mark.parametrize("kind,twin", [("dense", "llama3.1-8b"), ("moe", "mixtral-8x7b")])
def test_example_model_files_load_and_match_their_catalog_twin(kind, twin, tmp_path, capsys):
    assert main(["models", "--example", kind]) == 0
    text = capsys.readouterr().out
    assert text == example_model_file(kind) and text.startswith("# An example")
    p = tmp_path / EXAMPLE_MODEL_FILES[kind]
    p.write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CarbonScalingWarning)  # the examples draw no warning
        spec = model_from_file(p)
    ref = named_model(twin)
    assert (spec.params_total, spec.params_active, spec.train_tokens) == \
        (ref.params_total, ref.params_active, ref.train_tokens)


def test_unknown_example_is_one_line(capsys):
    assert main(["models", "--example", "gpt"]) == 2
    assert capsys.readouterr().err.startswith("error: example (--example): must be one of dense, moe")


def test_gated_shape_without_ffn_gated_warns_with_both_parameter_counts(tmp_path, capsys):
    llama2 = "d_model: 4096\nn_layers: 32\nd_ff: 11008\nvocab: 32000\n"  # Llama 2 7B without ffn_gated
    with pytest.warns(CarbonScalingWarning, match=r"5\.3e\+09 parameters; with ffn_gated: true it would be 6\.74e\+09"):
        model_from_file(write_file(tmp_path, "m.yaml", llama2))
    code = main(["carbon", "--model-file", str(write_file(tmp_path, "m.yaml", llama2)), "--device", "H100", "-n", "8",
                 "-u", "0.4", "--duration-hours", "1"])
    err = capsys.readouterr().err
    assert code == 0 and err.startswith("warning: model_file: d_ff = 2.69 x d_model") and err.count("\n") == 1


@pytest.mark.parametrize("text", [
    "d_model: 4096\nn_layers: 32\nd_ff: 11008\nffn_gated: false\n",  # said explicitly
    "d_model: 4096\nn_layers: 32\nd_ff: 16384\n",                    # 4 x: a plain GPT FFN
    "d_model: 4096\nn_layers: 32\n",                                 # d_ff defaulted
])
def test_no_warning_when_stated_or_plain(tmp_path, text):
    with warnings.catch_warnings():
        warnings.simplefilter("error", CarbonScalingWarning)
        model_from_file(write_file(tmp_path, "m.yaml", text))
