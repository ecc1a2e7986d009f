"""``report.md`` and ``report.html``: per experiment, the paper's claims, our numbers, the verdict.

Both files are rendered from one list of blocks (:class:`Doc`): headings, paragraphs,
tables and figures; the HTML embeds the PNGs (base64) so it is one self-contained file.
Every number in them is read from the run's rows, fits and claim checks.
"""

from __future__ import annotations

import base64
import html
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

VERDICT_MARK = {"agrees": "agrees", "partly": "partly", "disagrees": "DISAGREES", "not evaluated": "not evaluated"}


class Doc:
    """Blocks rendered to Markdown and to HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str, anchor: str | None = None) -> None:
        self.blocks.append(("h", (level, text, anchor)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (header, rows)))

    def img(self, path: Path, rel: str, alt: str) -> None:
        self.blocks.append(("img", (path, rel, alt)))

    def markdown(self) -> str:
        out = []
        for kind, b in self.blocks:
            if kind == "h":
                out.append(f"{'#' * b[0]} {b[1]}\n")
            elif kind == "p":
                out.append(b + "\n")
            elif kind == "ul":
                out.append("\n".join(f"- {x}" for x in b) + "\n")
            elif kind == "table":
                head, rows = b
                esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                out.append("\n".join(["| " + " | ".join(map(esc, head)) + " |", "|" + "---|" * len(head)]
                                     + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]) + "\n")
            elif kind == "img":
                out.append(f"![{b[2]}]({b[1]})\n")
        return "\n".join(out)

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
               "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
               "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.88em}td,th{border:1px "
               "solid #ccc;padding:.3em .5em;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}"
               "code{background:#f4f4f4;padding:0 .2em}.agrees{color:#1a7f37}.partly{color:#9a6700}"
               ".DISAGREES{color:#cf222e;font-weight:600}</style></head><body>"]
        for kind, b in self.blocks:
            if kind == "h":
                aid = f" id='{b[2]}'" if b[2] else ""
                out.append(f"<h{b[0]}{aid}>{_inline(b[1])}</h{b[0]}>")
            elif kind == "p":
                out.append(f"<p>{_inline(b)}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in b) + "</ul>")
            elif kind == "table":
                head, rows = b
                out.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr>"
                           + "".join("<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in r) + "</tr>"
                                     for r in rows) + "</table>")
            elif kind == "img":
                path, _, alt = b
                if path.is_file():
                    data = base64.b64encode(path.read_bytes()).decode()
                    out.append(f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></p>")
        return "\n".join(out + ["</body></html>\n"])


def _inline(text: str) -> str:
    t = html.escape(str(text))
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"<a href='\2'>\1</a>", t)


def _cell_html(v: Any) -> str:
    s = str(v)
    cls = s if s in ("agrees", "partly", "DISAGREES") else ""
    return f"<span class='{cls}'>{_inline(s)}</span>" if cls else _inline(s)


def g(x: Any, digits: int = 3) -> str:
    """A number for the report (engineering-style for big and small values)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e6):
        return f"{int(x):,}"
    return f"{x:.{digits}g}".replace("e+", "e")


# ---- sections ------------------------------------------------------------------------------
def _settings_line(sc) -> str:
    b = sc.base
    c = b.carbon.model_dump(exclude_none=True)
    carbon = ", ".join(f"{k}={v}" for k, v in c.items()) or "package defaults"
    models = sc.models
    m = (f"preset `{models.preset}`, d_model {models.d_model}" if models.d_model
         else f"preset `{models.preset}`, N from {g(models.params.min)} to {g(models.params.max)} (nearest ladder widths)")
    return (f"Models: {m}. Base: device {b.device or 'B100'}, deadline {g(b.deadline_days or 90)} days, "
            f"on_infeasible={b.on_infeasible or 'extend'}; carbon: {carbon}.")


def series_table(rows: list[dict]) -> tuple[list[str], list[list[Any]]]:
    head = ["series", "points (ok / extended / infeasible)", "N range", "devices", "MFU", "carbon (tCO2e)",
            "embodied share"]
    out = []
    for label in dict.fromkeys(r["series"] for r in rows):
        pts = [r for r in rows if r["series"] == label]
        ok = [r for r in pts if r.get("status") != "infeasible" and r.get("total_tco2e")]
        cnt = {s: sum(r.get("status") == s for r in pts) for s in ("ok", "extended", "infeasible")}
        rng = lambda k: f"{g(min(r[k] for r in ok))}..{g(max(r[k] for r in ok))}" if ok else "-"  # noqa: E731
        out.append([label, f"{cnt['ok']} / {cnt['extended']} / {cnt['infeasible']}", rng("params_law"),
                    rng("devices_used"), rng("mfu") if pts[0]["kind"] != "ideal" else "1 (ideal)",
                    rng("total_tco2e"), rng("embodied_share")])
    return head, out


