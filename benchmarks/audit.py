"""The audit against known flips (issue 14): does ``rpo audit`` find the mislabelled pairs and each
annotator's reliability?

Data: :func:`rpo.audit.known_flips`, 1,500 learnable pairs (chosen = the prompt's word in upper case,
rejected = it reversed in lower case) dealt to three annotators of flip rates 0.05 / 0.20 / 0.40; the
truth (``is_flipped``, the measured ``true_eta``) is hidden from the audit. Base model: the untrained tiny
toy Llama of rpo.models (weights seeded by the seed). Seeds 0, 1, 2: the data draw, folds, training,
bootstrap and base weights. The toy defaults of rpo.audit.settings (lr 1e-3, beta 0.5, batch 32, 3 epochs,
temperature calibration on) were chosen on a development draw (seed 100) before this benchmark was run.

Declared before measuring (after development draws at seeds 7 and 100: on the case rule any training,
even 0.25 epoch, ranks the pairs almost perfectly, so a weak witness needs a harder preference). Witness
settings, each a preference rule of :func:`rpo.audit.synthetic.learnable_pairs` and a training length:

* ``weak``: the ``shift`` rule (chosen = each letter of the prompt's word one further in the alphabet,
  rejected = two further: only the relation to the prompt tells them apart), 0.25 epoch;
* ``shift-3ep``: the ``shift`` rule, 3 epochs;
* ``default``: the ``case`` rule, 3 epochs (the audit's defaults: the done criterion is read here);
* ``strong``: the ``case`` rule, 8 epochs (more training).

Witnesses at each setting:

* ``R-DPO x-fit``: the default audit, an R-DPO witness cross-fitted over 2 folds;
* ``R-DPO in-sample``: one R-DPO witness trained on every pair, scoring them (``folds=1``);
* ``DPO x-fit`` / ``DPO in-sample``: the same with plain DPO witnesses;

and once per seed and rule, with no training:

* ``base margin``: the untrained base model's eq. 2 log-odds under SimPO with beta 1 (its length-normalised
  log-probability margin; under DPO with the base as its own reference every d is 0);
* ``random``: no witness: w = eta0 = 0.9 for every pair (Remark E.1: uninformative evidence leaves eta at
  its start), ties in the ranking broken at random (seeded).

Each witness's log-odds go through two estimators: ``cal`` (the default: eq. 3's temperature with exact
EM) and ``raw`` (exact EM on the raw d, eq. 4 as written). Metrics: AUROC of 1 - w against the flips;
AUROC of -d (the witness's ranking before EM); precision among the F lowest-w pairs (F = the number of
flips); each eta's error against the measured true reliability and the largest; Brier score of w as the
probability that the label is right, against that of sigmoid(d) (eq. 2 alone); whether the true eta lies
in the bootstrap interval (``cal`` only). Done (issue 14): the default audit has AUROC >= 0.92 and every
eta within 0.08 on every seed.

    OMP_NUM_THREADS=1 TRL_EXPERIMENTAL_SILENCE=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/audit.py

Outputs: ``benchmarks/audit.json`` (every record) and ``benchmarks/audit.txt`` (the tables).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SETTINGS = {"weak": ("shift", 0.25), "shift-3ep": ("shift", 3.0), "default": ("case", 3.0), "strong": ("case", 8.0)}
WITNESSES = {
    "R-DPO x-fit": dict(folds=2, robust=True),
    "R-DPO in-sample": dict(folds=1, robust=True),
    "DPO x-fit": dict(folds=2, robust=False),
    "DPO in-sample": dict(folds=1, robust=False),
}
HIDDEN = ["is_flipped", "true_eta", "true_chosen", "true_rejected", "true_flip_prob"]


def metrics(d, w, ids, flipped, true_eta, eta, low=None, high=None) -> dict:
    from sklearn.metrics import roc_auc_score

    d, w, ids, flipped = map(np.asarray, (d, w, ids, flipped))
    f = int(flipped.sum())
    lowest = np.argsort(w, kind="stable")[:f]
    correct = (~flipped).astype(float)
    err = np.abs(np.asarray(eta) - np.asarray(true_eta))
    out = {
        "auroc_w": float(roc_auc_score(flipped, 1 - w)),
        "auroc_d": float(roc_auc_score(flipped, -d)),
        "precision_at_flips": float(flipped[lowest].mean()),
        "eta": [float(x) for x in eta],
        "eta_err": [float(x) for x in err],
        "eta_max_err": float(err.max()),
        "brier_w": float(np.mean((w - correct) ** 2)),
        "brier_sigmoid_d": float(np.mean((1 / (1 + np.exp(-d)) - correct) ** 2)),
        # within one annotator w is a non-decreasing function of d (strictly increasing until float64 rounds
        # w to 0 or 1): sorted by d, w never decreases
        "monotone_within": bool(
            all(np.all(np.diff(w[ids == k][np.argsort(d[ids == k], kind="stable")]) >= 0) for k in range(len(eta)))
        ),
        "auroc_within_w": [float(roc_auc_score(flipped[ids == k], 1 - w[ids == k])) for k in range(len(eta))],
        "auroc_within_d": [float(roc_auc_score(flipped[ids == k], -d[ids == k])) for k in range(len(eta))],
    }
    if low is not None:
        out["covered"] = [bool(lo <= t <= hi) for lo, t, hi in zip(low, true_eta, high)]
    return out


def estimators(d, ids, k, flipped, true_eta, res=None) -> dict:
    """Both estimators on one witness's log-odds (``res``: the audit's own result, for the default's interval)."""
    import torch

    from rpo.audit.estimate import fit

    out = {}
    for name, cal in (("cal", True), ("raw", False)):
        f = fit(torch.tensor(d), torch.tensor(ids), k, calibrate=cal)
        extra = {}
        if cal and res is not None:
            by = res.annotators.set_index("annotator")
            extra = dict(low=by["eta_low"].reindex(NAMES).to_numpy(), high=by["eta_high"].reindex(NAMES).to_numpy())
        out[name] = metrics(d, f.w.numpy(), ids, flipped, true_eta, f.eta.numpy(), **extra)
        out[name]["temperature"] = f.temperature
    return out


