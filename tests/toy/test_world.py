"""The toy world: oracle, prompts, pairs, a miniature built world (determinism, cache, splits)."""

import random

import pytest
import torch

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


@pytest.fixture(scope="session")
def world_cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "worlds"


@pytest.fixture(scope="session")
def mini(world_cache):
    return W.build_world(MINI, cache_dir=world_cache, progress=False)


# ----------------------------------------------------------------------------- oracle


@pytest.mark.parametrize(
    "prompt, ans",
    [("rev:abcd=", "dcba"), ("srt:dbca=", "abcd"), ("add:23+45=", "68"), ("add:99+99=", "198"), ("srt:aab=", "aab")],
)
def test_answer(prompt, ans):
    assert W.answer(prompt) == ans
    assert W.score(prompt, ans) == 1.0


def test_score_partial_credit():
    assert W.score("rev:abcd=", "dcbx") == 0.75  # 3 of 4 positions
    assert W.score("rev:abcd=", "dcbaa") == pytest.approx(4 / 5)  # too long: divide by the longer
    assert W.score("rev:abcd=", "dc") == 0.5  # too short
    assert W.score("add:23+45=", "86") == 0.0
    assert W.score("rev:abcd=", "") == 0.0
    assert W.score("rev:abcd=", "  dcba \n") == 1.0  # whitespace ignored


def test_score_chat_messages():
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "srt:cab="}]
    assert W.score(prompt, [{"role": "assistant", "content": "abc"}]) == 1.0
    assert W.score(prompt, "acb") == pytest.approx(1 / 3)


@pytest.mark.parametrize("bad", ["hello", "rev:abc", "mul:2*3=", "add:2-3=", [{"role": "system", "content": "x"}]])
def test_score_rejects_foreign_prompts(bad):
    with pytest.raises(ValueError, match="prompt|user message"):
        W.score(bad, "x")


def test_prompts_short_and_answers_short():
    rng = random.Random(0)
    for task in W.TASKS:
        for _ in range(200):
            p = W.make_prompt(task, rng)
            assert len(p) < 40 and 0 < len(W.answer(p)) < 20
    with pytest.raises(ValueError, match="unknown task"):
        W.make_prompt("mul", rng)


def test_corrupt_lowers_reward_mostly():
    rng = random.Random(1)
    prompts = [W.make_prompt(t, rng) for t in W.TASKS for _ in range(100)]
    rewards = [W.score(p, W.corrupt(W.answer(p), rng)) for p in prompts]
    assert sum(r < 1.0 for r in rewards) / len(rewards) > 0.85
    assert len(set(rewards)) > 5  # graded, not binary


def test_make_pairs_orders_and_drops_ties():
    prompts = ["rev:abc=", "rev:abc=", "srt:cba="]
    samples = [["cba", "cbx", "xxx"], ["aaa", "bbb"], ["abc", "abx"]]  # second prompt: all score 0 -> dropped
    pairs = W.make_pairs(prompts, samples, rule="random", seed=0)
    assert len(pairs) == 2
    for p in pairs:
        assert W.score(p["prompt"], p["chosen"]) > W.score(p["prompt"], p["rejected"])
        assert p["true_margin"] == pytest.approx(p["true_chosen_reward"] - p["true_rejected_reward"])
    best = W.make_pairs(prompts[:1], samples[:1], rule="best_worst")
    assert (best[0]["chosen"], best[0]["rejected"]) == ("cba", "xxx")
    with pytest.raises(ValueError, match="pair_rule"):
        W.make_pairs(prompts, samples, rule="top")


# ----------------------------------------------------------------------------- a miniature world


def test_mini_world_splits(mini):
    train_p = {p["prompt"] for p in mini.train}
    test_p = {p["prompt"] for p in mini.test}
    assert train_p and test_p and mini.heldout
    assert not train_p & test_p and not train_p & set(mini.heldout) and not test_p & set(mini.heldout)
    for p in mini.train + mini.test:
        assert W.score(p["prompt"], p["chosen"]) == p["true_chosen_reward"] > p["true_rejected_reward"]
    assert len(mini.dataset("train")) == len(mini.train)
    assert mini.dataset("heldout").column_names == ["prompt"]
    with pytest.raises(ValueError, match="unknown split"):
        mini.dataset("dev")


def test_mini_world_reference_is_diverse(mini):
    model, tok = mini.load_reference()
    samples = W.sample_responses(model, tok, mini.heldout, n=4, seed=0)
    flat = [s for ss in samples for s in ss]
    assert len(set(flat)) > len(flat) // 2  # sampling at temperature 1 is diverse


def test_same_seed_byte_identical_and_cached(tmp_path, mini, monkeypatch):
    other = W.build_world(MINI, cache_dir=tmp_path, progress=False)
    assert other.path != mini.path
    for name in ("train.jsonl", "test.jsonl", "heldout.jsonl", "reference/model.safetensors"):
        assert (other.path / name).read_bytes() == (mini.path / name).read_bytes(), name
    # a second call reuses the cache instead of training again
    monkeypatch.setattr(W, "sft_train", lambda *a, **k: pytest.fail("rebuilt a cached world"))
    assert W.build_world(MINI, cache_dir=tmp_path, progress=False).path == other.path


def test_other_seed_other_world():
    a, b = W.WorldConfig(seed=0), W.WorldConfig(seed=1)
    assert a.key() != b.key() and a.key() == W.WorldConfig(seed=0).key()


def test_left_padded_batches_match_single(mini):
    model, tok = mini.load_reference()
    prompts = ["rev:ab=", "add:12+34=", "srt:dcbaef="]
    batched = W.sample_responses(model, tok, prompts, temperature=0)
    single = [W.sample_responses(model, tok, [p], temperature=0)[0] for p in prompts]
    assert batched == single
    s1 = W.sample_responses(model, tok, prompts, n=3, seed=5)
    assert s1 == W.sample_responses(model, tok, prompts, n=3, seed=5)
    state = torch.random.get_rng_state()
    W.sample_responses(model, tok, prompts, n=2, seed=6)
    assert torch.equal(state, torch.random.get_rng_state())  # caller's RNG untouched


def test_load_world_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a built world"):
        W.load_world(tmp_path)
