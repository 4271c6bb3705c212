"""rpo.toy.study: what 02_train prints of a training."""

from __future__ import annotations

from rpo.toy.study import summary


def test_summary_rounds_floats_and_keeps_two_annotators_of_a_pool():
    m = {"win_rate": 0.51234, "eta_hat_mean": 0.9, "eta_trajectory_1": [0.9, 0.91], "n": 3}
    m.update({f"eta_hat_{k}": 0.9 for k in range(1, 129)} | {f"refit_eta_{k}": 1.0 for k in range(1, 129)})
    out = summary(m)
    assert out["win_rate"] == 0.512 and out["eta_hat_mean"] == 0.9
    assert {"eta_hat_1", "eta_hat_2", "refit_eta_1", "refit_eta_2"} <= set(out)
    assert "eta_hat_3" not in out and "refit_eta_128" not in out and "eta_trajectory_1" not in out and "n" not in out
