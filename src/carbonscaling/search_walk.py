"""The search's walk over device counts (stage 3b): the fewest devices with a good layout.

Windows of device counts upward from Algorithm 1's ``N_ideal``; in each, the layouts whose
duration bound can meet the deadline are evaluated in order of device count until one fits and
meets it. A walk that finds none reports the fastest fitting layout (branch and bound). The
answer is the one evaluating every layout of every window gives (``EXHAUSTIVE_WALK``, tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .perf.layout import LayoutGrid
from .perf.step import StepResult, evaluate
from .search_space import _combo_grid, _per_combo, _window_rows, durations, grid_for_devices, ideal_devices


@dataclass
class _Walk:
    found: tuple | None = None
    evaluated: int = 0
    best_seen: tuple = (math.inf, 0)
    any_layout: bool = False
    n_stop: int = 0


NO_BEST = (math.inf, 0, 0, 0, 0)  # (duration, window, combination, DP, devices) of the fastest fitting layout
MARGIN = 1 - 1e-9  # bounds are compared after this factor: rounding never drops a layout that matters


def _windows(n_lo: int, n_stop: int):
    """Windows ``[n_lo, n_hi)`` of device counts, each 1.5x (at least 64 more) the last."""
    while n_lo < n_stop:
        n_hi = min(n_stop, max(int(n_lo * 1.5), n_lo + 64))
        yield n_lo, n_hi
        n_lo = n_hi


class _RowBounds:
    """Lower bounds of a window's layouts, from their combination's stage times (see _prune).

    ``loose``: ``tokens / B x (m t_max + (S - t_max) / v)``, the first branch of the
    pipeline time; it defines which layouts the search considers (and whose fastest a failed
    search reports). ``tight``: the whole pipeline time ``max(that, S + (m - 1) t_max / v)``;
    no layout is faster, so layouts above the deadline or above the fastest found so far are
    never evaluated.
    """

    def __init__(self, combos, t_max, t_sum, batch, pins, min_steps, deadline_s, per_combo):
        self.combos, self.t_max, self.t_sum, self.batch, self.pins = combos, t_max, t_sum, batch, pins
        self.min_steps, self.deadline_s = min_steps, deadline_s
        self.per_combo = per_combo
        # The loose bound is at least min_steps t_max / (DP mb): DPs under this floor are never built.
        self.floor = _dp_floor(min_steps * t_max / combos["mb"], deadline_s)
        # The tight bound is at least min_steps S / B (S + (m - 1) t_max / v >= S, and m DP mb <= B) ...
        self.least = min_steps * t_sum / batch * MARGIN
        # ... and at least min_steps (t_max / (DP mb) + (S - t_max) / (v B)).
        self.rest = min_steps * (t_sum - t_max) / (combos["v"] * batch)

    def rows(self, n_lo, n_hi, cap=math.inf):
        """``(combination index, DP, tight bound, any layout in the window)`` of the rows whose
        loose bound meets the deadline, leaving out combinations whose every row's tight bound
        exceeds ``cap``."""
        c, pins = self.combos, self.pins
        only, floor = None, self.floor
        if math.isfinite(cap):
            room = cap / MARGIN - self.rest
            only = (self.least <= cap) & (room > 0)
            floor = np.maximum(floor, _dp_floor(self.min_steps * self.t_max / c["mb"], np.where(only, room, 1.0)))
        idx, dp, had_rows = _window_rows(c, n_lo, n_hi, self.batch, pins, floor, only, self.per_combo)
        per_rank = dp * c["mb"][idx]  # sized as _combo_grid sizes it
        gb = np.full_like(dp, self.batch) if "global_batch" in pins else (self.batch // per_rank) * per_rank
        m = -(-gb // per_rank)
        tm, ts, v = self.t_max[idx], self.t_sum[idx], c["v"][idx]
        loose = self.min_steps / gb * (m * tm + (ts - tm) / v)
        keep = np.flatnonzero(loose <= self.deadline_s)
        gb, m, tm, ts, v = gb[keep], m[keep], tm[keep], ts[keep], v[keep]
        tight = self.min_steps / gb * np.maximum(m * tm + (ts - tm) / v, ts + (m - 1) * tm / v)
        return idx[keep], dp[keep], tight * MARGIN, had_rows


def _walk_windows(model, system, o, c, combos, t_max, t_sum, batch, pins, deadline_s, sizes=None) -> _Walk:
    """Windows of device counts upward from ``N_ideal``: the first one with a layout that fits
    and meets the deadline (any that fits, with ``devices`` pinned).

    Inside a window the layouts that may meet the deadline are evaluated in order of device
    count, in growing chunks, and the walk stops at the first chunk with a good layout: every
    layout with fewer devices has been evaluated by then. When none is good, the fastest
    fitting layout of all windows is found by branch and bound (:func:`_fastest_fitting`).
    """
    sizes = sizes or _per_combo(combos, batch, pins)
    if "devices" in pins:
        return _walk_pinned(model, system, o, c, combos, batch, pins, sizes)
    n_lo = ideal_devices(model, system, deadline_s, o)
    n_stop = int((sizes[0] * np.maximum(sizes[2], 1)).max()) + 1
    walk = _Walk(n_stop=n_stop)
    bounds = _RowBounds(combos, t_max, t_sum, batch, pins, model.train_tokens / model.seq_len, deadline_s, sizes)
    if EXHAUSTIVE_WALK:
        return _walk_exhaustive(model, system, o, c, bounds, n_lo, walk)
    best = NO_BEST
    for w, (lo, hi) in enumerate(_windows(n_lo, n_stop)):
        idx, dp, tight, had_rows = bounds.rows(lo, hi, deadline_s)
        walk.any_layout |= had_rows
        may = np.flatnonzero(tight <= deadline_s)
        if len(may):
            best = _walk_window(model, system, o, c, combos, idx[may], dp[may], w, batch, pins, deadline_s, walk,
                                best)
            if walk.found is not None:
                return walk
    best = _fastest_fitting(model, system, o, c, bounds, n_lo, n_stop, best, walk)
    walk.best_seen = (best[0], best[4])
    return walk


def _dp_floor(need, room) -> np.ndarray:
    """Smallest DP with ``need / DP <= room``, less a margin for rounding (never above the true one)."""
    return np.floor(np.minimum(need / room * MARGIN, 2.0**62)).astype(np.int64)


EXHAUSTIVE_WALK = False  # tests: evaluate every layout of every window (the reference the fast walk must equal)


def _walk_exhaustive(model, system, o, c, bounds: _RowBounds, n_lo, walk: _Walk) -> _Walk:
    """The walk without its shortcuts: every (loose-bound) layout of each window is evaluated;
    the first window with a good layout gives its fewest devices, else the fastest fitting."""
    combos, best = bounds.combos, NO_BEST
    for w, (lo, hi) in enumerate(_windows(n_lo, walk.n_stop)):
        idx, dp, _, had_rows = bounds.rows(lo, hi)
        walk.any_layout |= had_rows
        if len(idx) == 0:
            continue
        dur, ok = _evaluate_rows(model, system, o, c, combos, idx, dp, bounds.batch, bounds.pins)
        walk.evaluated += len(idx)
        devices = (combos["tp"] * combos["cp"] * combos["pp"])[idx] * dp
        good = ok & (dur <= bounds.deadline_s)
        if good.any():
            walk.found = (None, None, None, None, int(devices[good].min()))
            return walk
        best = _better(best, dur, ok, w, idx, dp, devices)
    walk.best_seen = (best[0], best[4])
    return walk


def _walk_pinned(model, system, o, c, combos, batch, pins, sizes) -> _Walk:
    """Every layout at the pinned device count (the deadline is not a constraint then)."""
    walk = _Walk(n_stop=pins["devices"] + 1)
    grid = grid_for_devices(combos, pins["devices"], pins["devices"] + 1, batch, pins, per_combo=sizes)
    if len(grid) == 0:
        return walk
    walk.any_layout = True
    res = _evaluate_chunked(model, system, grid, o, c)
    walk.evaluated += len(grid)
    dur, ok = durations(model, res), res.fits
    if ok.any():
        i = int(np.argmin(np.where(ok, dur, np.inf)))
        walk.best_seen = (float(dur[i]), int(grid.devices[i]))
        walk.found = (grid, res, dur, ok, int(grid.devices[i]))
    return walk


WALK_CHUNK = 2048  # first chunk of a window; each next one doubles (per-call overhead vs wasted work)


def _evaluate_rows(model, system, o, c, combos, idx, dp, batch, pins):
    """Durations and memory fit of the layouts (combination ``idx``, ``dp``)."""
    grid = _combo_grid({k: v[idx] for k, v in combos.items()}, dp, batch, pins)
    res = _evaluate_chunked(model, system, grid, o, c)
    return durations(model, res), res.fits


def _better(best: tuple, dur, ok, w, idx, dp, devices) -> tuple:
    """``best`` or the fastest fitting row, whichever is first in (duration, window, combination,
    DP) order: the order in which evaluating whole windows one after another would find them."""
    cand = np.flatnonzero(ok)
    if len(cand) == 0:
        return best
    w = np.broadcast_to(w, dur.shape)
    j = cand[np.lexsort((dp[cand], idx[cand], w[cand], dur[cand]))[0]]
    return min(best, (float(dur[j]), int(w[j]), int(idx[j]), int(dp[j]), int(devices[j])))


def _walk_window(model, system, o, c, combos, idx, dp, w, batch, pins, deadline_s, walk: _Walk, best) -> tuple:
    """Evaluate one window's layouts by device count until one fits and meets the deadline.

    Sets ``walk.found`` (only its device count is used) when one does; returns ``best``
    updated with the fastest fitting layout evaluated.
    """
    devices = (combos["tp"] * combos["cp"] * combos["pp"])[idx] * dp
    order = np.argsort(devices, kind="stable")
    start, size = 0, WALK_CHUNK
    while start < len(order):
        pos = order[start:start + size]
        start, size = start + len(pos), 2 * size
        dur, ok = _evaluate_rows(model, system, o, c, combos, idx[pos], dp[pos], batch, pins)
        walk.evaluated += len(pos)
        good = ok & (dur <= deadline_s)
        if good.any():
            walk.found = (None, None, None, None, int(devices[pos][good].min()))
            return best
        best = _better(best, dur, ok, w, idx[pos], dp[pos], devices[pos])
    return best


GROW = 1.5  # each pass of the branch and bound, while nothing fits yet, looks this much further


def _fastest_fitting(model, system, o, c, bounds: _RowBounds, n_lo, n_stop, best, walk: _Walk) -> tuple:
    """The fastest fitting layout among all windows' (loose-bound) layouts, when none meets the
    deadline: branch and bound over the tight bound, starting from the walk's ``best``.

    Layouts with a tight bound up to ``lo`` have been evaluated; each pass evaluates, in
    bound order, those up to ``cap`` until the next bound exceeds the best duration found,
    and stops once the best is below ``cap``. While nothing fits, ``cap`` grows geometrically
    up to a bound no layout exceeds.
    """
    if n_lo >= n_stop:  # the ideal device count already exceeds every layout: nothing to search
        return best
    combos, lo = bounds.combos, bounds.deadline_s
    tm, ts, mb, B = bounds.t_max, bounds.t_sum, combos["mb"], bounds.batch
    # No layout's pipeline time exceeds (m t_max + S) per step, m <= B + 1 microbatches of >= mb sequences.
    ceiling = float(np.max(bounds.min_steps * np.maximum((tm + ts) / mb, ((B + 1) * tm + ts) / B)))
    cap = best[0] if math.isfinite(best[0]) else lo * GROW
    while True:
        parts = []
        for w, (a, b) in enumerate(_windows(n_lo, n_stop)):
            idx, dp, tight, _ = bounds.rows(a, b, cap)
            sel = np.flatnonzero((tight > lo) & (tight <= cap))
            parts.append((np.full(len(sel), w), idx[sel], dp[sel], tight[sel]))
        w, idx, dp, tight = (np.concatenate(x) for x in zip(*parts))
        order = np.argsort(tight, kind="stable")
        start, size = 0, WALK_CHUNK
        while start < len(order) and tight[order[start]] <= best[0]:
            pos = order[start:start + size]
            start, size = start + len(pos), 2 * size
            dur, ok = _evaluate_rows(model, system, o, c, combos, idx[pos], dp[pos], bounds.batch, bounds.pins)
            walk.evaluated += len(pos)
            devices = (combos["tp"] * combos["cp"] * combos["pp"])[idx[pos]] * dp[pos]
            best = _better(best, dur, ok, w[pos], idx[pos], dp[pos], devices)
        if best[0] <= cap or cap >= ceiling:  # every layout that could be faster has been evaluated
            return best
        lo, cap = cap, (best[0] if math.isfinite(best[0]) else cap * GROW)



CHUNK = 250_000  # layouts per evaluate call: bounds peak memory (~1 GB) on huge windows


def _evaluate_chunked(model, system, grid: LayoutGrid, o, c) -> StepResult:
    if len(grid) <= CHUNK:
        return evaluate(model, system, grid, o, c)
    parts = [evaluate(model, system, grid.take(slice(i, i + CHUNK)), o, c) for i in range(0, len(grid), CHUNK)]
    return StepResult(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in StepResult.__dataclass_fields__})
