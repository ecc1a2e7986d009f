"""Reports a newcomer can read (issue 13, item 9): abbreviations defined from one list
(carbonscaling.glossary.TERMS), figure points labelled, plain log ticks, no series hidden."""

from __future__ import annotations

import json
from pathlib import Path

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
    undefined = glossary.undefined_tokens(body, catalog_names())
    assert not undefined, (f"the report uses {sorted(undefined)}: define them in carbonscaling.glossary.TERMS (or list "
                           "a proper name in NAMES), then run python -m carbonscaling.glossary --write-docs")
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
    # The checkout's docs/, not docs_path(): an installed (non-editable) package has no docs beside it.
    docs = Path(__file__).resolve().parents[1] / "docs" / "glossary.md"
    assert docs.read_text(encoding="utf-8") == glossary.docs_text(), \
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


def test_validate_report_defines_every_abbreviation(validation_report):
    from carbonscaling.validation.report import to_markdown

    validate_md = to_markdown(validation_report)
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


# ---- figures: labelled points, readable ticks, no hidden series (issue 13, item 9) ----------------
@pytest.fixture()
def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def _overlaps(fig, artists) -> list[tuple[str, str]]:
    fig.canvas.draw()
    ren = fig.canvas.get_renderer()
    boxes = [(a.get_text(), a.get_window_extent(ren)) for a in artists]
    return [(s, t) for i, (s, a) in enumerate(boxes) for t, b in boxes[:i] if a.overlaps(b)]


def test_scatter_panels_number_every_run_without_overlap(plt, validation_report):
    from carbonscaling.validation.figures import FIG_METHODS, run_numbers, scatter_figure
    from carbonscaling.validation.report import _value

    rep = validation_report
    fig = scatter_figure(plt, rep)
    nums = run_numbers(rep)
    for ax, q in zip(fig.axes[:2], ("device_hours", "mfu")):
        want = {str(nums[r["run_id"]]) for r in rep.runs if q in r["reported"]
                and any(_value(r, m, q) is not None for m in FIG_METHODS if m in rep.methods)}
        assert {t.get_text() for t in ax.texts} == want and len(want) >= 10, q
        assert _overlaps(fig, ax.texts) == []
    key = [t.get_text() for t in fig.legends[0].get_texts()]
    assert key == [f"{i}  {rid}" for rid, i in nums.items() if str(i) in {t.get_text() for a in fig.axes
                                                                            for t in a.texts}]


def test_log_ticks_are_plain_numbers_that_do_not_overlap(plt):
    from carbonscaling.validation.figures import _tick_text, plain_log_ticks

    assert [_tick_text(v) for v in (0.5, 1, 2, 50, 2e5, 1e8)] == ["0.5", "1", "2", "50", "2e5", "1e8"]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlim(2, 90), ax.set_ylim(0.3, 30)
    plain_log_ticks(ax)
    fig.canvas.draw()
    ys = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert {"0.5", "1", "2", "5", "10", "20"} <= set(ys) and not any("$" in t for t in ys)
    assert _overlaps(fig, [t for t in ax.get_xticklabels() if t.get_text()]) == []


def test_step_time_figure_reads_and_shows_every_system(plt, tmp_path, monkeypatch):
    from carbonscaling.validation import throughput

    rows = [{"system": s, "measured_step_s": m, "predicted_step_s": m * (1 + 0.01 * i)}
            for i, s in enumerate(("DGX-H100", "DGX-B200", "DGX-GB200")) for m in (2.0, 5.0, 30.0, 80.0)]
    shown = {}
    monkeypatch.setattr(plt, "close", lambda fig: shown.setdefault("fig", fig))
    throughput.figure(plt, {"rows": rows}, tmp_path)
    ax = shown["fig"].axes[0]
    sizes = [c.get_sizes()[0] for c in ax.collections]
    assert len(sizes) == 3 and sizes == sorted(sizes, reverse=True)  # later systems smaller, on top
    assert [c.get_zorder() for c in ax.collections] == sorted(c.get_zorder() for c in ax.collections)
    assert _overlaps(shown["fig"], [t for t in ax.get_xticklabels() if t.get_text()]) == []
    assert not any("$" in t.get_text() for t in ax.get_xticklabels())


def test_identical_paper_series_stay_visible(plt):
    from types import SimpleNamespace

    from carbonscaling.experiments.figures import loss_vs_carbon

    base = {"kind": "practical", "status": "ok", "preset": "cs-v1", "loss": 0, "total_tco2e": 0}
    rows = [{**base, "series": s, "d_model": d, "loss": 2.0 - d / 1e5, "total_tco2e": d / 10.0, "params_law": d ** 2}
            for s in ("a", "b", "c") for d in (4096, 8192, 16384)]
    fig = loss_vs_carbon(plt, SimpleNamespace(compare_to=None), rows, {})
    lines = [ln for ln in fig.axes[0].lines if ln.get_label() in ("a", "b", "c")]
    widths = [ln.get_linewidth() for ln in lines]
    assert [ln.get_label() for ln in lines] == ["a", "b", "c"] and widths == sorted(widths, reverse=True)
    assert len(set(widths)) == 3  # each later series thinner and on top: the one below shows around it
    assert [ln.get_zorder() for ln in lines] == sorted(ln.get_zorder() for ln in lines)
