"""The reports define their abbreviations (issue 13, item 9): one list, carbonscaling.glossary.TERMS."""

from __future__ import annotations

import json

import pytest

from carbonscaling import glossary
from carbonscaling.cli import main


def catalog_names() -> tuple[str, ...]:
    from carbonscaling.hardware import device_names
    from carbonscaling.scaling import catalog_entry, model_names

    names = set(device_names())
    for m in model_names():
        entry = catalog_entry(m)
        names |= {m, entry.get("display_name") or m, *entry.get("aliases", [])}
    return tuple(names)


def check_report(text: str) -> None:
    """Every upper-case token of the report body is defined, and its glossary lists exactly the terms used."""
    body, _, section = text.partition("## Glossary")
    assert section, "the report has no glossary"
    assert glossary.undefined_tokens(body, catalog_names()) == set()
    listed = [line.split(" | ")[0].lstrip("| ").strip() for line in section.splitlines()[5:] if line.startswith("| ")]
    assert listed == [t.term for t in glossary.terms_used(body)]


def test_terms_are_unique_and_defined():
    terms = [t.term for t in glossary.TERMS]
    assert len(terms) == len(set(terms)) >= 60
    assert all(len(t.meaning) > 15 and t.meaning.endswith((".", ")")) for t in glossary.TERMS)
    for must in ("MFU", "HFU", "MAPE", "CPA", "LOO", "LLMC", "EUV", "TP", "PP", "VP", "CP", "EP", "ETP", "DP",
                 "FSDP", "ZeRO", "PUE", "CI", "TDP", "goodput", "p5/p50/p95"):
        assert must in terms, must


def test_docs_glossary_is_generated_from_the_list():
    assert glossary.docs_path().read_text(encoding="utf-8") == glossary.docs_text(), \
        "run: python -m carbonscaling.glossary --write-docs"


def test_patterns_find_layout_labels_and_skip_lookalikes():
    text = "TP8 CP1 PP4 VP2 DP16 EP1 FSDP64 ZeRO-1 mb2 rc=full; 500 tCO2e at CI 57, p95 and FP8-MX"
    used = {t.term for t in glossary.terms_used(text)}
    assert {"TP", "CP", "PP", "VP", "DP", "EP", "FSDP", "ZeRO", "mb", "rc", "CO2e", "CI", "p5/p50/p95", "FP8"} <= used
    assert not {"ETP", "DDP", "CO", "MFU"} & used  # ETP is not TP's neighbour, tCO2e is not CO
    assert glossary.undefined_tokens(text) == set()


def test_an_undefined_abbreviation_is_found():
    assert glossary.undefined_tokens("We model XYZ on H100 with TP8 and the ABC2 rule (`NOTE` is code).") == \
        {"XYZ", "ABC"}
    assert glossary.undefined_tokens("LLAMA3_70B and DeepSeekV3 on DGX-GB200", ()) == set()


@pytest.fixture(scope="module")
def validate_md():
    from carbonscaling.validation import validate
    from carbonscaling.validation.report import to_markdown

    return to_markdown(validate())


def test_validate_report_defines_every_abbreviation(validate_md):
    check_report(validate_md)
    assert "| MAPE |" in validate_md and "| MFU |" in validate_md


def test_paper_report_defines_every_abbreviation(tmp_path):
    from carbonscaling.experiments.paper import run
    from carbonscaling.experiments.scenario import shipped_scenarios

    run(shipped_scenarios(["v1-fig7", "v2-fig5", "v2-fig7b"]), tmp_path / "p", jobs=1, figures=False)
    md = (tmp_path / "p" / "report.md").read_text(encoding="utf-8")
    check_report(md)
    assert "| PUE |" in md and len(glossary.terms_used(md.partition("## Glossary")[0])) >= 8
    assert "id='glossary'" in (tmp_path / "p" / "report.html").read_text(encoding="utf-8")


def test_cli_glossary(capsys):
    assert main(["glossary", "mape"]) == 0
    assert capsys.readouterr().out.startswith("MAPE: Mean absolute percentage error")
    assert main(["glossary", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(glossary.TERMS)
    assert main(["glossary", "XYZ"]) == 2
    assert capsys.readouterr().err.startswith("error: term")
