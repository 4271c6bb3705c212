"""Symbolic Table 1 / eq. 2 / Appendix B / eq. 28 (sympy) agree with the numeric math core."""

import sympy as sp

from rpo.core import derivations as d


def test_symbolic_table1_matches_pair_losses():
    assert d.check_against_pair_losses(trials=10) < 1e-9


def test_appendix_b_dpo_is_bradley_terry():
    assert d.bradley_terry_gap("dpo") == 0
    assert d.bradley_terry_gap("ipo") != 0  # IPO's eq. 2 probability is not DPO's


def test_gibbs_log_odds_of_ipo_and_cpo():
    h = (d.lw - d.rw) - (d.ll - d.rl)
    assert sp.simplify(d.gibbs_log_odds("ipo") - 2 * h / d.beta) == 0
    assert sp.simplify(d.gibbs_log_odds("cpo") - (d.alpha + d.beta) * (d.lw - d.ll)) == 0


def test_eq28_closed_form():
    assert d.closed_form_eta() == sp.Symbol("S", positive=True) / sp.Symbol("N", positive=True)