NAMES = ["a1", "a2", "a3"]


def run_seed(seed: int, n: int, settings: list[str]) -> list[dict]:
    from rpo.audit import audit, known_flips
    from rpo.models import load_model

    records = []
    for rule in dict.fromkeys(SETTINGS[s][0] for s in settings):
        ds = known_flips(n, seed=seed, rule=rule)
        public = ds.remove_columns(HIDDEN)
        ids = np.array([NAMES.index(a) for a in ds["annotator"]])
        flipped = np.asarray(ds["is_flipped"], dtype=bool)
        true_eta = [float(1 - flipped[ids == k].mean()) for k in range(3)]
        base = {"seed": seed, "n": n, "rule": rule, "true_eta": true_eta, "n_flips": int(flipped.sum())}

        def record(witness, setting, d, seconds, res=None, est=None):
            d = np.asarray(d, dtype=float)
            rec = dict(base, witness=witness, setting=setting, seconds=round(seconds, 2))
            rec.update(est or estimators(d, ids, 3, flipped, true_eta, res))
            records.append(rec)
            c = rec["cal"]
            print(
                f"seed {seed} {setting:9s} {witness:16s} auroc_w {c['auroc_w']:.3f} auroc_d {c['auroc_d']:.3f} "
                f"prec {c['precision_at_flips']:.3f} eta {np.round(c['eta'], 3)} true {np.round(true_eta, 3)} "
                f"max err {c['eta_max_err']:.3f} (raw {rec['raw']['eta_max_err']:.3f}, auroc "
                f"{rec['raw']['auroc_w']:.3f}) {seconds:.0f}s",
                flush=True,
            )

        u = np.random.default_rng(seed).random(n)
        flat = metrics(u * 0, 0.9 + 1e-9 * u, ids, flipped, true_eta, [0.9] * 3)
        record("random", f"{rule} rule", u, 0.0, est={"cal": flat, "raw": flat})
        with tempfile.TemporaryDirectory() as tmp:
            model, _ = load_model("toy", seed=seed)
            model.save_pretrained(tmp)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its in-sample warning: it never trained
                res = audit(public, model="toy", witness_dir=tmp, loss="simpo", beta=1.0, seed=seed, progress=False)
            record("base margin", f"{rule} rule", res.pairs.sort_values("row")["d"].to_numpy(), time.perf_counter() - t)
        for setting in [s for s in settings if SETTINGS[s][0] == rule]:
            for witness, kw in WITNESSES.items():
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = audit(public, model="toy", epochs=SETTINGS[setting][1], seed=seed, progress=False, **kw)
                by_row = res.pairs.sort_values("row")
                assert by_row["row"].tolist() == list(range(n))
                record(witness, setting, by_row["d"].to_numpy(), time.perf_counter() - t, res)
    return records


