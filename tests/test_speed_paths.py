"""The search's shortcuts give exactly what the full model gives.

`perf.step.memory_fit` and `stage_bounds` (what pruning reads) against `evaluate`'s fields, and
`perf.groups.group_rows` against `np.unique`, on random grids of real catalog models.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonscaling.hardware import load_system
from carbonscaling.perf.groups import group_rows
from carbonscaling.perf.layout import RL_AUTO, TrainingOptions
from carbonscaling.perf.step import evaluate, memory_fit, stage_bounds
from carbonscaling.scaling import named_model
from carbonscaling.search import _check_pinned, _combo_grid, dp_limit, inner_combos


@pytest.mark.parametrize("model,device,opts", [
    ("llama3.1-70b", "H100", TrainingOptions()),
    ("mixtral-8x7b", "H100", TrainingOptions(precision="fp8")),
    ("deepseek-v3", "H100", TrainingOptions()),
    ("bloom-176b", "A100-80GB", TrainingOptions(ep_convention="cs-v1", flexible_sharding=True)),
    ("nemotron-3-nano", "B200", TrainingOptions()),
])
def test_pruning_helpers_equal_evaluate(model, device, opts):
    m, system = named_model(model), load_system(device)
    combos = inner_combos(m, _check_pinned({}, m, opts), opts, "uneven", system)
    dp = dp_limit(combos, m.batch_sequences, {})
    keep = np.flatnonzero(dp >= 1)[::7]  # a spread of combinations, at their largest and smallest DP
    for dps in (dp[keep], np.maximum(1, dp[keep] // 5)):
        pick = {k: v[keep] for k, v in combos.items()}
        grid = _combo_grid(pick, dps, m.batch_sequences, {})
        full = evaluate(m, system, grid, opts)
        fits, rl = memory_fit(m, system, grid, opts)
        t_max, t_sum, fits2 = stage_bounds(m, system, grid, opts)
        assert np.array_equal(fits, full.fits) and np.array_equal(fits2, full.fits)
        assert np.array_equal(rl, full.recompute_layers)
        assert np.array_equal(t_max, full.stage_max_s) and np.array_equal(t_sum, full.stage_sum_s)
        assert opts.legacy or (pick["rl"] == RL_AUTO).any()  # the recompute-to-fit rows are exercised


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 70), st.sampled_from([0, 1, 2**33, 7])),
                min_size=1, max_size=60))
def test_group_rows_equals_unique(rows):
    cols = [np.array(c, dtype=np.int64) for c in zip(*rows)]
    first, inverse = group_rows(*cols)
    _, ref_first, ref_inverse = np.unique(np.stack(cols, 1), axis=0, return_index=True, return_inverse=True)
    assert np.array_equal(first, ref_first) and np.array_equal(inverse, ref_inverse.reshape(-1))
