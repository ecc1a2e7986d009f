"""The documented defaults of the carbon functions are the ones they run with, and the
run's inputs are reported under their own names (a breakdown is read by key)."""

from __future__ import annotations

import pytest

from carbonscaling import hardware
from carbonscaling.carbon import embodied_terms, run_carbon

A100 = hardware.load_system("A100-80GB")


def test_embodied_terms_defaults_are_paper_infrastructure_node_replace():
    default = embodied_terms(A100, 16, 2000.0, lifetime_years=5)
    explicit = embodied_terms(A100, 16, 2000.0, lifetime_years=5, mode="paper", infrastructure=True,
                              allocation="node", lifetime_policy="replace")
    assert default == explicit
    # and each default matters: the alternatives give other numbers
    assert embodied_terms(A100, 16, 2000.0, lifetime_years=5, mode="vendor")["embodied_tco2e"] != pytest.approx(
        default["embodied_tco2e"])
    assert embodied_terms(A100, 16, 2000.0, lifetime_years=5, infrastructure=False)["embodied_tco2e"] < \
        default["embodied_tco2e"]
    assert embodied_terms(A100, 12, 2000.0, lifetime_years=5, allocation="share")["embodied_tco2e"] < \
        embodied_terms(A100, 12, 2000.0, lifetime_years=5)["embodied_tco2e"]       # 1.5 nodes vs 2 charged


@pytest.mark.parametrize("goodput", [1.0, 0.8])
def test_breakdown_reports_the_goodput_setting_and_the_goodput_used(goodput):
    r = run_carbon(None, A100, n_devices=16, duration_h=100.0, utilization=0.5, goodput=goodput)
    b = r.breakdown
    assert b["goodput_setting"] == goodput
    assert b["goodput"] == pytest.approx(goodput)
    assert b["expected_duration_h"] == pytest.approx(100.0 / goodput)
    assert b["n_devices"] == 16 and b["duration_h"] == 100.0 and b["utilization"] == 0.5
