"""Pairwise judges for both harnesses: a local judge from any ``score(prompt, response) -> float``
(offline; the toy world's oracle), and an OpenAI-compatible judge for the real protocols on a cluster.

A judge has two methods:

* ``preference(instruction, output_1, output_2) -> float`` in [1, 2]: AlpacaEval's encoding (1 =
  ``output_1`` better, 2 = ``output_2`` better, 1.5 = tie; values in between are soft preferences, as
  ``weighted_alpaca_eval_gpt4_turbo`` gives).
* ``judge(question, answer_a, answer_b) -> str``: a judgment text that ends in an Arena-Hard verdict
  label ``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]`` or ``[[B>>A]]``.

:class:`ScoreJudge` turns a score difference ``d = score(a) - score(b)`` into a verdict by two
margins: ``|d| <= tie_margin`` is a tie, ``|d| > strong_margin`` a strong verdict (weight 3 in the
Bradley-Terry fit), anything else a weak one. ``position_bias`` adds to the first position's score
before comparing, which plants the position bias that Arena-Hard's swapped games cancel (tests do).
"""

from __future__ import annotations

import math
import re
from typing import Callable

# arena-hard-auto v0.1, config/judge_config.yaml (judge gpt-4-1106-preview, baseline gpt-4-0314).
ARENA_HARD_SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user prompt displayed below. You will be given assistant A's answer and assistant "
    "B's answer. Your job is to evaluate which assistant's answer is better.\n\n"
    "Begin your evaluation by generating your own answer to the prompt. You must provide your answers "
    "before judging any answers.\n\n"
    "When evaluating the assistants' answers, compare both assistants' answers with your answer. You must "
    "identify and correct any mistakes or inaccurate information.\n\n"
    "Then consider if the assistant's answers are helpful, relevant, and concise. Helpful means the answer "
    "correctly responds to the prompt or follows the instructions. Note when user prompt has any ambiguity "
    "or more than one interpretation, it is more helpful and appropriate to ask for clarifications or more "
    "information from the user than providing an answer based on assumptions. Relevant means all parts of "
    "the response closely connect or are appropriate to what is being asked. Concise means the response is "
    "clear and not verbose or excessive.\n\n"
    "Then consider the creativity and novelty of the assistant's answers when needed. Finally, identify any "
    "missing important information in the assistants' answers that would be beneficial to include when "
    "responding to the user prompt.\n\n"
    "After providing your explanation, you must output only one of the following choices as your final "
    "verdict with a label:\n\n"
    "1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n"
    "3. Tie, relatively the same: [[A=B]]\n"
    "4. Assistant B is slightly better: [[B>A]]\n"
    "5. Assistant B is significantly better: [[B>>A]]\n\n"
    'Example output: "My final verdict is tie: [[A=B]]".'
)
ARENA_HARD_PROMPT_TEMPLATE = (
    "<|User Prompt|>\n{question_1}\n\n<|The Start of Assistant A's Answer|>\n{answer_1}\n"
    "<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n{answer_2}\n"
    "<|The End of Assistant B's Answer|>"
)
ARENA_HARD_JUDGE = "gpt-4-1106-preview"
ARENA_HARD_BASELINE = "gpt-4-0314"
ALPACAEVAL_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
# what arena-hard-auto appends when a judgment ends without a verdict (number_of_judgment_attempts)
CONTINUE_PROMPT = "continue your judgment and finish by outputting a final verdict label"


VERDICT_PATTERN = re.compile(r"\[\[([AB<>=]+)\]\]")
LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
MIRRORED = {"B<<A": "A>>B", "B<A": "A>B", "B=A": "A=B", "A<B": "B>A", "A<<B": "B>>A"}


def parse_verdict(text: str | None) -> tuple[str | None, str]:
    """``(label, status)`` from a judge's text. status: ``ok`` (label in :data:`LABELS`), ``missing``
    (no ``[[...]]``), ``conflict`` (two different verdicts), ``unknown`` (one label that is no verdict,
    e.g. ``[[A>>>B]]``); label is None unless ok."""
    if not text:
        return None, "missing"
    found = {MIRRORED.get(m, m) for m in VERDICT_PATTERN.findall(text)}
    if not found:
        return None, "missing"
    if len(found) > 1:
        return None, "conflict"
    (label,) = found
    return (label, "ok") if label in LABELS else (None, "unknown")


def format_judge_prompt(question: str, answer_a: str, answer_b: str) -> str:
    """The v0.1 user prompt for one game (A is shown first)."""
    return ARENA_HARD_PROMPT_TEMPLATE.format(question_1=question, answer_1=answer_a, answer_2=answer_b)


