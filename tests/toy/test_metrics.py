"""Toy metrics: accuracy, win rate, reliability error, AUROC, intervals, log-probs."""

import math

import numpy as np
import pytest
import torch

from rpo.toy import metrics as M
from rpo.toy import world as W

MINI = W.WorldConfig(
    seed=3,
    n_train_prompts=48,
    n_test_prompts=16,
    n_heldout_prompts=8,
    samples_per_prompt=3,
    sft_steps=25,
    sft_batch_size=16,
    model_kwargs={"hidden_size": 32, "num_layers": 1, "num_heads": 2},
)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return W.build_world(MINI, cache_dir=tmp_path_factory.getbasetemp() / "worlds", progress=False)


def test_win_rate_ties_count_half():
    prompts = ["rev:abc="] * 4
    a = ["cba", "cbx", "xxx", "cba"]
    b = ["cbx", "cba", "xxx", "cba"]  # win, loss, tie, tie
    assert M.win_rate(prompts, a, b) == pytest.approx(0.5)
    assert M.win_rate(prompts[:2], a[:2], ["zzz", "zzz"]) == 1.0
    with pytest.raises(ValueError, match="3 A and 4 B"):
        M.win_rate(prompts, a[:3], b)


def test_flag_auroc():
    flipped = [True, True, False, False, False]
    assert M.flag_auroc([0.1, 0.2, 0.9, 0.8, 0.95], flipped) == 1.0
    assert M.flag_auroc([0.9, 0.8, 0.1, 0.2, 0.15], flipped) == 0.0
    assert M.flag_auroc([0.5] * 5, flipped) == 0.5
    assert math.isnan(M.flag_auroc([0.2, 0.3], [False, False]))
    with pytest.raises(ValueError, match="shape"):
        M.flag_auroc([0.1], flipped)


def test_reliability_error():
    assert M.reliability_error({"a1": 0.9, "a2": 0.65}, {"a1": 1.0, "a2": 0.6}) == pytest.approx(
        {"a1": 0.1, "a2": 0.05}
    )
    assert M.reliability_error([0.7], [0.8]) == pytest.approx({0: 0.1})
    with pytest.raises(ValueError, match="a2"):
        M.reliability_error({"a1": 0.9}, {"a1": 1.0, "a2": 0.6})


def test_mean_ci():
    m, h = M.mean_ci([1, 2, 3, 4, 5])
    assert m == 3.0 and h == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-5)
    assert math.isnan(M.mean_ci([1.0])[1])


def test_sequence_logps_padding_invariant(mini):
    model, tok = mini.load_reference()
    prompts, comps = ["rev:abcdef=", "add:1+2="], ["fedcba", "3"]
    lp, n = M.sequence_logps(model, tok, prompts, comps)
    assert n.tolist() == [7, 2]  # completion tokens + eos
    for i in range(2):
        lp1, _ = M.sequence_logps(model, tok, prompts[i : i + 1], comps[i : i + 1])
        assert lp1.item() == pytest.approx(lp[i].item(), abs=1e-4)
    # by hand for the short one
    ids = tok("add:1+2=3", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    manual = logits[7, ids[8]] + logits[8, ids[9]]
    assert lp[1].item() == pytest.approx(manual.item(), abs=1e-4)


def test_preference_accuracy(mini):
    model, tok = mini.load_reference()
    ref, _ = mini.load_reference()
    assert M.preference_accuracy(model, tok, mini.test, reference=ref) == 0.5  # pi == pi_ref: all ties
    acc = M.preference_accuracy(model, tok, mini.test)
    swapped = [{**p, "chosen": p["rejected"], "rejected": p["chosen"]} for p in mini.test]
    assert M.preference_accuracy(model, tok, swapped) == pytest.approx(1 - acc)
    # hidden truth wins over the (possibly flipped) visible labels
    hidden = [{**s, "true_chosen": p["chosen"], "true_rejected": p["rejected"]} for s, p in zip(swapped, mini.test)]
    assert M.preference_accuracy(model, tok, hidden) == pytest.approx(acc)


def test_generation_quality(mini):
    model, tok = mini.load_reference()
    own = [s for ss in W.sample_responses(model, tok, mini.heldout, n=2, seed=3) for s in ss]
    gq = M.generation_quality(model, tok, mini.heldout, reference_responses=own, n=2, seed=3)
    assert gq["win_rate"] == 0.5  # identical samples: every comparison a tie
    rewards = [W.score(p, s) for p, s in zip([p for p in mini.heldout for _ in range(2)], own)]
    assert gq["mean_reward"] == pytest.approx(np.mean(rewards))
    perfect = [W.answer(p) for p in mini.heldout for _ in range(2)]
    gq2 = M.generation_quality(model, tok, mini.heldout, reference_responses=perfect, n=2, seed=3)
    assert gq2["win_rate"] <= 0.5 and gq2["win_rate"] == pytest.approx(gq2["exact"] / 2)
    assert M.generation_quality(model, tok, mini.heldout)["win_rate"] is None


def test_eta_agreement_ranks_and_places_the_annotators():
    import numpy as np
    import pytest

    from rpo.toy.metrics import eta_agreement

    truth = [0.6, 0.7, 0.8, 0.95]
    exact = eta_agreement(truth, truth)
    assert exact == {"spearman": 1.0, "mae": 0.0, "worst": 0.0}
    shifted = eta_agreement([t + 0.05 for t in truth], truth)  # the same order, every one 0.05 too high
    assert (
        shifted["spearman"] == 1.0 and shifted["mae"] == pytest.approx(0.05) and shifted["worst"] == pytest.approx(0.05)
    )
    swapped = eta_agreement([0.7, 0.6, 0.8, 0.95], truth)
    assert swapped["spearman"] == pytest.approx(0.8) and swapped["worst"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shape"):
        eta_agreement(np.ones(3), np.ones(4))
