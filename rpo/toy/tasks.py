"""The toy world's tasks and oracle: prompts a program answers exactly, and a graded score.

Tasks (prompt < 16 chars, answer <= 6 chars, one token per character for the toy tokenizer):
``rev:abcd=`` -> ``dcba`` (reverse), ``srt:dbca=`` -> ``abcd`` (sort), ``add:23+45=`` -> ``68``.
The oracle :func:`score` gives positional character agreement with the exact answer (partial credit).
"""

from __future__ import annotations

import random
import string

TASKS = ("rev", "srt", "add")
LETTERS = string.ascii_lowercase[:12]  # a small alphabet keeps the tiny model's job learnable


def make_prompt(task: str, rng: random.Random) -> str:
    """One random prompt of ``task`` (``rev``, ``srt`` or ``add``)."""
    if task in ("rev", "srt"):
        word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 6)))
        return f"{task}:{word}="
    if task == "add":
        return f"add:{rng.randint(0, 99)}+{rng.randint(0, 99)}="
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def _prompt_text(prompt) -> str:
    """The raw task string from a plain prompt or a chat-message list (last user message)."""
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        if not users:
            raise ValueError("chat prompt has no user message")
        prompt = users[-1]
    return prompt.strip()


def answer(prompt) -> str:
    """The exact answer to a toy prompt; ``ValueError`` for a prompt outside the task family."""
    text = _prompt_text(prompt)
    task, _, rest = text.partition(":")
    if not rest.endswith("=") or task not in TASKS:
        raise ValueError(f"not a toy-world prompt: {text!r} (expected e.g. 'rev:abc=', 'srt:cab=', 'add:2+3=')")
    arg = rest[:-1]
    if task == "rev":
        return arg[::-1]
    if task == "srt":
        return "".join(sorted(arg))
    a, plus, b = arg.partition("+")
    if not plus or not a.isdigit() or not b.isdigit():
        raise ValueError(f"not a toy-world add prompt: {text!r}")
    return str(int(a) + int(b))


def score(prompt, response) -> float:
    """Oracle reward in [0, 1]: ``#{i : response[i] == answer[i]} / max(len(response), len(answer))``.

    ``prompt`` is a toy prompt string (``"rev:abc="``) or a chat-message list whose last user message is
    one; ``response`` a string or a chat-message list (last message's content). Surrounding whitespace
    is ignored. Exact answer -> 1.0; empty response -> 0.0. Usable as a local judge (issue 5).
    """
    target = answer(prompt)
    if isinstance(response, list):
        response = response[-1]["content"] if response else ""
    response = response.strip()
    if not response:
        return 0.0
    hits = sum(a == b for a, b in zip(response, target))
    return hits / max(len(response), len(target))


def corrupt(text: str, rng: random.Random) -> str:
    """1-2 random character edits (substitute, delete, insert, swap): a plausible flawed answer."""
    alphabet = string.digits if text.isdigit() else LETTERS
    chars = list(text)
    for _ in range(rng.randint(1, 2)):
        op = rng.choice(("sub", "del", "ins", "swap"))
        i = rng.randrange(len(chars)) if chars else 0
        if op == "sub" and chars:
            chars[i] = rng.choice(alphabet)
        elif op == "del" and len(chars) > 1:
            del chars[i]
        elif op == "swap" and len(chars) > 1:
            j = min(i + 1, len(chars) - 1) if i < len(chars) - 1 else i - 1
            chars[i], chars[j] = chars[j], chars[i]
        else:
            chars.insert(i, rng.choice(alphabet))
    return "".join(chars)


# ----------------------------------------------------------------------------- the witness dial (issue 12)

#: the style marker of the world family with a witness dial: an optional trailing character of a response
MARKER = "!"


def styled_score(prompt, response, weight: float) -> float:
    """The dial world's oracle: ``(1 - weight) * score(prompt, response without its marker) + weight *
    [response ends with MARKER]``. ``weight`` mixes an easy, generalising property of the response (one
    token at its end, the same on every prompt) into the hard task's correctness (:func:`score`)."""
    if isinstance(response, list):
        response = response[-1]["content"] if response else ""
    response = response.strip()
    styled = response.endswith(MARKER)
    core = response[: -len(MARKER)] if styled else response
    return (1.0 - weight) * score(prompt, core) + weight * float(styled)
