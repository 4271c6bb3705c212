"""Arena-Hard v0.1 (Li et al., 2024), the protocol the paper's Table 2 and its peers (SimPO) report.

Protocol, as arena-hard-auto v0.1 (``gen_judgment.py``, ``show_result.py``) runs it:

1. Each question is judged twice against the baseline's answer (``gpt-4-0314`` by default): game 1
   shows the baseline as A and the model as B, game 2 swaps them, so a judge's position bias cancels.
2. The verdict is the label in ``[[...]]`` of the judge's text (regex ``\\[\\[([AB<>=]+)\\]\\]``). A
   strong verdict (``A>>B``, ``B>>A``) counts as ``weight`` = 3 battles, a weak one or a tie as 1.
3. Bradley-Terry by logistic regression without penalty (scikit-learn) on the battles, each battle
   entered twice, a tie as one win for each side; ratings on the Elo scale (400, base 10), the baseline
   anchored at 1000.
4. 100 bootstrap rounds over battles; the score is the BT-predicted win rate against the baseline,
   with the 2.5 and 97.5 percentiles as the 95% interval.

Departures, all small and stated: a game without a usable verdict is dropped as in v0.1, but counted
and reported (``n_missing``, ``n_conflict``, ``n_unknown``) rather than silently; mirrored labels
(``B<A`` for ``A>B`` ...) are read as their canonical forms (later arena-hard versions do, v0.1 dropped
them); a verdict repeated identically is one verdict (as v0.1), two different ones are a conflict.
The bootstrap uses numpy's ``default_rng(seed)``, so its draws differ from v0.1's ``np.random.seed(42)``
stream; intervals agree in distribution, not digit for digit. ``token_len`` counts the policy's own
tokens (v0.1 used tiktoken's gpt-3.5 encoding); it is only reported, never used in the score.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from rpo.evaluate import cache, formats
from rpo.evaluate.formats import answer_record  # noqa: F401  (part of this module's API)
from rpo.evaluate.judges import (
    ARENA_HARD_BASELINE,
    LABELS,
    VERDICT_PATTERN,  # noqa: F401
    format_judge_prompt,
    parse_verdict,
)

STATUSES = ("ok", "missing", "conflict", "unknown")
#: the least share of a benchmark's games (two per question) with a usable verdict a score may rest on
MIN_USABLE = 0.9
logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- judging


def judge_one(question: dict, answer: dict, baseline_answer: dict, judge, *, model: str, judge_name: str) -> dict:
    """One judgment record (two games, the second with positions swapped), v0.1 layout, plus the
    ``cache_key`` of what was judged (:mod:`rpo.evaluate.cache`)."""
    q = question["turns"][0]["content"]
    a_model, a_base = formats.answer_text(answer), formats.answer_text(baseline_answer)
    games = []
    for first, second in ((a_base, a_model), (a_model, a_base)):
        text = judge.judge(q, first, second)
        label, _ = parse_verdict(text)
        games.append({"user_prompt": format_judge_prompt(q, first, second), "judgment": text, "score": label})
    key = cache.judgment_key(q, a_model, a_base, judge_name, getattr(judge, "system_prompt", None))
    return {
        "question_id": question["question_id"],
        "model": model,
        "judge": judge_name,
        "games": games,
        "cache_key": key,
    }


def judge_answers(
    questions: list[dict],
    answers: dict[str, dict],
    baseline_answers: dict[str, dict],
    judge,
    *,
    model: str,
    out_path: Path | str,
    judge_name: str | None = None,
    max_workers: int = 1,
    save_every: int = 32,
    progress: bool = True,
) -> list[dict]:
    """Judge ``model``'s answers against the baseline's into ``out_path`` (a ``model_judgment/<judge>/
    <model>.jsonl``), resumably: questions already judged there are skipped, and the file is rewritten
    atomically every ``save_every`` judgments. A question the model or the baseline did not answer raises
    ValueError naming it. ``max_workers`` > 1 judges in threads (API judges)."""
    from tqdm.auto import tqdm

    out_path = Path(out_path)
    judge_name = judge_name or getattr(judge, "name", "judge")
    for who, ans in ((model, answers), ("baseline", baseline_answers)):
        lacking = [q["question_id"] for q in questions if q["question_id"] not in ans]
        if lacking:
            raise ValueError(f"{who} has no answer to {len(lacking)} question(s), e.g. {lacking[:3]}")
    done = formats.read_judgments(out_path) if out_path.exists() else []
    by_id = {q["question_id"]: q for q in questions}
    stale = {}  # a judgment is reused only if the question, both answers, the judge and its prompt are unchanged
    for r in done:
        if r["question_id"] in by_id:
            key, *texts = cache.expected_key(by_id[r["question_id"]], answers, baseline_answers, judge_name, judge)
            if (why := cache.stale_reason(r, key, *texts)) is not None:
                stale[r["question_id"]] = why
    if stale:
        first = next(iter(stale.items()))
        logger.warning("%s: re-judging %d stale judgment(s) (e.g. %r: %s)", out_path, len(stale), first[0], first[1])
    records = [r for r in done if r["question_id"] not in stale]
    have = {r["question_id"] for r in records}
    todo = [q for q in questions if q["question_id"] not in have]
    bar = tqdm(total=len(todo), desc=f"judge {model}", disable=not progress)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = [
            pool.submit(
                judge_one,
                q,
                answers[q["question_id"]],
                baseline_answers[q["question_id"]],
                judge,
                model=model,
                judge_name=judge_name,
            )
            for q in todo
        ]
        try:
            for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                records.append(fut.result())
                bar.update()
                if i % save_every == 0:
                    formats.write_jsonl(out_path, records)
        finally:
            formats.write_jsonl(out_path, records)  # what was judged survives a failure
            bar.close()
    order = {q["question_id"]: i for i, q in enumerate(questions)}
    records.sort(key=lambda r: order.get(r["question_id"], len(order)))
    formats.write_jsonl(out_path, records)
    return records


# ----------------------------------------------------------------------------- battles and Bradley-Terry


def battles_from_judgments(
    judgments: list[dict], *, baseline: str = ARENA_HARD_BASELINE, weight: int = 3, first_game_only: bool = False
) -> tuple[pd.DataFrame, dict]:
    """v0.1's battles: ``(DataFrame[question_id, model_a, model_b, winner], report)``.

    model_a is the baseline. Game 1 (baseline shown as A): ``A>B`` -> model_a wins; game 2 (swapped):
    ``A>B`` -> model_b wins. Strong verdicts are repeated ``weight`` times. ``report`` counts games by
    status and verdict; games without a usable verdict make no battle but are counted there.
    """
    rows, status, verdicts = [], Counter(), Counter()
    n_expected = 1 if first_game_only else 2
    for rec in judgments:
        # a record with fewer games than expected counts its absent games as missing, not as usable
        games = [*rec["games"][:n_expected], *[None] * (n_expected - len(rec["games"]))]
        for g, game in enumerate(games):
            if game is None:
                label, st = None, "missing"
            elif "judgment" in game:
                label, st = parse_verdict(game["judgment"])
            else:  # a file holding only parsed scores
                label, st = parse_verdict(f"[[{game['score']}]]" if game.get("score") else None)
            status[st] += 1
            if label is None:
                continue
            verdicts[label] += 1
            if label == "A=B":
                winner = "tie"
            else:
                a_wins = label.startswith("A")
                winner = "model_a" if a_wins == (g == 0) else "model_b"
            n = weight if ">>" in label else 1
            rows += [(rec["question_id"], baseline, rec["model"], winner)] * n
    report = {f"n_{s}": status[s] for s in STATUSES}
    report["n_games"] = sum(status.values())
    report["verdicts"] = {k: verdicts[k] for k in LABELS}
    return pd.DataFrame(rows, columns=["question_id", "model_a", "model_b", "winner"]), report


def bradley_terry(
    battles: pd.DataFrame,
    *,
    baseline: str | None = ARENA_HARD_BASELINE,
    scale: float = 400,
    base: float = 10,
    init: float = 1000,
) -> pd.Series:
    """Bradley-Terry ratings (Elo scale) by unpenalised logistic regression, as v0.1's ``compute_mle_elo``.

    battles: columns model_a, model_b, winner in {model_a, model_b, tie, tie (bothbad)}. Every battle
    enters twice; a tie is a win for A in the first copy and for B in the second. Returns ratings sorted
    descending, the baseline (when present) anchored at ``init``. When one side won every battle (the
    MLE is infinite) one tie is added so that the rating stays finite.
    """
    from sklearn.linear_model import LogisticRegression

    if len(battles) == 0:
        raise ValueError("no battles to fit: every game lacked a usable verdict")
    missing = {"model_a", "model_b", "winner"} - set(battles.columns)
    if missing:
        raise ValueError(f"battles lack column(s) {sorted(missing)}")
    if battles["winner"].nunique() == 1 and battles["winner"].iloc[0] in ("model_a", "model_b"):
        # one side won every battle: the MLE is infinite and sklearn needs two classes; one added tie
        # keeps the rating finite (and large), where v0.1 would stop with an error
        battles = pd.concat([battles, battles.iloc[:1].assign(winner="tie")], ignore_index=True)
    models = pd.unique(pd.concat([battles["model_a"], battles["model_b"]]))
    idx = {m: i for i, m in enumerate(models)}
    a = battles["model_a"].map(idx).to_numpy()
    b = battles["model_b"].map(idx).to_numpy()
    n = len(battles)
    X = np.zeros((2 * n, len(models)))
    rows = np.arange(2 * n)
    X[rows, np.concatenate([a, a])] = math.log(base)
    X[rows, np.concatenate([b, b])] = -math.log(base)
    winner = battles["winner"].to_numpy()
    tie = (winner == "tie") | (winner == "tie (bothbad)")
    Y = np.concatenate([(winner == "model_a") | tie, winner == "model_a"]).astype(float)
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8, max_iter=1000)
    lr.fit(X, Y)
    elo = scale * lr.coef_[0] + init
    if baseline is not None and baseline in idx:
        elo += init - elo[idx[baseline]]
    return pd.Series(elo, index=models).sort_values(ascending=False)


def bootstrap_bradley_terry(
    battles: pd.DataFrame,
    *,
    rounds: int = 100,
    seed: int = 42,
    baseline: str | None = ARENA_HARD_BASELINE,
    progress: bool = False,
) -> pd.DataFrame:
    """Ratings refit on ``rounds`` resamplings (with replacement) of the battles: a (rounds, models) frame."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    out = []
    for _ in tqdm(range(rounds), desc="bootstrap", disable=not progress):
        sample = battles.iloc[rng.integers(0, len(battles), len(battles))]
        out.append(bradley_terry(sample, baseline=baseline))
    return pd.DataFrame(out)


