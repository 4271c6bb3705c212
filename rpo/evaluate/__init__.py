"""Evaluation harnesses: AlpacaEval 2 and Arena-Hard v0.1, runnable offline with a local judge.

* :mod:`rpo.evaluate.generate`: batched, resumable sampling with the peers' decoding presets.
* :mod:`rpo.evaluate.alpacaeval`: raw and length-controlled win rates through ``alpaca_eval`` itself.
* :mod:`rpo.evaluate.arenahard`: swapped-position judging, verdict parsing, Bradley-Terry + bootstrap.
* :mod:`rpo.evaluate.judges`: a pairwise judge from any ``score(prompt, response)``; an OpenAI judge.
* :mod:`rpo.evaluate.cli`: ``rpo eval alpacaeval|arenahard`` (also ``python -m rpo.evaluate``).

Names are imported lazily: ``alpaca_eval`` and scikit-learn cost seconds to import.
"""

_LAZY = {
    "evaluate_alpacaeval": "rpo.evaluate.alpacaeval",
    "length_controlled": "rpo.evaluate.alpacaeval",
    "judge_pairs": "rpo.evaluate.alpacaeval",
    "evaluate_arenahard": "rpo.evaluate.arenahard",
    "parse_verdict": "rpo.evaluate.judges",
    "battles_from_judgments": "rpo.evaluate.arenahard",
    "bradley_terry": "rpo.evaluate.arenahard",
    "leaderboard": "rpo.evaluate.arenahard",
    "judge_answers": "rpo.evaluate.arenahard",
    "generate_alpacaeval": "rpo.evaluate.generate",
    "generate_arenahard": "rpo.evaluate.generate",
    "PRESETS": "rpo.evaluate.generate",
    "ScoreJudge": "rpo.evaluate.judges",
    "OpenAIJudge": "rpo.evaluate.judges",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rpo.evaluate' has no attribute {name!r}")
