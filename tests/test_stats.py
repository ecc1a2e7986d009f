"""The one line fit and R^2 (carbonscaling.stats) against hand calculations, and its users."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonscaling.stats import line_fit, loglog_fit, r_squared


def test_line_fit_by_hand():
    # x = 1, 2, 3; y = 2, 4, 5: mean x 2, mean y 11/3, S_xx 2, S_xy 3 -> slope 3/2, intercept 2/3;
    # residuals -1/6, 1/3, -1/6 -> SS_res 1/6; SS_tot 14/3 -> R^2 = 1 - 1/28 = 27/28
    f = line_fit([1, 2, 3], [2, 4, 5])
    assert f.slope == pytest.approx(1.5, rel=1e-15)
    assert f.intercept == pytest.approx(2 / 3, rel=1e-15)
    assert f.r2 == pytest.approx(27 / 28, rel=1e-15)
    assert f.n == 3


def test_loglog_fit_recovers_a_power_law_by_hand():
    # y = 3 x^2 at x = 1, 2, 4: ln y = ln 3 + 2 ln x exactly
    f = loglog_fit([1, 2, 4], [3, 12, 48])
    assert f.slope == pytest.approx(2.0, rel=1e-14)
    assert math.exp(f.intercept) == pytest.approx(3.0, rel=1e-14)
    assert f.r2 == pytest.approx(1.0, rel=1e-14)


def test_r_squared_by_hand_and_degenerate_cases():
    # y = 1, 2, 3 against 1, 2, 4: SS_res 1, SS_tot 2 -> 0.5; a worse-than-mean fit is negative
    assert r_squared([1, 2, 3], [1, 2, 4]) == pytest.approx(0.5)
    assert r_squared([1, 2, 3], [3, 2, 1]) == pytest.approx(1 - 8 / 2)
    assert math.isnan(r_squared([1.0], [1.0]))           # one point
    assert math.isnan(r_squared([2, 2, 2], [1, 2, 3]))   # SS_tot = 0: undefined


def test_line_fit_rejects_what_has_no_line():
    for x, y in (([1.0], [2.0]), ([2, 2, 2], [1, 2, 3]), ([1, 2], [1, 2, 3]), ([], [])):
        with pytest.raises(ValueError):
            line_fit(x, y)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=3, max_size=30))
def test_line_fit_agrees_with_numpy_polyfit(points):
    x, y = (np.array(v) for v in zip(*points))
    if np.ptp(x) < 1e-3:
        return
    f = line_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert f.slope == pytest.approx(slope, rel=1e-7, abs=1e-7)
    assert f.intercept == pytest.approx(intercept, rel=1e-7, abs=1e-6)
    assert math.isnan(f.r2) if np.ptp(y) == 0 else f.r2 <= 1.0 + 1e-12


def test_both_power_law_fits_use_the_one_fit():
    """The validation baseline and the papers' loss fit are the same line through the same points."""
    from carbonscaling.experiments.fit import fit_power_law
    from carbonscaling.validation.metrics import r2_log
    from carbonscaling.validation.regression import fit_loglog

    co, loss = [10.0, 100.0, 1000.0, 1e4], [2.0, 1.8, 1.7, 1.62]
    pl, ref = fit_power_law(co, loss), loglog_fit(co, loss)
    assert (pl.alpha, pl.k, pl.r2) == (-ref.slope, math.exp(ref.intercept), ref.r2)
    flops, hours = [1e21, 1e22, 1e23], [1e4, 8e4, 9e5]
    reg, ref = fit_loglog(flops, hours), loglog_fit(flops, hours)
    assert (reg.slope, reg.intercept) == (ref.slope, ref.intercept)
    assert r2_log([1, 2, 4], [1, 2, 3]) == r_squared(np.log([1, 2, 4]), np.log([1, 2, 3]))