def elo_win_rate(elo_model, elo_baseline, *, scale: float = 400, base: float = 10):
    """BT-predicted probability that the model beats the baseline (v0.1's ``predict_win_rate``)."""
    return 1.0 / (1.0 + base ** ((np.asarray(elo_baseline) - np.asarray(elo_model)) / scale))


def leaderboard(
    battles: pd.DataFrame,
    *,
    baseline: str = ARENA_HARD_BASELINE,
    rounds: int = 100,
    seed: int = 42,
    progress: bool = False,
) -> pd.DataFrame:
    """Per model: ``win_rate`` against the baseline (%), its 95% bootstrap interval ``lower``/``upper``
    (%, percentiles 2.5/97.5 of the bootstrapped ratings, mapped to win rates), and ``elo``."""
    elo = bradley_terry(battles, baseline=baseline)
    boot = bootstrap_bradley_terry(battles, rounds=rounds, seed=seed, baseline=baseline, progress=progress)
    base_elo = elo.get(baseline, 1000.0)
    rows = []
    for m in elo.index:
        lo, hi = np.percentile(boot[m].dropna(), [2.5, 97.5])
        rows.append(
            {
                "model": m,
                "win_rate": 100 * elo_win_rate(elo[m], base_elo),
                "lower": 100 * elo_win_rate(lo, base_elo),
                "upper": 100 * elo_win_rate(hi, base_elo),
                "elo": elo[m],
            }
        )
    return pd.DataFrame(rows).sort_values("win_rate", ascending=False).reset_index(drop=True)


