"""The mutation-sampling tool's statistics (benchmarks/mutation_sample.py): the exact binomial
interval against its closed forms, and the stratified, seeded sample."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "mutation_sample", Path(__file__).resolve().parents[1] / "benchmarks" / "mutation_sample.py")
ms = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ms)


@pytest.mark.parametrize("n", [1, 10, 80])
def test_clopper_pearson_closed_forms_at_the_ends(n):
    # k = 0: upper = 1 - (alpha/2)^(1/n); k = n: lower = (alpha/2)^(1/n)
    lo, hi = ms.clopper_pearson(0, n)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-9)
    lo, hi = ms.clopper_pearson(n, n)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / n), abs=1e-9)


def test_clopper_pearson_inside():
    lo, hi = ms.clopper_pearson(54, 80)
    assert lo < 54 / 80 < hi
    # the interval's ends are where the tail probabilities are 2.5 %
    assert 1 - ms._binom_cdf(53, 80, lo) == pytest.approx(0.025, abs=1e-6)
    assert ms._binom_cdf(54, 80, hi) == pytest.approx(0.025, abs=1e-6)
    assert ms.clopper_pearson(54, 80) == pytest.approx((0.561, 0.776), abs=1e-3)


def test_stratified_sample_is_proportional_seeded_and_covers_every_file():
    mutants = [("a", i) for i in range(700)] + [("b", i) for i in range(290)] + [("c", i) for i in range(10)]
    picked = ms.stratified_sample(mutants, 80, seed=15, min_per_file=3)
    per = Counter(f for f, _ in picked)
    assert sum(per.values()) == 80 and per["c"] == 3         # the floor for a small file
    assert per["a"] in (54, 55) and per["b"] in (22, 23)       # 700 and 290 / 990 of the other 77
    assert len(set(picked)) == 80
    assert picked == ms.stratified_sample(mutants, 80, seed=15, min_per_file=3)
    assert picked != ms.stratified_sample(mutants, 80, seed=16, min_per_file=3)
