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


def test_witness_of_a_pool_scores_flips_drawn_from_the_pools_own_reliabilities():
    """A pool's rate is 0 (each annotator draws its own): the witness must still score its flips, with the
    run's pool, not return NaN or fail for want of the pool's size."""
    import math
    from types import SimpleNamespace

    import torch

    from rpo.pipeline.spec import config
    from rpo.toy.settings import TrainSettings
    from rpo.toy.study import _witness

    pairs = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "true_margin": 1.0} for i in range(400)]
    seen = {}

    class Trainer:  # an oracle witness: d (eq. 2's log-odds of the label) < 0 exactly where it is flipped
        def log_odds(self, data):
            seen["annotators"] = set(data["annotator"])
            d = torch.tensor([-1.0 if c.startswith("bad") else 1.0 for c in data["chosen"]])
            return d, torch.zeros(len(d), dtype=torch.long)

    cfg = config(layout="pool", annotators=8, noise=0.0)
    settings = TrainSettings(max_steps=5, batch_size=8, n_confidence=300)
    auroc = _witness(SimpleNamespace(train=pairs), cfg, 0, settings, Trainer())
    assert not math.isnan(auroc) and auroc == 1.0
    assert len(seen["annotators"]) == 8
