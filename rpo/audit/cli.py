"""``rpo audit DATA --model DIR --out DIR [...]``: the audit from the command line (:func:`rpo.audit.audit`).

Importing this module is cheap (argparse only); torch and TRL load when the command runs. Bad input (a
missing column, an empty response, an absent or mistyped annotator column, a model folder without a
tokenizer) is one line on stderr naming the file, row and column, exit status 2, and nothing in OUT.
"""

from __future__ import annotations

import argparse
import sys

LOSSES = ("dpo", "ipo", "simpo", "cpo")
DESCRIPTION = (
    "Find the mislabelled pairs and the unreliable annotators of a preference data set: a cross-fitted R-X "
    "witness scores every pair (eq. 2), exact EM at that witness gives each annotator's eta (eqs. 4, 6) and "
    "each pair's w, the posterior that its label is right (eq. 4)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="JSONL / JSON / CSV / parquet file, a `datasets` folder, or (on a cluster) a Hub id")
    p.add_argument(
        "--model", required=True, help="base model: a saved folder, `toy` (the untrained tiny Llama) or `small`"
    )
    p.add_argument("--out", required=True, help="folder for pairs.csv, annotators.csv, report.md/.html, summary.json")
    p.add_argument("--ref", default=None, help="reference model for dpo / ipo (default: the base model)")
    p.add_argument("--loss", default="dpo", choices=LOSSES, help="base loss of the R-X witness (default dpo: R-DPO)")
    p.add_argument(
        "--annotator-column", default=None, help="column of annotator names or ids (default: `annotator` if present)"
    )
    p.add_argument("--folds", type=int, default=2, help="cross-fitting folds (1: in-sample, optimistic)")
    p.add_argument("--beta", type=float, default=None, help="the loss's beta (default: see rpo.audit.settings)")
    p.add_argument("--lr", type=float, default=None, help="witness learning rate")
    p.add_argument("--epochs", type=float, default=None, help="witness training epochs (fractions allowed)")
    p.add_argument("--batch-size", type=int, default=None, help="training and scoring batch size")
    p.add_argument("--max-length", type=int, default=None, help="longest prompt + response, in tokens")
    p.add_argument("--seed", type=int, default=0, help="folds, training, bootstrap (and the toy model's weights)")
    p.add_argument(
        "--witness", default=None, help="score with this already trained policy instead (in-sample: optimistic)"
    )
    p.add_argument("--split", default="train", help="split of a `datasets` folder or Hub id")
    p.add_argument("--no-calibrate", action="store_true", help="eq. 4 on the raw log-odds (no eq. 3 temperature)")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples of the eta interval (0: none)")
    p.add_argument("--top", type=int, default=20, help="suspicious pairs shown in the reports")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_subparser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "audit",
        help="find the mislabelled pairs and the unreliable annotators of a preference data set",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_audit)
    return p


def cmd_audit(args) -> int:
    import logging
    import warnings

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            from rpo.audit.run import audit

            res = audit(
                args.data,
                model=args.model,
                out=args.out,
                ref=args.ref,
                witness_dir=args.witness,
                loss=args.loss,
                annotator_column=args.annotator_column,
                folds=args.folds,
                beta=args.beta,
                lr=args.lr,
                epochs=args.epochs,
                batch_size=args.batch_size,
                max_length=args.max_length,
                seed=args.seed,
                calibrate=not args.no_calibrate,
                bootstrap=args.bootstrap,
                split=args.split,
                top=args.top,
                progress=not args.quiet,
            )
        except (ValueError, FileNotFoundError) as e:
            print(f"rpo audit: error: {e}", file=sys.stderr)
            return 2
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"rpo audit: warning: {w.message}", file=sys.stderr)
    s = res.summary
    print(
        f"{s['n_pairs']} pairs, {s['n_annotators']} annotator(s); witness {s['witness']}, {s['scoring']}; "
        f"{s['n_below_half']} pairs with w < 0.5 (expected wrong labels {s['expected_wrong']:.1f})"
    )
    print(res.annotators.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"wrote {args.out}/pairs.csv, annotators.csv, report.md, report.html, summary.json")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="rpo audit", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return cmd_audit(args)


if __name__ == "__main__":
    raise SystemExit(main())
