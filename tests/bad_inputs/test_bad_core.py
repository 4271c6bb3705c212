"""Bad input to the math core (pure torch): every case an error of the named type whose message names the
argument, never a NaN or an eta outside [0, 1] returned in silence."""

from __future__ import annotations

import math

import pytest
import torch

from rpo.core.em import (
    e_step,
    e_step_and_loss,
    em_operator,
    ema_update,
    fixed_point_eta,
    full_update,
    init_eta,
    prior_log_odds,
    rpo_loss,
)
from rpo.core.log_odds import gibbs_log_odds
from rpo.core.losses import pair_losses
from rpo.core.reliability import ReliabilityTracker
from rpo.core.stats import t_interval

B = torch.ones(4)
IDS = torch.zeros(4, dtype=torch.long)
ETA = torch.tensor([0.9], dtype=torch.float64)

# (case id, call, exception type, words the message must hold)
CASES = [
    ("ema-w-above-one", lambda: ema_update(ETA, torch.full((4,), 2.0), IDS, 0.1), ValueError, ["w must lie in [0, 1]"]),
    ("ema-w-inf", lambda: ema_update(ETA, torch.full((4,), math.inf), IDS, 0.1), ValueError, ["w must lie in [0, 1]"]),
    ("ema-w-nan", lambda: ema_update(ETA, torch.full((4,), math.nan), IDS, 0.1), ValueError, ["w contains NaN"]),
    ("ema-alpha-nan", lambda: ema_update(ETA, 0.5 * B, IDS, math.nan), ValueError, ["alpha", "nan"]),
    ("ema-alpha-zero", lambda: ema_update(ETA, 0.5 * B, IDS, 0.0), ValueError, ["alpha must be in (0, 1]"]),
    (
        "ema-float-ids",
        lambda: ema_update(ETA, 0.5 * B, IDS.float(), 0.1),
        ValueError,
        ["annotator ids must be integers"],
    ),
    ("ema-id-out-of-range", lambda: ema_update(ETA, 0.5 * B, IDS + 1, 0.1), ValueError, ["must lie in [0, 1)"]),
    ("full-w-negative", lambda: full_update(-B, IDS, 1), ValueError, ["w must lie in [0, 1]"]),
    ("full-no-labels", lambda: full_update(0.5 * B, IDS, 2), ValueError, ["annotators [1] have no labels"]),
    ("rpo-loss-w-above-one", lambda: rpo_loss(B, 2 * B, 3 * B), ValueError, ["w must lie in [0, 1]"]),
    ("rpo-loss-objective", lambda: rpo_loss(B, B, 0.5 * B, "kl"), ValueError, ["objective must be one of"]),
    ("e-step-eta-float", lambda: e_step(B, 2 * B, 0.9), TypeError, ["eta must be a torch.Tensor, got float"]),
    ("e-step-eta-list", lambda: e_step(B, 2 * B, [0.9] * 4), TypeError, ["eta must be a torch.Tensor, got list"]),
    ("e-step-shapes", lambda: e_step(B, torch.ones(3), 0.9 * B), ValueError, ["mismatched shapes"]),
    ("e-step-eta-above-one", lambda: e_step(B, B, 1.5 * B), ValueError, ["eta must lie in [0, 1]"]),
    ("fused-eta-nan", lambda: e_step_and_loss(B, B, torch.full((4,), math.nan)), ValueError, ["eta contains NaN"]),
    (
        "loss-beta-inf",
        lambda: pair_losses("dpo", -B, -2 * B, B, B, -B, -B, beta=math.inf),
        ValueError,
        ["beta must be a finite number, got inf"],
    ),
    ("loss-beta-nan", lambda: pair_losses("simpo", -B, -2 * B, B, B, beta=math.nan), ValueError, ["beta", "nan"]),
    (
        "loss-beta-string",
        lambda: pair_losses("dpo", -B, -2 * B, B, B, -B, -B, beta="0.1"),
        ValueError,
        ["beta", "'0.1'"],
    ),
    (
        "loss-gamma-nan",
        lambda: pair_losses("simpo", -B, -2 * B, B, B, beta=1.0, gamma=math.nan),
        ValueError,
        ["gamma must be a finite number"],
    ),
    (
        "loss-cpo-alpha-nan",
        lambda: pair_losses("cpo", -B, -2 * B, B, B, beta=1.0, cpo_alpha=math.nan),
        ValueError,
        ["cpo_alpha"],
    ),
    (
        "log-odds-gamma-inf",
        lambda: gibbs_log_odds("simpo", -B, -2 * B, B, B, beta=1.0, gamma=math.inf),
        ValueError,
        ["gamma", "inf"],
    ),
    ("loss-unknown", lambda: pair_losses("kto", -B, -B, B, B, beta=1.0), ValueError, ["unknown preference loss 'kto'"]),
    (
        "loss-no-reference",
        lambda: pair_losses("dpo", -B, -B, B, B, beta=1.0),
        ValueError,
        ["dpo needs ref_chosen_logps"],
    ),
    (
        "loss-zero-length",
        lambda: pair_losses("simpo", -B, -B, 0 * B, B, beta=1.0),
        ValueError,
        ["lengths must be positive"],
    ),
    (
        "loss-nan-logps",
        lambda: pair_losses("simpo", -B * math.nan, -B, B, B, beta=1.0),
        ValueError,
        ["chosen_logps contains NaN"],
    ),
    ("init-eta-fractional-k", lambda: init_eta(2.5), ValueError, ["num_annotators must be an integer, got 2.5"]),
    ("init-eta-half-open", lambda: init_eta(2, 1.0), ValueError, ["eta0 must be in [0.5, 1)"]),
    ("prior-nan", lambda: prior_log_odds(math.nan), ValueError, ["eta must lie in [0, 1], got nan"]),
    ("em-operator-2d", lambda: em_operator(torch.ones(2, 2) * 0.5, 0.9), ValueError, ["p_star must have shape (N,)"]),
    ("fixed-point-no-iteration", lambda: fixed_point_eta(B, IDS, 1, max_iter=0), ValueError, ["max_iter >= 1"]),
    ("fixed-point-tol-nan", lambda: fixed_point_eta(B, IDS, 1, tol=math.nan), ValueError, ["tol >= 0", "nan"]),
    ("t-interval-confidence", lambda: t_interval([1.0, 2.0, 3.0], 1.5), ValueError, ["confidence must lie in (0, 1)"]),
    ("tracker-no-annotators", lambda: ReliabilityTracker([], 0.9, 0.1), ValueError, ["num_annotators must be >= 1"]),
    (
        "tracker-state-eta-out-of-range",
        lambda: ReliabilityTracker(["a"], 0.9, 0.1).load_state_dict({"names": ["a"], "eta": [1.5]}),
        ValueError,
        ["eta must lie in [0, 1], got 1.5"],
    ),
]


@pytest.mark.parametrize("call, error, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_core_names_the_problem(call, error, words):
    with pytest.raises(error) as e:
        call()
    for word in words:
        assert word in str(e.value), (word, str(e.value))
