"""The audit's estimator without any model: exact EM at a fixed witness, eq. 3's temperature, the bootstrap,
the synthetic set with known flips. Milliseconds to a second each."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rpo.audit.estimate import bootstrap_eta, fit, marginal_log_likelihood
from rpo.core.em import fixed_point_eta


def calibrated_witness(n_per=2000, etas=(0.95, 0.8, 0.6), spread=3.0, seed=0):
    """Lemma 4.1's world: a pair's latent preference agrees with its first response with probability
    sigmoid(t), t ~ N(0, spread^2); annotator k labels the latent preference right with probability eta_k.
    ``d`` = the calibrated log-odds that the observed label is the latent one. Returns d, ids, z, true eta."""
    g = torch.Generator().manual_seed(seed)
    k = len(etas)
    ids = torch.arange(k).repeat_interleave(n_per)
    t = spread * torch.randn(k * n_per, generator=g, dtype=torch.float64)
    first = torch.rand(k * n_per, generator=g, dtype=torch.float64) < torch.sigmoid(t)  # latent: first > second
    z = torch.rand(k * n_per, generator=g, dtype=torch.float64) < torch.tensor(etas, dtype=torch.float64)[ids]
    observed_first = first == z  # the label names the first response as better
    d = torch.where(observed_first, t, -t)
    true = torch.stack([z[ids == j].double().mean() for j in range(k)])
    return d, ids, z, true


def test_uncalibrated_fit_is_fixed_point_eta():
    d, ids, _, _ = calibrated_witness(300)
    f = fit(d, ids, 3, calibrate=False)
    eta, w, it = fixed_point_eta(d, ids, 3, 0.9)
    assert f.temperature == 1.0 and f.iterations == it
    assert torch.allclose(f.eta, eta) and torch.allclose(f.w, w)


def test_calibrated_witness_recovers_eta_and_keeps_its_scale():
    """Theorem 4.2 on data: from a calibrated witness, EM finds the true eta and eq. 3 keeps s near 1."""
    d, ids, _, true = calibrated_witness()
    f = fit(d, ids, 3)
    assert abs(math.log2(f.temperature)) < 0.25
    assert (f.eta - true).abs().max() < 0.03


def test_underconfident_witness_is_rescaled_and_raw_em_overstates_eta():
    """The same evidence divided by 4 (a witness that ranks as well but doubts): the temperature gives the
    scale back; eq. 4 on the raw log-odds lets EM push the reliable annotator's eta up."""
    d, ids, _, true = calibrated_witness()
    weak = d / 4
    cal = fit(weak, ids, 3)
    raw = fit(weak, ids, 3, calibrate=False)
    assert 3.0 < cal.temperature < 5.5
    assert (cal.eta - true).abs().max() < 0.03
    assert raw.eta[0] - true[0] > 0.03  # overstated
    assert cal.log_likelihood > marginal_log_likelihood(weak, ids, raw.eta)


def test_w_ranks_pairs_within_an_annotator_as_d_does():
    d, ids, _, _ = calibrated_witness(500)
    f = fit(d / 3, ids, 3)
    for k in range(3):
        m = ids == k
        order = torch.argsort(d[m])
        assert (torch.diff(f.w[m][order]) >= 0).all()


def test_uninformative_witness_keeps_the_start():
    """Remark E.1: d = 0 everywhere leaves eta at its start, and no temperature is fitted."""
    ids = torch.tensor([0, 0, 1, 1, 1])
    f = fit(torch.zeros(5), ids, 2, eta0=0.9)
    assert f.temperature == 1.0 and torch.allclose(f.eta, torch.full((2,), 0.9, dtype=torch.float64))
    assert torch.allclose(f.w, torch.full((5,), 0.9, dtype=torch.float64))


def test_marginal_log_likelihood_is_eq3():
    d = torch.tensor([2.0, -1.0, 0.5])
    ids = torch.tensor([0, 1, 1])
    eta = torch.tensor([0.9, 0.6], dtype=torch.float64)
    s = torch.sigmoid(d.double())
    direct = torch.log(s * eta[ids] + (1 - s) * (1 - eta[ids])).sum()
    assert marginal_log_likelihood(d, ids, eta) == pytest.approx(float(direct), abs=1e-12)


def test_bootstrap_interval_covers_the_estimate_is_seeded_and_shrinks_with_n():
    d, ids, _, _ = calibrated_witness(400)
    f = fit(d, ids, 3)
    low, high = bootstrap_eta(d, ids, 3, f.eta, reps=300, seed=1)
    assert ((low <= f.eta) & (f.eta <= high)).all() and (high - low > 0).all()
    again = bootstrap_eta(d, ids, 3, f.eta, reps=300, seed=1)
    assert torch.equal(low, again[0]) and torch.equal(high, again[1])
    small = calibrated_witness(50)
    fs = fit(small[0], small[1], 3)
    lo_s, hi_s = bootstrap_eta(small[0], small[1], 3, fs.eta, reps=300, seed=1)
    assert ((hi_s - lo_s) > (high - low)).all()
    # held-in-memory budget only splits the resamples into chunks: the spread stays the same
    lo_c, hi_c = bootstrap_eta(d, ids, 3, f.eta, reps=300, seed=1, budget=5000)
    assert torch.allclose(hi_c - lo_c, high - low, atol=0.02)


def test_bootstrap_of_an_absent_annotator_is_nan():
    low, high = bootstrap_eta(torch.tensor([1.0, -1.0]), torch.tensor([0, 0]), 2, torch.tensor([0.8, 0.9]), reps=20)
    assert not math.isnan(low[0]) and math.isnan(low[1]) and math.isnan(high[1])


@pytest.mark.parametrize("rule", ["case", "sort", "shift"])
def test_known_flips_has_its_rates_and_hides_the_truth(rule):
    from rpo.audit import known_flips
    from rpo.data import true_reliability

    ds = known_flips(1200, seed=3, rule=rule)
    rel = true_reliability(ds)
    assert sorted(rel) == ["a1", "a2", "a3"]
    for name, rate in zip(("a1", "a2", "a3"), (0.05, 0.2, 0.4)):
        assert abs((1 - rel[name]) - rate) < 4 * math.sqrt(rate * (1 - rate) / 400)
    assert all(c != r for c, r in zip(ds["chosen"], ds["rejected"]))
    flipped = np.asarray(ds["is_flipped"])
    assert all((c == tc) != f for c, tc, f in zip(ds["chosen"], ds["true_chosen"], flipped))
    assert len(set(ds["annotator"][:30])) == 3  # rows of the annotators mixed, not grouped
