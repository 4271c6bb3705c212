"""The ``rpo`` command: ``run`` (the papermill pipeline), ``tables``, ``reproduce``, ``eval``.

    rpo [--root DIR] run --profile toy [--seeds N] [--jobs J] [--only NOTEBOOK] [--grid reduced] [--slurm]
        [--partition P] [--account A] [--qos Q] [--time 12:00:00] [--gpus-per-node G] [--cpus-per-task C]
        [--mem-gb M] [--sbatch-flag KEY=VALUE ...]     # Slurm: override the profile's request per job
    rpo tables [--profile toy]
    rpo runs [--profile toy] [--grid reduced]   # the run index: run id -> notebook, parameters, status, cells fed
    rpo reproduce            # what `make reproduce` runs: rpo run --profile toy, then rpo tables
    rpo eval ...             # the evaluation harnesses (rpo.evaluate.cli)
    rpo audit DATA --model DIR --out DIR [...]   # mislabelled pairs and unreliable annotators (rpo.audit.cli)

``--root DIR`` (or ``$RPO_HOME``) is the project folder holding notebooks/, papermill_runs/, results/ and
recipes/ (default: the checkout the package was installed from, else the current folder; rpo.paths).
"""

from __future__ import annotations

import argparse
import os
import sys

from rpo import paths
from rpo.pipeline.profiles import GRIDS, PROFILES


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="toy", choices=sorted(PROFILES))
    p.add_argument("--seeds", type=int, default=None, help="seeds per config for every study (default: the profile's)")
    p.add_argument("--jobs", type=int, default=None, help="parallel notebook executions (default: the profile's)")
    p.add_argument("--only", default=None, help="execute only this notebook, e.g. 02_train")
    p.add_argument("--grid", default="full", choices=GRIDS, help="reduced: the CI grid")
    p.add_argument("--force", action="store_true", help="re-execute runs that are already done")
    p.add_argument("--runs-dir", default=None, help="default: papermill_runs/")


# rpo run --slurm flags -> fields of rpo.pipeline.profiles.SlurmParams (None: the profile's value)
SLURM_FLAGS = ("partition", "account", "qos", "time", "gpus_per_node", "cpus_per_task", "mem_gb", "sbatch_flags")