def summarize(records: list[dict]) -> str:
    from rpo.core.stats import t_interval

    def ci(values):
        m, h = t_interval(values)
        return f"{m:.3f} ± {h:.3f}" if h == h else f"{m:.3f}"

    seeds = sorted({r["seed"] for r in records})
    lines = [
        f"rpo audit against known flips: {records[0]['n']} pairs, flip rates 0.05 / 0.20 / 0.40, seeds {seeds} "
        "(mean ± 95% t-interval over seeds)",
        "",
        "| setting | witness | estimator | AUROC 1-w | AUROC -d | precision@F | eta a1 / a2 / a3 (true) | max eta err "
        "| Brier w | Brier sigmoid(d) | true eta in interval |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((r["setting"], r["witness"]) for r in records))
    for setting, witness in keys:
        rs = [r for r in records if (r["setting"], r["witness"]) == (setting, witness)]
        true = np.mean([r["true_eta"] for r in rs], axis=0)
        for est in ("cal", "raw"):
            ms = [r[est] for r in rs]
            eta = np.mean([m["eta"] for m in ms], axis=0)
            cov = [c for m in ms for c in m.get("covered", [])]
            lines.append(
                f"| {setting} | {witness} | {est} | {ci([m['auroc_w'] for m in ms])} | "
                f"{ci([m['auroc_d'] for m in ms])} | {ci([m['precision_at_flips'] for m in ms])} | "
                f"{' / '.join(f'{x:.3f}' for x in eta)} ({' / '.join(f'{x:.3f}' for x in true)}) | "
                f"{ci([m['eta_max_err'] for m in ms])} | {ci([m['brier_w'] for m in ms])} | "
                f"{ci([m['brier_sigmoid_d'] for m in ms])} | "
                f"{f'{sum(cov)}/{len(cov)}' if cov else 'n/a'} |"
            )
    default = [r for r in records if (r["setting"], r["witness"]) == ("default", "R-DPO x-fit")]
    if default:
        ok = [r["cal"]["auroc_w"] >= 0.92 and r["cal"]["eta_max_err"] <= 0.08 for r in default]
        lines += [
            "",
            "Done criterion (default audit: R-DPO x-fit, 3 epochs, calibrated): AUROC >= 0.92 and every eta within "
            f"0.08 on each seed: {'PASS' if all(ok) else 'FAIL'} "
            + ", ".join(
                f"seed {r['seed']}: AUROC {r['cal']['auroc_w']:.3f}, max err {r['cal']['eta_max_err']:.3f}"
                for r in default
            ),
        ]
        same = all(r[e]["monotone_within"] for r in records if r["witness"] != "random" for e in ("cal", "raw"))
        gap = max(
            abs(a - b)
            for r in records
            if r["witness"] != "random"
            for e in ("cal", "raw")
            for a, b in zip(r[e]["auroc_within_w"], r[e]["auroc_within_d"])
        )
        lines.append(
            f"Within each annotator w is a non-decreasing function of d in every witness's record: {same}; the "
            f"within-annotator AUROCs of 1 - w and -d differ by at most {gap:.4f} (ties where w rounds to 0 or 1)."
        )
    return "\n".join(lines) + "\n"


def main():
    from rpo.io import atomic_write_json, atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--out", default=str(HERE / "audit"), help="stem of the .json / .txt outputs")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    records = []
    for seed in args.seeds:
        records += run_seed(seed, args.n, args.settings)
    text = summarize(records) + f"\ntotal {time.perf_counter() - t0:.0f} s on one thread\n"
    atomic_write_json(Path(args.out + ".json"), records)
    atomic_write_text(Path(args.out + ".txt"), text)
    print(text)


if __name__ == "__main__":
    main()