def latency_finding(rows: list[dict]) -> str | None:
    """The arithmetic of the first width where no layout met the deadline (from the rows)."""
    ext = [r for r in rows if r.get("best_duration_days") and r["kind"] == "practical"]
    if not ext:
        return None
    r = min(ext, key=lambda r: r["d_model"])
    steps = r["tokens"] / (r["batch_sequences"] * r["seq_len"])
    budget = r["deadline_days"] * 86400 / steps
    best = r["best_duration_days"] * 86400 / steps
    return (f"**Why large models miss the deadline.** At d_model = {r['d_model']:,} (N = {g(r['params_law'])}, "
            f"{r['n_layers']} layers) the preset trains on D = {g(r['tokens'])} tokens with a critical batch of "
            f"{r['batch_sequences']:,} sequences, i.e. D/B = {g(steps)} sequential steps. "
            f"{g(r['deadline_days'])} days leave {best_fmt(budget)} per step; the fastest layout the search found "
            f"on {r['device']} takes {best_fmt(best)} per step ({g(r['best_duration_days'])} days in all): a step "
            "cannot be shorter than one microbatch's forward and backward pass through every layer plus the "
            "pipeline and communication it needs, however many devices are added (data parallelism is capped "
            "by the batch). The papers' plots reach these sizes within 3 months; with their own formulas "
            f"({_rules_text(r['preset'])}) we cannot. Such points are drawn hollow with the deadline "
            "doubled until a layout exists (`deadline_days_used` in the CSV).")


def _rules_text(preset: str) -> str:
    from ..scaling import _preset_rules

    p = _preset_rules(preset)
    return (f"D = {g(p['tokens_per_param'])}N, B ~ C^{p['batch_exponent']:.3g}, "
            f"L = {p['layers_coef']:g} d^{p['layers_exp']:g}")


def best_fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def ideal_flops_note(rows: list[dict]) -> str | None:
    """Practical / ideal with the ideal on the law's C and on the model's real FLOPs."""
    ideal = {r["d_model"]: r for r in rows if r["kind"] == "ideal"}
    first = next((r["series"] for r in rows if r["kind"] == "practical"), None)  # the scenario's main curve
    prac = [r for r in rows if r["kind"] == "practical" and r["series"] == first
            and r.get("status") == "ok" and r["d_model"] in ideal]
    if not ideal or not prac:
        return None
    law = [r["total_tco2e"] / ideal[r["d_model"]]["total_tco2e"] for r in prac]
    real = [x * r["train_flops"] / r["model_flops"] for x, r in zip(law, prac)]
    extra = [r["model_flops"] / r["train_flops"] for r in prac]
    return (f"Ideal = the law's compute C = 6ND/E at peak and TDP (the papers' definition). Against it, practical "
            f"carbon is {g(min(law))}..{g(max(law))}x the ideal at the widths that met the deadline; against the "
            f"model's real FLOPs (6 N_active D + attention, {g(min(extra))}-{g(max(extra))}x C at these sizes) it is "
            f"{g(min(real))}..{g(max(real))}x.")


def method_notes(scenarios) -> list[str]:
    """How the runs were set up (numbers computed from the presets and the runner's constants)."""
    from ..scaling import from_preset
    from .runner import WORKER_MEMORY_GB

    n = lambda p, d: g(from_preset(p, d).params_law, 2)  # noqa: E731
    sweeps = [s for s in scenarios if s.plot != "validation"]
    policies = sorted({s.resolved(x)["on_infeasible"] for s in sweeps for x in s.series})
    deadlines = sorted({s.resolved(x)["deadline_days"] for s in sweeps for x in s.series})
    return [
        f"**Model ranges.** The printed formulas give N = {n('cs-v1', 6144)}..{n('cs-v1', 98304)} for v1's "
        f"d_model = 6,144..98,304 (v1 states 1e11..1e15) and N = {n('cs-v2', 1536)}..{n('cs-v2', 24576)} for v2's "
        "d_model = 1,536..24,576 (v2 states 0.75B..24,547B). We keep the formulas and sweep by the N each paper "
        "names: widths 2^k and 3x2^k between the two whose N is nearest to the stated bounds.",
        f"**Deadline.** {', '.join(g(d) for d in deadlines)} days, on_infeasible = {', '.join(policies)}. *extend*: when no layout meets the "
        "deadline, it is doubled until one does (at most 100 years); then every series of the experiment at "
        "that width is re-searched under the longest deadline any of them needed, so curves compare like with "
        "like. Such points are hollow in the figures. *skip*: the point is reported infeasible with the reason.",
        "**Ideal.** The papers' definition: the fewest devices at peak throughput and TDP for the law's compute "
        "C = 6ND/E, no host power, no embodied carbon (`carbon.ideal_carbon`).",
        "**Carbon settings.** Each experiment's settings line below lists its PUE, grid intensity, lifetime "
        "and embodied options (unset ones take data/power.yaml's defaults).",
        f"**Search budget.** Each search runs in a worker capped at {WORKER_MEMORY_GB:g} GB; a search that needs "
        "more (very large batches give billions of candidate layouts) is reported infeasible with that reason.",
    ]