def _add_slurm_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Slurm (with --slurm; each flag overrides the profile's request for every job)")
    g.add_argument("--partition", default=None)
    g.add_argument("--account", default=None)
    g.add_argument("--qos", default=None)
    g.add_argument("--time", default=None, help="time limit per job: minutes or [D-]H:M:S, e.g. 90, 1-00:00:00")
    g.add_argument("--gpus-per-node", type=int, default=None, help="0: request no GPU")
    g.add_argument("--cpus-per-task", type=int, default=None)
    g.add_argument("--mem-gb", type=float, default=None)
    g.add_argument(
        "--sbatch-flag",
        dest="sbatch_flags",
        action="append",
        default=None,
        metavar="KEY[=VALUE]",
        help="extra sbatch option without its --, repeatable: --sbatch-flag constraint=a100 --sbatch-flag exclusive",
    )


def cmd_run(args) -> int:
    from rpo.pipeline.execute import summarize
    from rpo.pipeline.run import run_profile

    results = run_profile(
        args.profile,
        seeds=args.seeds,
        jobs=args.jobs,
        only=args.only,
        grid=args.grid,
        runs_root=args.runs_dir,
        slurm=getattr(args, "slurm", False),
        slurm_params={k: getattr(args, k, None) for k in SLURM_FLAGS},
        force=args.force,
    )
    print(summarize(results))
    _write_index(args.profile, args.grid, args.runs_dir)
    failed = [r for r in results if r["status"] == "failed"]
    for r in failed:
        print(f"  failed: {r['id']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def cmd_tables(args) -> int:
    from rpo.report.build import build, update_readme
    from rpo.report.refusal import ResultsWouldShrink

    results_dir = args.results_dir or paths.results()
    try:
        manifest = build(
            args.profile,
            grid=args.grid,
            seeds=args.seeds,
            runs_root=args.runs_dir,
            results_dir=results_dir,
            force=getattr(args, "force", False),
        )
    except ResultsWouldShrink as e:  # e.g. a fresh clone without runs: results/ and README stay as committed
        print(f"rpo tables: {e}", file=sys.stderr)
        return 1
    if args.results_dir is None and (args.grid or "full") == "full" and args.profile == "toy":
        if update_readme(paths.readme(), manifest, results_dir):  # the README shows the committed study
            print("updated the results block of README.md")
    n_cells = sum(len(t["cells"]) for t in manifest["tables"].values())
    n_missing = sum(c["n"] < c["n_expected"] for t in manifest["tables"].values() for c in t["cells"])
    print(
        f"wrote {len(manifest['tables'])} tables ({n_cells} cells, {n_missing} with missing runs) "
        f"and manifest.json to {results_dir}"
    )
    if manifest.get("notebooks"):
        print(f"reading copies: {len(manifest['notebooks'])} executed notebooks in {results_dir}/notebooks")
    _write_index(args.profile, manifest["grid"], args.runs_dir)
    return 0


def _write_index(profile: str, grid: str, runs_dir) -> None:
    from rpo.report.runindex import write_index

    print(f"run index: {write_index(profile, grid, runs_dir)}")


def cmd_runs(args) -> int:
    from rpo.report.runindex import write_index

    print(write_index(args.profile, args.grid, args.runs_dir).read_text(), end="")
    return 0


def cmd_reproduce(args) -> int:
    rc = cmd_run(args)
    rc_tables = cmd_tables(
        argparse.Namespace(
            profile=args.profile, grid=args.grid, seeds=args.seeds, runs_dir=args.runs_dir, results_dir=None
        )
    )
    return rc or rc_tables


def cmd_eval(args) -> int:
    try:
        from rpo.evaluate.cli import add_subparser
    except ImportError as e:
        print(f"rpo eval is unavailable: rpo.evaluate.cli could not be imported ({e})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="rpo")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    inner = parser.parse_args(["eval", *args.rest])
    if not hasattr(inner, "func"):
        parser.error("rpo.evaluate.cli.add_subparser must set a `func` default on its parser")
    return int(inner.func(inner) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rpo", description="Robust Preference Optimization: replication pipeline")
    parser.add_argument(
        "--root",
        default=None,
        help="project folder (notebooks/, papermill_runs/, results/); "
        "default: $RPO_HOME, else the checkout, else the current folder",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="execute the profile's notebooks with papermill (resumable)")
    _add_run_args(p)
    p.add_argument("--slurm", action="store_true", help="submit the runs to Slurm with submitit")
    _add_slurm_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("tables", help="rebuild results/ from whatever runs exist")
    p.add_argument("--profile", default="toy", choices=sorted(PROFILES))
    p.add_argument("--grid", default=None, choices=GRIDS, help="default: that of the last `rpo run`")
    p.add_argument("--seeds", type=int, default=None, help="default: that of the last `rpo run`")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--results-dir", default=None)
    p.add_argument(
        "--force", action="store_true", help="overwrite results that rest on more runs than these tables (see refusal)"
    )
    p.set_defaults(func=cmd_tables)

    p = sub.add_parser("runs", help="write and print the run index (papermill_runs/<profile>/index.md)")
    p.add_argument("--profile", default="toy", choices=sorted(PROFILES))
    p.add_argument("--grid", default="full", choices=GRIDS)
    p.add_argument("--runs-dir", default=None)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("reproduce", help="the main job: rpo run --profile toy, then rpo tables")
    _add_run_args(p)
    p.set_defaults(func=cmd_reproduce)

    # Imported only when `rpo eval` is called: the harness may pull in heavy modules.
    p = sub.add_parser("eval", help="evaluation harnesses: AlpacaEval 2, Arena-Hard (rpo.evaluate)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_eval)

    from rpo.audit.cli import add_subparser as add_audit  # argparse only: torch loads when it runs

    add_audit(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--root"] and len(argv) > 1:  # before anything reads rpo.paths
        os.environ["RPO_HOME"] = str(os.path.abspath(argv[1]))
        argv = argv[2:]
    if argv[:1] == ["eval"]:  # argparse's REMAINDER would not pass a leading --option through
        return cmd_eval(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
