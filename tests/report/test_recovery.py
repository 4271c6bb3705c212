import math

import pytest

from rpo.report.recovery import damage_recovered


def test_share_is_ratio_of_mean_paired_differences():
    base = [0.50, 0.52, 0.48, 0.51]
    ceiling = [0.70, 0.73, 0.69, 0.71]
    method = [0.60, 0.62, 0.59, 0.61]  # about half of the damage back
    r = damage_recovered(method, base, ceiling)
    assert r["resolved"] and r["n"] == 4
    assert r["share"] == pytest.approx((0.10 + 0.10 + 0.11 + 0.10) / (0.20 + 0.21 + 0.21 + 0.20))
    assert r["lo"] <= r["share"] <= r["hi"]
    assert damage_recovered(method, base, ceiling) == r  # deterministic


def test_unresolved_damage_gives_no_share():
    r = damage_recovered([0.5, 0.6, 0.4], [0.5, 0.5, 0.5], [0.52, 0.47, 0.51])
    assert not r["resolved"] and math.isnan(r["share"])


def test_shapes_must_pair():
    with pytest.raises(ValueError, match="pair by seed"):
        damage_recovered([0.1], [0.1, 0.2], [0.3, 0.4])
