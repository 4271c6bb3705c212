"""The evaluation harnesses on the toy world's policies: AlpacaEval 2 and Arena-Hard v0.1 run offline,
with the reference policy as the baseline, the world's oracle as the judge and the held-out prompts as
the instructions / questions (``05_evaluate``). On a cluster an API judge takes the oracle's place."""

from __future__ import annotations

from pathlib import Path

from rpo.evaluate import formats
from rpo.evaluate.alpacaeval import evaluate_alpacaeval
from rpo.evaluate.arenahard import evaluate_arenahard
from rpo.evaluate.generate import generate_alpacaeval, generate_arenahard
from rpo.models import load_saved

#: answers are short in the toy world (a reversed or sorted string, a sum)
MAX_NEW_TOKENS = 10


def questions_of(prompts: list[str]) -> list[dict]:
    """Arena-Hard ``question.jsonl`` records for the prompts."""
    return [
        {"question_id": f"q{i:04d}", "category": "toy", "cluster": "toy", "turns": [{"content": p}]}
        for i, p in enumerate(prompts)
    ]


class ToyBench:
    """One benchmark folder: AlpacaEval outputs and the arena-hard-auto v0.1 layout, resumable."""

    def __init__(self, folder, prompts: list[str], judge):
        self.folder, self.prompts, self.judge = Path(folder), list(prompts), judge
        self.questions = questions_of(self.prompts)
        formats.write_jsonl(self.folder / "arena-hard-v0.1" / "question.jsonl", self.questions)

    def answer(self, name: str, model, tok) -> list[dict]:
        """Both benchmarks' answer files for one model (skipped where already written)."""
        recs = generate_alpacaeval(
            model,
            tok,
            self.prompts,
            self.folder / "alpacaeval" / f"{name}.json",
            generator=name,
            preset="alpacaeval-mistral",
            max_new_tokens=MAX_NEW_TOKENS,
        )
        generate_arenahard(
            model,
            tok,
            self.questions,
            self.folder / "arena-hard-v0.1" / "model_answer",
            model_id=name,
            max_new_tokens=MAX_NEW_TOKENS,
        )
        return recs

    def score(self, name: str, answers: list[dict], reference: list[dict], *, rounds: int = 100) -> dict:
        """One table row: AlpacaEval 2 LC / raw win rate and Arena-Hard win rate with its 95% interval."""
        ae = evaluate_alpacaeval(answers, reference, self.judge, progress=False)
        ah = evaluate_arenahard(
            self.folder / "arena-hard-v0.1", name, self.judge, baseline="reference", rounds=rounds, progress=False
        )
        return {
            "method": name,
            "AE2 LC (%)": ae["length_controlled_winrate"],
            "AE2 WR (%)": ae["win_rate"],
            "Arena-Hard WR (%)": ah["win_rate"],
            "AH 95% CI": f"[{ah['ci_lower']:.1f}, {ah['ci_upper']:.1f}]",
            "AH unusable verdicts": ah["n_missing"] + ah["n_conflict"] + ah["n_unknown"],
        }


def evaluate_policies(bench: ToyBench, reference, policies: dict, *, rounds: int = 100) -> tuple[list, list]:
    """``(rows, missing)``: every saved policy of ``policies`` (label -> folder) scored against the
    reference ``(model, tokenizer)``; labels whose folder holds no model are listed as missing."""
    ref_answers = bench.answer("reference", *reference)
    rows, missing = [], []
    for name, path in policies.items():
        if not (Path(path) / "config.json").exists():
            missing.append(name)
            continue
        model, tok = load_saved(path, raw_text=True)
        rows.append(bench.score(name, bench.answer(name, model.eval(), tok), ref_answers, rounds=rounds))
    return rows, missing
