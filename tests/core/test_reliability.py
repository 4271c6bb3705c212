"""The reliability tracker's two per-step rules: eq. 7 and the count-aware running Beta-posterior mean
(:func:`rpo.core.em.count_step`), with hand values, the closed form it must equal, and its state."""

import json

import pytest
import torch

from rpo.core.em import count_prior_strength, count_step, ema_step
from rpo.core.reliability import ReliabilityTracker


def test_count_step_hand_values_and_link_to_eq7():
    assert count_prior_strength(0.1) == pytest.approx(9.0)
    # n0 = 9, eta0 = 0.9, one label w = 0.5: (9 * 0.9 + 0.5) / 10 = 0.86, which is eq. 7's step at alpha 0.1
    assert count_step(0.9, 0, 0.5, 1, 9.0) == pytest.approx(0.86)
    assert ema_step(0.9, 0.5, 1, 0.1) == pytest.approx(0.86)
    # after 90 labels, 3 more with sum 0.3: (eta (9 + 90) + 0.3) / 102; eq. 7 would still move by alpha
    assert count_step(0.8, 90, 0.3, 3, 9.0) == pytest.approx((0.8 * 99 + 0.3) / 102)
    assert count_step(0.8, 90, 0.0, 0, 9.0) == 0.8  # no label this step: unchanged


def test_count_rule_is_the_running_posterior_mean():
    """Fed in steps of uneven size, the count rule lands on (n0 eta0 + sum w) / (n0 + N) for every annotator."""
    g = torch.Generator().manual_seed(0)
    tracker = ReliabilityTracker(["a", "b", "c"], eta0=0.9, alpha=0.1, update="count", prior_strength=5.0)
    all_w = {0: [], 1: [], 2: []}
    for step in range(20):
        n = 1 + step % 4
        w = torch.rand(n, generator=g, dtype=torch.float64).tolist()
        ids = [k % 2 for k in range(step, step + n)]  # annotator "c" never labels
        tracker.add(w, ids)
        for wi, k in zip(w, ids):
            all_w[k].append(wi)
        tracker.step()
    for k in (0, 1):
        expected = (5.0 * 0.9 + sum(all_w[k])) / (5.0 + len(all_w[k]))
        assert tracker.eta[k].item() == pytest.approx(expected, abs=1e-12)
    assert tracker.eta[2].item() == 0.9 and tracker.seen == [len(all_w[0]), len(all_w[1]), 0]


def test_count_and_eq7_differ_once_counts_grow():
    ema = ReliabilityTracker(["a"], 0.9, 0.1)
    count = ReliabilityTracker(["a"], 0.9, 0.1, update="count")
    for t in (ema, count):
        for _ in range(2):
            t.add([0.5], [0])
            t.step()
    assert ema.eta.item() == pytest.approx(0.9 * 0.81 + 0.1 * 0.5 * (1 + 0.9))  # two EMA steps
    assert count.eta.item() == pytest.approx((9 * 0.9 + 1.0) / 11)
    assert ema.eta.item() != pytest.approx(count.eta.item())


def test_assigned_eta_is_carried_on_with_the_counts():
    t = ReliabilityTracker(["a"], 0.9, 0.1, update="count", prior_strength=9.0)
    t.add([1.0] * 10, [0] * 10)
    t.step()
    t.eta = torch.tensor([0.7], dtype=torch.float64)  # e.g. an exact refit
    t.add([0.0], [0])
    t.step()
    assert t.eta.item() == pytest.approx((0.7 * 19 + 0.0) / 20) and t.seen == [11]


def test_state_round_trips_exactly_through_json():
    t = ReliabilityTracker(["a", "b"], 0.9, 0.1, update="count")
    t.add([0.123456789, 0.3, 0.987654321], [0, 1, 1])
    t.step()
    state = json.loads(json.dumps(t.state_dict()))
    fresh = ReliabilityTracker(["a", "b"], 0.9, 0.1, update="count")
    fresh.load_state_dict(state)
    assert torch.equal(fresh.eta, t.eta) and fresh.seen == t.seen == [1, 2]
    for tr in (t, fresh):
        tr.add([0.4], [0])
        tr.step()
    assert torch.equal(fresh.eta, t.eta)  # bit-exact after resuming


def test_tracker_errors():
    with pytest.raises(ValueError, match="update must be one of"):
        ReliabilityTracker(["a"], 0.9, 0.1, update="beta")
    with pytest.raises(ValueError, match="prior_strength"):
        ReliabilityTracker(["a"], 0.9, 0.1, update="count", prior_strength=0.0)
    with pytest.raises(ValueError, match="prior_strength"):
        ReliabilityTracker(["a"], 0.9, 0.1, update="count", prior_strength=float("nan"))
    t = ReliabilityTracker(["a"], 0.9, 0.1, update="count")
    with pytest.raises(ValueError, match="no label counts"):
        t.load_state_dict({"names": ["a"], "eta": [0.8]}, source="old.json")
    ema = ReliabilityTracker(["a"], 0.9, 0.1)
    ema.load_state_dict({"names": ["a"], "eta": [0.8]})  # an eq. 7 state from before the counts: still fine
    assert ema.eta.item() == 0.8 and ema.seen == [0]


def test_eq7_tracker_accepts_alpha_one():
    """Table 3's alpha = 1.0 (eta set to the batch mean each step): the count rule's default n0 is 0 there,
    which the EMA tracker must not refuse (a toy-study run failed on this)."""
    from rpo.core.reliability import ReliabilityTracker

    t = ReliabilityTracker(["a"], 0.9, 1.0)
    t.add([0.4, 0.6], [0, 0])
    t.step()
    assert t.eta.tolist() == [0.5]
    import pytest

    with pytest.raises(ValueError, match="count update"):
        ReliabilityTracker(["a"], 0.9, 1.0, update="count")
