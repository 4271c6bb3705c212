"""The ``pool`` layout: K annotators (up to 256) with reliabilities from the stated distribution, each
labelling a disjoint share, and its bad inputs."""

import numpy as np
import pytest

from rpo import data as D
from rpo.data import noise


def clean_pairs(n):
    return [{"prompt": f"p{i}", "chosen": f"good{i}", "rejected": f"bad{i}"} for i in range(n)]


def test_pool_reliabilities_follow_the_stated_distribution():
    eta = D.pool_reliabilities(256, seed=0)
    assert eta.shape == (256,) and np.array_equal(eta, D.pool_reliabilities(256, seed=0))
    assert not np.array_equal(eta, D.pool_reliabilities(256, seed=1))
    assert eta.min() >= noise.POOL_TAIL[0] and eta.max() <= noise.POOL_RELIABLE[1]
    majority = (eta >= noise.POOL_RELIABLE[0]).mean()
    # 256 draws at 3/4: within 4 standard deviations (0.027 each)
    assert abs(majority - noise.POOL_MAJORITY) < 4 * np.sqrt(0.75 * 0.25 / 256)


def test_pool_layout_deals_disjoint_shares_with_measured_truth():
    pairs = clean_pairs(3200)
    ds = D.apply_layout(pairs, "pool", num_annotators=32, pool_seed=3, seed=1)
    assert len(ds) == 3200 and sorted(set(ds["prompt"])) == sorted(p["prompt"] for p in pairs)  # disjoint, complete
    names = noise.pool_names(32)
    assert sorted(set(ds["annotator"])) == names == sorted(names)  # zero-padded: sorted order is the pool order
    counts = {n: ds["annotator"].count(n) for n in names}
    assert set(counts.values()) == {100}
    truth = D.true_reliability(ds)
    drawn = D.pool_reliabilities(32, seed=3)
    measured = np.array([truth[n] for n in names])
    # measured agreement is a binomial draw around each annotator's eta (100 labels each)
    assert np.all(np.abs(measured - drawn) <= 4 * np.sqrt(drawn * (1 - drawn) / 100) + 0.011)
    assert np.corrcoef(measured, drawn)[0, 1] > 0.9
    flipped = np.array(ds["is_flipped"])
    assert np.array_equal(flipped, np.array(ds["chosen"]) != np.array(ds["true_chosen"]))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(num_annotators=257), r"\[1, 256\]"),
        (dict(num_annotators=0), r"\[1, 256\]"),
        (dict(num_annotators=2.5), "integer"),
        (dict(), "needs num_annotators"),
        (dict(num_annotators=4, rate=0.2), "leave it at 0"),
        (dict(num_annotators=11), "larger than the data"),
    ],
)
def test_pool_bad_inputs(kwargs, word):
    with pytest.raises(ValueError, match=word):
        D.apply_layout(clean_pairs(10), "pool", **kwargs)