class ScoreJudge:
    """A pairwise judge from a pointwise ``score(prompt, response) -> float``.

    Args:
        score: any callable; higher is better. ``rpo.toy.world.score`` is the toy world's oracle.
        tie_margin: ``|score_a - score_b| <= tie_margin`` gives ``[[A=B]]`` (AlpacaEval: 1.5).
        strong_margin: ``|d| > strong_margin`` gives ``[[A>>B]]``/``[[B>>A]]``; must be >= tie_margin.
        soft_temperature: None gives AlpacaEval hard preferences (1, 1.5, 2); a positive value gives
            soft ones, ``1 + sigmoid((score_2 - score_1) / soft_temperature)``, like a weighted annotator.
        position_bias: added to the score of the answer shown first (A, or ``output_1``) before the
            comparison; 0 for an unbiased judge.
        name: the judge's name (Arena-Hard's ``model_judgment/<name>/`` folder, AlpacaEval's annotator).
    """

    def __init__(
        self,
        score: Callable[[str, str], float],
        *,
        tie_margin: float = 0.0,
        strong_margin: float = 0.5,
        soft_temperature: float | None = None,
        position_bias: float = 0.0,
        name: str = "score-judge",
    ):
        if not callable(score):
            raise ValueError(f"score must be callable (prompt, response) -> float, got {type(score).__name__}")
        if tie_margin < 0 or strong_margin < tie_margin:
            raise ValueError(
                f"need 0 <= tie_margin <= strong_margin, got tie_margin={tie_margin}, strong_margin={strong_margin}"
            )
        if soft_temperature is not None and soft_temperature <= 0:
            raise ValueError(f"soft_temperature must be positive or None, got {soft_temperature}")
        self.score, self.tie_margin, self.strong_margin = score, tie_margin, strong_margin
        self.soft_temperature, self.position_bias, self.name = soft_temperature, position_bias, name

    def _diff(self, prompt: str, first: str, second: str) -> float:
        s1, s2 = float(self.score(prompt, first)), float(self.score(prompt, second))
        if math.isnan(s1) or math.isnan(s2):
            raise ValueError(f"score returned NaN for prompt {prompt[:60]!r}")
        return s1 + self.position_bias - s2

    def verdict(self, question: str, answer_a: str, answer_b: str) -> str:
        """The verdict label (without brackets) for A shown first."""
        d = self._diff(question, answer_a, answer_b)
        if abs(d) <= self.tie_margin:
            return "A=B"
        strong = abs(d) > self.strong_margin
        if d > 0:
            return "A>>B" if strong else "A>B"
        return "B>>A" if strong else "B>A"

    def judge(self, question: str, answer_a: str, answer_b: str) -> str:
        label = self.verdict(question, answer_a, answer_b)
        sa, sb = self.score(question, answer_a), self.score(question, answer_b)
        return f"Score of A: {sa:.4f}. Score of B: {sb:.4f}.\n\nMy final verdict is: [[{label}]]"

    def preference(self, instruction: str, output_1: str, output_2: str) -> float:
        d = self._diff(instruction, output_1, output_2)  # > 0: output_1 better
        if self.soft_temperature is not None:
            return 1.0 + 1.0 / (1.0 + math.exp(d / self.soft_temperature))
        if abs(d) <= self.tie_margin:
            return 1.5
        return 1.0 if d > 0 else 2.0


class OpenAIJudge:
    """Arena-Hard v0.1's judge through an OpenAI-compatible chat API (cluster path; needs a key and the
    network, so it is not exercised offline).

    Follows arena-hard-auto's ``gen_judgment.py``: system prompt + one user prompt, temperature 0,
    max_tokens 4096; when the text holds no verdict it asks the judge to continue, up to ``attempts``
    times, and returns all the text. ``client`` defaults to ``openai.OpenAI()`` (``OPENAI_API_KEY``,
    ``OPENAI_BASE_URL`` for a local vLLM server). AlpacaEval's judge goes through ``alpaca_eval``'s own
    annotator instead (see :func:`rpo.evaluate.alpacaeval.evaluate_alpacaeval`).
    """

    def __init__(
        self,
        model: str = ARENA_HARD_JUDGE,
        *,
        client=None,
        temperature: float = 0.0,
        max_tokens: int = 4096,
        attempts: int = 1,
        system_prompt: str = ARENA_HARD_SYSTEM_PROMPT,
    ):
        self.model, self.name, self._client = model, model, client
        self.temperature, self.max_tokens, self.attempts = temperature, max_tokens, attempts
        self.system_prompt = system_prompt

    @property
    def client(self):
        if self._client is None:
            import openai

            self._client = openai.OpenAI()
        return self._client

    def judge(self, question: str, answer_a: str, answer_b: str) -> str:
        conv = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": format_judge_prompt(question, answer_a, answer_b)},
        ]
        text = ""
        for _ in range(self.attempts):
            out = self.client.chat.completions.create(
                model=self.model, messages=conv, temperature=self.temperature, max_tokens=self.max_tokens
            )
            new = out.choices[0].message.content or ""
            text += "\n" + new
            if parse_verdict(text)[1] != "missing":
                break
            conv += [{"role": "assistant", "content": new}, {"role": "user", "content": CONTINUE_PROMPT}]
        return text

    def preference(self, instruction, output_1, output_2):
        raise NotImplementedError(
            "AlpacaEval with a GPT-4 judge runs through alpaca_eval's annotator: "
            f"evaluate_alpacaeval(..., judge={ALPACAEVAL_ANNOTATOR!r})"
        )


def as_judge(judge, **kwargs):
    """A judge object from a judge, or from a bare ``score(prompt, response)`` callable."""
    if hasattr(judge, "judge") or hasattr(judge, "preference"):
        return judge
    if callable(judge):
        return ScoreJudge(judge, **kwargs)
    raise ValueError(f"judge must have .judge/.preference or be a score callable, got {type(judge).__name__}")
