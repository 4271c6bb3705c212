"""``rpo eval alpacaeval|arenahard``: generate (optional), judge, score; prints the metrics as JSON.

Examples (offline, toy world; the lead wires ``add_subparser`` into the top-level ``rpo`` command)::

    python -m rpo.evaluate alpacaeval --model toy --instructions prompts.json --answers out/answers.json \\
        --reference ref.json --judge oracle --output-dir out/
    python -m rpo.evaluate arenahard --bench-dir data/arena-hard-v0.1 --model-id my-policy \\
        --model runs/r-dpo/final --judge oracle

``--judge``: ``oracle`` (``rpo.toy.world.score``), ``module:function`` (any ``score(prompt, response)``),
``openai`` or ``openai:<model>`` (Arena-Hard on a cluster; ``OPENAI_API_KEY``/``OPENAI_BASE_URL``),
or for AlpacaEval an ``alpaca_eval`` annotator config (default ``weighted_alpaca_eval_gpt4_turbo``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from rpo.evaluate.judges import ALPACAEVAL_ANNOTATOR, ARENA_HARD_BASELINE, ARENA_HARD_JUDGE


def load_policy(spec: str, *, seed: int = 0):
    """``(model, tokenizer)``: ``toy``/``small`` profiles, a local folder, or ``paper:<name or Hub id>``."""
    from rpo.models import load_model, load_saved

    if spec in ("toy", "small"):
        return load_model(spec, seed=seed)
    if spec.startswith("paper:"):
        return load_model("paper", name=spec.split(":", 1)[1])
    if Path(spec).is_dir():
        return load_saved(spec)
    raise ValueError(f"--model {spec!r}: expected toy, small, paper:<name>, or an existing model folder")


def make_judge(spec: str, *, tie_margin: float, strong_margin: float, soft_temperature: float | None):
    """A judge object (or, for an alpaca_eval annotator config name, the name itself)."""
    from rpo.evaluate.judges import OpenAIJudge, ScoreJudge

    if spec == "oracle":
        spec = "rpo.toy.world:score"
    if spec == "openai" or spec.startswith("openai:"):
        return OpenAIJudge(spec.split(":", 1)[1] if ":" in spec else ARENA_HARD_JUDGE)
    if ":" in spec:
        mod, fn = spec.split(":", 1)
        try:
            score = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"--judge {spec!r}: cannot import {fn} from {mod} ({e})") from None
        return ScoreJudge(
            score,
            tie_margin=tie_margin,
            strong_margin=strong_margin,
            soft_temperature=soft_temperature,
            name=fn if fn != "score" else mod.split(".")[-1],
        )
    return spec


def _common(p: argparse.ArgumentParser, default_judge: str) -> None:
    p.add_argument("--model", help="policy to generate with first: toy, small, paper:<name>, or a folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", help="decoding preset (see rpo.evaluate.generate.PRESETS)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--judge", default=default_judge)
    p.add_argument("--tie-margin", type=float, default=0.0, help="score judges: |difference| <= this is a tie")
    p.add_argument("--strong-margin", type=float, default=0.5, help="score judges: |difference| > this is strong")
    p.add_argument("--soft-temperature", type=float, help="score judges: soft AlpacaEval preferences")
    p.add_argument("--out", help="also write the metrics JSON here")
    p.add_argument(
        "--min-usable",
        type=float,
        default=0.9,
        help="least share of games / instructions with a usable verdict; below it the command fails (exit 2)",
    )
    p.add_argument("--no-progress", action="store_true")


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register ``eval`` (with ``alpacaeval`` and ``arenahard``) on an argparse subparsers object."""
    ev = subparsers.add_parser("eval", help="AlpacaEval 2 / Arena-Hard v0.1 evaluation")
    sub = ev.add_subparsers(dest="benchmark", required=True)

    a = sub.add_parser("alpacaeval", help="raw and length-controlled win rate (alpaca_eval)")
    a.add_argument("--answers", required=True, help="AlpacaEval outputs JSON (written when --model is given)")
    a.add_argument("--reference", required=True, help="reference outputs JSON (same format)")
    a.add_argument(
        "--instructions",
        help="JSON list of instructions or records to generate for (default: the reference's instructions)",
    )
    a.add_argument("--generator", help="generator name written in the answers (default: --model)")
    a.add_argument("--df-gamed", help="local df_gamed.csv for the official length-controlled GLM")
    a.add_argument("--download-df-gamed", action="store_true", help="fetch df_gamed.csv from the Hub (cluster)")
    a.add_argument("--output-dir", help="writes annotations.json and metrics.json")
    a.add_argument("--lc-bootstrap", type=int, default=0, help="rounds for a bootstrap LC standard error")
    _common(a, ALPACAEVAL_ANNOTATOR)
    a.set_defaults(func=_command(run_alpacaeval))

    h = sub.add_parser("arenahard", help="win rate against the baseline (Bradley-Terry, bootstrap CI)")
    h.add_argument("--bench-dir", required=True, help="folder with question.jsonl and model_answer/")
    h.add_argument("--model-id", required=True, help="the answer file's name: model_answer/<model-id>.jsonl")
    h.add_argument("--baseline", default=ARENA_HARD_BASELINE)
    h.add_argument("--judge-name", help="folder under model_judgment/ (default: the judge's name)")
    h.add_argument("--rounds", type=int, default=100, help="bootstrap rounds")
    h.add_argument("--weight", type=int, default=3, help="battles per strong verdict")
    h.add_argument("--workers", type=int, default=1, help="parallel judge calls (API judges)")
    h.add_argument("--strict", action="store_true", help="fail when a game has no usable verdict")
    h.add_argument("--score-only", action="store_true", help="do not judge; score existing judgments")
    _common(h, "openai")
    h.set_defaults(func=_command(run_arenahard))
    return ev