def glossary(doc: Doc) -> None:
    """End ``doc`` with the abbreviations and terms it uses (:mod:`carbonscaling.glossary`)."""
    from ..glossary import terms_used

    used = terms_used(doc.markdown())
    if used:
        doc.h(2, "Glossary", anchor="glossary")
        doc.p("Abbreviations and terms used above (all of them: `carbonscaling glossary`, docs/glossary.md).")
        doc.table(["term", "meaning"], [[t.term, t.meaning] for t in used])


def write_report(res, out: Path, *, title: str = "Experiments") -> None:
    from .. import __version__

    doc = Doc()
    st, t = res.run.stats, res.timings
    doc.h(1, f"{title}: reproduction report")
    doc.p(f"Generated by carbonscaling {__version__} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
          f"Wall time {t.get('total_s', 0):.1f} s with {st['jobs']} worker processes: {st['unique_searches']} "
          f"distinct layout searches ({st['search_calls']} search calls, {st['search_cpu_s']:.1f} CPU-s) for "
          f"{st['points']} points; searches {t.get('searches_s', 0):.1f} s, figures {t.get('figures_s', 0):.1f} s.")
    doc.p("Verdicts: **agrees** = within the stated tolerance at every compared point; **partly** = on part of "
          "the range or part of the criteria; **DISAGREES** = not within tolerance; carbon comparisons pair "
          "points of the same model (same loss) under the same deadline. Each experiment is a YAML scenario "
          "(`carbonscaling/experiments/scenarios/`): copy one, edit it, run `carbonscaling sweep FILE`.")
    if any(sc.plot != "validation" for sc in res.scenarios):
        doc.h(2, "Method")
        doc.ul(method_notes(res.scenarios))
    doc.h(2, "Claims")
    doc.table(["experiment", "paper claims", "we measure", "tolerance", "verdict"],
              [[f"[{c.experiment}](#{c.experiment})", c.claim, c.measured, c.tolerance or "-",
                VERDICT_MARK[c.verdict]] for c in res.claims])
    latency_anchor = None
    for sc in res.scenarios:
        rows = res.run.rows.get(sc.name, [])
        doc.h(2, f"{sc.paper} {sc.figure}: {sc.title}".strip(), anchor=sc.name)
        if sc.description:
            doc.p(sc.description)
        files = res.files.get(sc.name, [])
        for f in files:
            if f.suffix == ".png":
                doc.img(f, f.relative_to(out).as_posix(), sc.title)
        doc.p("Files: " + ", ".join(f"[{f.name}]({f.relative_to(out).as_posix()})" for f in files)
              + f". Scenario: `{sc.name}.yaml`.")
        if sc.plot == "validation":
            doc.p("Full tables, metrics and calibration: `carbonscaling validate --out DIR` "
                  "(carbonscaling.validation); the figures above are drawn by that package.")
        else:
            doc.p(_settings_line(sc))
            doc.table(*series_table(rows))
            latency = latency_finding(rows)
            if latency and latency_anchor:
                latency = (f"Points that missed the {g(sc.base.deadline_days or 90)}-day deadline are hollow; "
                           f"why they miss it: [{latency_anchor}](#{latency_anchor}).")
            elif latency:
                latency_anchor = sc.name
            for note in (latency, ideal_flops_note(rows) if sc.fit else None):
                if note:
                    doc.p(note)
        fits = res.fits.get(sc.name) or {}
        if fits:
            doc.p("Power-law fits `loss = k * CO^-alpha` (least squares on logs, CO in tCO2e, all plotted points):")
            doc.table(["series", "k", "alpha", "R^2", "points", "CO range (tCO2e)"],
                      [[k, g(f.k, 4), g(f.alpha, 4), g(f.r2, 3), f.n, f"{g(f.co_min)}..{g(f.co_max)}"]
                       for k, f in fits.items()])
        mine = [c for c in res.claims if c.experiment == sc.name]
        if mine:
            doc.ul([f"**{VERDICT_MARK[c.verdict]}**: {c.claim} We measure: {c.measured}"
                    + (f" Tolerance: {c.tolerance}." if c.tolerance else "")
                    + (f" Why: {c.note}" if c.note and c.verdict != "agrees" else "") for c in mine])
        if sc.sources:
            doc.p("Sources: " + "; ".join(sc.sources))
    glossary(doc)
    (out / "report.md").write_text(doc.markdown(), encoding="utf-8")
    (out / "report.html").write_text(doc.html(title), encoding="utf-8")