# ----------------------------------------------------------------------------- one call for the notebook


def evaluate_arenahard(
    bench_dir: Path | str,
    model: str,
    judge=None,
    *,
    baseline: str = ARENA_HARD_BASELINE,
    judge_name: str | None = None,
    rounds: int = 100,
    seed: int = 42,
    weight: int = 3,
    max_workers: int = 1,
    progress: bool = True,
    strict: bool = False,
    min_usable: float = MIN_USABLE,
) -> dict:
    """Judge (if ``judge`` is given) and score ``model`` on an arena-hard-auto v0.1 folder.

    ``bench_dir`` holds ``question.jsonl``, ``model_answer/<model>.jsonl`` and
    ``model_answer/<baseline>.jsonl``; judgments go to (or, with ``judge=None``, are read from)
    ``model_judgment/<judge_name>/<model>.jsonl``. Returns the model's ``win_rate`` (%) with its 95%
    interval ``ci_lower``/``ci_upper``, the verdict counts, ``n_missing``/``n_conflict``/``n_unknown``
    (games without a usable verdict, excluded from the fit, as v0.1 does) and the leaderboard of every
    model judged by that judge. ``strict=True`` raises instead when any game lacks a usable verdict;
    otherwise fewer than ``min_usable`` (a share) of the benchmark's games (two per question, unjudged
    questions included) with a usable verdict raise, since the score would rest on too few of them.
    Judgments are checked against what they judged (:mod:`rpo.evaluate.cache`): a judge re-judges stale
    ones; scoring alone refuses them, naming file and line.
    """
    from rpo.evaluate.judges import ARENA_HARD_JUDGE, as_judge

    bench_dir = Path(bench_dir)
    questions = formats.read_questions(bench_dir / "question.jsonl")
    if judge is not None:
        judge = as_judge(judge)
    judge_name = judge_name or (getattr(judge, "name", None) if judge is not None else ARENA_HARD_JUDGE)
    judge_dir = bench_dir / "model_judgment" / judge_name
    if judge is not None:
        answers = formats.read_answers(bench_dir / "model_answer" / f"{model}.jsonl")
        base = formats.read_answers(bench_dir / "model_answer" / f"{baseline}.jsonl")
        judge_answers(
            questions,
            answers,
            base,
            judge,
            model=model,
            out_path=judge_dir / f"{model}.jsonl",
            judge_name=judge_name,
            max_workers=max_workers,
            progress=progress,
        )
    path = judge_dir / f"{model}.jsonl"
    if not path.exists():
        raise ValueError(f"no judgments for {model!r} at {path}; pass a judge to create them")
    judged = {p.stem: formats.read_judgments(p) for p in sorted(judge_dir.glob("*.jsonl"))}
    judged = {m: recs for m, recs in judged.items() if m != baseline}
    judged[model] = cache.verify_judgments(path, model, questions, bench_dir / "model_answer", baseline, judge_name)
    battles, report = battles_from_judgments(judged[model], baseline=baseline, weight=weight)
    bad = report["n_missing"] + report["n_conflict"] + report["n_unknown"]
    if strict and bad:
        raise ValueError(f"{path}: {bad} game(s) without a usable verdict: {report}")
    if not 0 <= min_usable <= 1:
        raise ValueError(f"min_usable must be a share in [0, 1], got {min_usable}")
    if report["n_ok"] < min_usable * 2 * len(questions):
        raise ValueError(
            f"{path}: only {report['n_ok']} of {2 * len(questions)} games ({len(questions)} questions x 2) have a "
            f"usable verdict, below min_usable={min_usable:g}; the win rate would rest on too few games "
            f"({report}). Re-judge, or lower --min-usable knowingly"
        )
    all_battles = pd.concat(
        [battles_from_judgments(r, baseline=baseline, weight=weight)[0] for r in judged.values()], ignore_index=True
    )
    board = leaderboard(all_battles, baseline=baseline, rounds=rounds, seed=seed, progress=progress)
    row = board.set_index("model").loc[model]
    qids = {r["question_id"] for r in judged[model]}
    return {
        "benchmark": "arena-hard-v0.1",
        "model": model,
        "baseline": baseline,
        "judge": judge_name,
        "win_rate": float(row["win_rate"]),
        "ci_lower": float(row["lower"]),
        "ci_upper": float(row["upper"]),
        "elo": float(row["elo"]),
        "n_questions": len(questions),
        "n_judged": len(qids),
        "n_unjudged": len({q["question_id"] for q in questions} - qids),
        **report,
        "avg_tokens": _avg_tokens(bench_dir / "model_answer" / f"{model}.jsonl"),
        "leaderboard": board.to_dict(orient="records"),
    }


def _avg_tokens(path: Path) -> float | None:
    if not path.exists():
        return None
    lens = [t.get("token_len") for r in formats.read_answers(path).values() for t in r["choices"][0]["turns"]]
    return float(np.mean(lens)) if lens and all(v is not None for v in lens) else None