def _decoding_overrides(args) -> dict:
    return dict(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)


def run_alpacaeval(args) -> dict:
    from rpo.evaluate import formats
    from rpo.evaluate.alpacaeval import evaluate_alpacaeval

    if args.model:
        from rpo.evaluate.generate import generate_alpacaeval

        model, tok = load_policy(args.model, seed=args.seed)
        src = args.instructions or args.reference
        instr = formats.read_instructions(src) if args.instructions else formats.read_alpacaeval(src)
        instr = [x if isinstance(x, str) else {k: x[k] for k in x if k not in ("output", "generator")} for x in instr]
        generate_alpacaeval(
            model,
            tok,
            instr,
            args.answers,
            generator=args.generator or args.model,
            preset=args.preset or "alpacaeval-mistral",
            batch_size=args.batch_size,
            seed=args.seed,
            **_decoding_overrides(args),
        )
    judge = make_judge(
        args.judge, tie_margin=args.tie_margin, strong_margin=args.strong_margin, soft_temperature=args.soft_temperature
    )
    return evaluate_alpacaeval(
        args.answers,
        args.reference,
        judge,
        df_gamed=args.df_gamed,
        download_df_gamed=args.download_df_gamed,
        output_dir=args.output_dir,
        lc_bootstrap_rounds=args.lc_bootstrap,
        seed=args.seed,
        progress=not args.no_progress,
        min_usable=args.min_usable,
    )


def run_arenahard(args) -> dict:
    from rpo.evaluate.arenahard import evaluate_arenahard

    bench = Path(args.bench_dir)
    if args.model:
        from rpo.evaluate.generate import generate_arenahard

        model, tok = load_policy(args.model, seed=args.seed)
        generate_arenahard(
            model,
            tok,
            bench / "question.jsonl",
            bench / "model_answer",
            model_id=args.model_id,
            preset=args.preset or "arenahard",
            batch_size=args.batch_size,
            seed=args.seed,
            **_decoding_overrides(args),
        )
    judge = (
        None
        if args.score_only
        else make_judge(
            args.judge,
            tie_margin=args.tie_margin,
            strong_margin=args.strong_margin,
            soft_temperature=args.soft_temperature,
        )
    )
    if isinstance(judge, str):
        raise ValueError(f"--judge {judge!r} is no Arena-Hard judge: use oracle, module:function or openai[:model]")
    return evaluate_arenahard(
        bench,
        args.model_id,
        judge,
        baseline=args.baseline,
        judge_name=args.judge_name,
        rounds=args.rounds,
        seed=args.seed,
        weight=args.weight,
        max_workers=args.workers,
        progress=not args.no_progress,
        strict=args.strict,
        min_usable=args.min_usable,
    )


def _command(run):
    """``args.func``: run, print the metrics as JSON (and write ``--out``), return the exit status;
    a ValueError (bad file, line, argument) or a file that cannot be read is printed as one line with
    status 2."""

    def func(args) -> int:
        try:
            metrics = run(args)
        except (ValueError, OSError) as e:
            print(f"rpo eval {args.benchmark}: error: {e}", file=sys.stderr)
            return 2
        if args.out:
            from rpo.evaluate.formats import write_json

            write_json(args.out, metrics)
        print(json.dumps(metrics, indent=2, default=float))
        return 0

    return func


def main(argv=None) -> int:
    """Standalone entry: ``python -m rpo.evaluate [eval] alpacaeval|arenahard ...``."""
    parser = argparse.ArgumentParser(prog="rpo")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("alpacaeval", "arenahard"):
        argv = ["eval", *argv]
    args = parser.parse_args(argv)
    return args.func(args)
