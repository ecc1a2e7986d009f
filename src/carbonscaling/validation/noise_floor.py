"""Spread of repeated Megatron-Bridge measurements: the floor under any step-time model.

Rows of ``nemo_performance.csv`` that share one description -- model, system, number format
(as the step model reads it: FP8 = FP8-CS, FP8-MX = MXFP8), devices, TP, PP, CP, VP, EP,
microbatch, global batch, sequence length and the MTP label -- and differ only by container
(software release) give a step-time model the same input, so no model of that input can
predict all of them exactly. Over a group with measured times ``m_i``, the constant ``p``
that minimises ``sum_i |p / m_i - 1|`` (hence MAPE) is the weighted median of the ``m_i``
with weights ``1 / m_i``; the MAPE this best per-group constant leaves over all rows (a row
alone in its group contributes 0) is the *noise floor* of the table for MAPE. It is a
property of the data, not a target: a model that describes release-to-release software
changes (recipe options per container) can go below it; :func:`described_key` adds the recipe
options ``throughput.describe_row`` gives a row, and the floor on those groups is the spread
left among rows our description cannot tell apart.
"""

from __future__ import annotations

from collections import defaultdict


def description_key(row: dict) -> tuple:
    """What a step-time model is told about a table row (everything but the container)."""
    from .throughput import PRECISIONS

    mtp = "w/o MTP" if "w/o MTP" in row.get("notes", "") else ""
    return (row["model"], row["system"], PRECISIONS.get(row["precision"], row["precision"]), int(row["gpus"]),
            *(int(float(row[k] or 1)) for k in ("tp", "pp", "cp", "vp", "ep", "mbs", "gbs", "seq_len")), mtp)


def described_key(row: dict, description: tuple | None = None) -> tuple:
    """:func:`description_key` plus the recipe options :func:`throughput.describe_row` sets for the row
    (fused grouped MLP, EP overlap, dispatcher, recompute pin and modules, ETP pin).

    ``description``: the row's ``describe_row`` when the caller has it already; ``None``: described here.
    """
    if description is None:
        from .throughput import describe_row

        description = describe_row(row)
    _, _, o, pins, _ = description
    return (*description_key(row), o.moe_grouped_gemm, o.overlap_ep_comm, o.moe_dispatcher,
            pins.get("recompute"), o.recompute_modules if pins.get("recompute") == "selective" else (),
            pins.get("etp"))


def best_constant(times: list[float]) -> float:
    """The constant prediction with the least MAPE on ``times`` (s): their 1/time-weighted median."""
    pairs = sorted((t, 1.0 / t) for t in times)
    half, acc = 0.5 * sum(w for _, w in pairs), 0.0
    for t, w in pairs:
        acc += w
        if acc >= half:
            return t
    return pairs[-1][0]


def noise_floor(rows: list[dict], key=description_key, keys: list[tuple] | None = None) -> dict:
    """Repeat groups of ``rows`` (table rows with ``step_time_s``) and the MAPE floor they imply.

    ``key``: what makes two rows the same description (:func:`description_key`, or
    :func:`described_key` to count the recipe options as part of it). ``keys``: the rows' keys
    already computed, one per row in order (used instead of ``key``).

    Returns ``groups`` (one dict per group of two or more rows: its description, containers,
    measured step times in s, ``spread`` = max/min - 1, ``floor`` = its best-constant MAPE and
    ``floor_median`` = the MAPE of its plain median) and ``summary``: row and group counts, the
    floor over all rows (``floor``, ``floor_median``), over the rows in repeat groups only, and
    per system.
    """
    if keys is not None and len(keys) != len(rows):
        raise ValueError(f"keys: {len(keys)} given for {len(rows)} rows; one per row")
    by = defaultdict(list)
    for r, k in zip(rows, keys if keys is not None else map(key, rows)):
        by[k].append(r)
    groups, contrib, contrib_med = [], {}, {}
    for key, members in by.items():
        times = [float(r["step_time_s"]) for r in members]
        srt = sorted(times)
        n = len(times)
        median = srt[n // 2] if n % 2 else 0.5 * (srt[n // 2 - 1] + srt[n // 2])
        contrib[key] = sum(abs(best_constant(times) / t - 1.0) for t in times)
        contrib_med[key] = sum(abs(median / t - 1.0) for t in times)
        if n > 1:
            groups.append({"model": key[0], "system": key[1], "precision": key[2], "gpus": key[3],
                           "layout": "TP{} PP{} CP{} VP{} EP{} mb{}".format(*key[4:10]), "gbs": key[10],
                           "seq_len": key[11], "containers": [r["container"] for r in members], "step_s": times,
                           "spread": max(times) / min(times) - 1.0, "floor": contrib[key] / n,
                           "floor_median": contrib_med[key] / n})
    n_rows = len(rows)
    repeated = [k for k, m in by.items() if len(m) > 1]
    in_rep = sum(len(by[k]) for k in repeated)
    per_system = defaultdict(lambda: [0, 0.0])
    for key, members in by.items():
        per_system[key[1]][0] += len(members)
        per_system[key[1]][1] += contrib[key]
    groups.sort(key=lambda g: -g["spread"])
    return {"groups": groups, "summary": {
        "rows": n_rows, "descriptions": len(by), "repeat_groups": len(repeated), "rows_in_repeat_groups": in_rep,
        "floor": sum(contrib.values()) / n_rows if n_rows else None,
        "floor_median": sum(contrib_med.values()) / n_rows if n_rows else None,
        "floor_in_repeat_groups": sum(contrib[k] for k in repeated) / in_rep if in_rep else None,
        "rows_spread_over_10pct": sum(len(g["step_s"]) for g in groups if g["spread"] > 0.10),
        "by_system": {s: v[1] / v[0] for s, v in sorted(per_system.items())}}}
