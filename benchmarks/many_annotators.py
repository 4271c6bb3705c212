"""Many annotators (issue 13): how well does each way of estimating eta rank and place K annotators?

One epoch of R-DPO on the toy world (``rpo.toy.world``, ``WorldConfig()``, the study's own
``rpo.toy.settings.TrainSettings()``: beta 0.5, lr 1e-4, batch 32, 150 steps, so 4,800 freshly drawn
training pairs, each seen once), labelled by a ``pool`` of K annotators (``rpo.data.noise.annotator_pool``:
reliabilities drawn from the stated majority + tail distribution, each annotator labelling a disjoint
share, ``pool_seed = seed``). Three estimates of every eta_k are scored against the truth, each
annotator's *measured* agreement with the oracle on its own labels (``true_reliability``):

* ``eq7``: Algorithm 1's online eq. 7 (alpha 0.1) at the end of the epoch;
* ``count``: the count-aware update (``eta_update="count"``, prior strength n0 = (1 - alpha) / alpha = 9),
  a separate training run;
* ``refit``: ``RobustTrainer.fit_reliability()`` (exact EM at the trained model: eq. 4 with the model's
  eq. 2 log-odds held fixed, eq. 6, to the fixed point) after the eq. 7 run; ``refit_count`` the same after
  the count run.

Scores: Spearman rank correlation with the truth, mean absolute error and the worst error, at K in
{8, 32, 128}, seeds 0-2, mean and 95% t-interval over seeds. Figure 3 analogue at K = 32 (150 labels per
annotator, about MultiPref's labels per annotator): eta_hat for eta0 in {0.80, 0.90, 0.95, 0.99}, seeds
pooled, under eq. 7 and under the refit; "data or prior?" is answered by how the mean eta_hat moves with
eta0 (slope of a least-squares line through the four means: 1 = the prior decides, 0 = the data).

All of the above was fixed before the first measurement. Added after it, and labelled so:

* ``refit_heldout`` (diagnostic): the refit on labels by the same annotators on pairs the model never
  trained on (the toy world's other training pairs; same reliabilities, other flips), scored against those
  labels' measured agreement. The first run showed the in-sample refit far above the truth (mean 0.98 vs
  0.87); this row separates the in-sample bias (the model has trained on the very labels it then scores)
  from the witness's own weakness.
* ``--world learnable``: a simpler learnable preference (``LearnableWorld``), because the toy world's
  witness is weak (its trained policy puts d > 0 on 67% of clean held-out labels): the same settings, the
  same pools, a preference the model learns within the epoch. ``--lr 1e-3`` repeats it with a 10x
  learning rate, chosen from the witness's confidence alone (mean |d| on held-out pairs 1.4 at lr 1e-4 and
  2.7 at 1e-3; an underconfident witness attributes the flips to its own uncertainty, Theorem 4.2 assumes a
  calibrated one). Every run is reported.
* ``--world informative`` (issue 13, item 3): the witness-dial family's informative level,
  ``world_config(rpo.toy.settings.INFORMATIVE_DIAL)`` (dial 0.25), trained at ``rpo.toy.settings.DIAL_SETTINGS``
  (the study's settings with beta 1.0). Both were fixed by issue 12's pre-declared rule (the lowest dial level
  whose plain-DPO witness AUROC is >= 0.85) before this benchmark ever ran on that world; nothing else is tuned
  (the same pools, eta0s, seeds, alpha and refit). Result (``many_annotators_informative.txt``): at K = 32,
  Spearman / MAE eq. 7 0.84 / 0.057, count 0.80 / 0.065, refit 0.79 / 0.065, so the done criterion is NOT met
  there either (the toy world's refit: 0.67 / 0.106); the refit still overstates eta (mean 0.935 vs the truth's
  0.872 at eta0 0.9), the held-out refit 0.84 / 0.041. K = 8: refit 0.96 / 0.062; K = 128: 0.77 / 0.067.
  Data or prior: slope of mean eta_hat against eta0 0.34 under eq. 7 (toy world 0.78), 0.12 for the refit.

* ``--world dial --dial L`` (added at stop 13, after the informative level missed the criterion): the same
  K = 32 measurement (eta0 0.9, eq. 7 and count runs, 3 seeds, ``DIAL_SETTINGS``) at every other level of the
  witness-dial family, 0, 0.5, 0.75 and 1, each reported, whatever it shows: a map of where the refit meets
  the criterion against the level's plain-DPO witness AUROC (``benchmarks/witness.txt``), not a level picked
  for passing. Declared, with this list of levels, before any pool run at those levels. Result
  (``many_annotators_dial<L>.txt``; witness AUROC from ``witness.txt``, 1 seed, and ``witness_seeds3.txt``):

  | dial | witness AUROC | eq. 7 Spearman / MAE | count | refit |
  |---|---|---|---|---|
  | 0 | 0.85 | 0.75 / 0.059 | 0.71 / 0.072 | 0.79 / 0.077 |
  | 0.25 (informative) | 0.87 | 0.84 / 0.057 | 0.80 / 0.065 | 0.79 / 0.065 |
  | 0.5 | 0.94 | 0.88 / 0.059 | 0.90 / 0.060 | 0.92 / 0.055 |
  | 0.75 | 0.93 | 0.91 / 0.057 | 0.90 / 0.060 | 0.92 / 0.061 |
  | 1 | 1.00 | 0.96 / 0.054 | 0.98 / 0.049 | 0.99 / 0.037 (criterion met) |

  The refit ranks better as the witness strengthens and meets the criterion only at the near-perfect end
  (level 1, as in the learnable world); at 0.5-0.75 it is within 0.015 of the Spearman bar, its CIs across it.

The issue's done criterion: at K = 32 the refit reaches Spearman >= 0.93 and MAE <= 0.06.

    OMP_NUM_THREADS=1 TRL_EXPERIMENTAL_SILENCE=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/many_annotators.py
    ... benchmarks/many_annotators.py --world learnable [--lr 1e-3]
    ... benchmarks/many_annotators.py --world informative
    ... benchmarks/many_annotators.py --world dial --dial 0.5 --ks 32 --eta0s 0.9 --figure-dir ""

Outputs: ``benchmarks/many_annotators[_learnable[_lr0.001]|_informative|_dial<L>].{json,txt}`` and
``benchmarks/results/figure3_pool[...].{png,svg}`` (through ``rpo.io.save_figure``; ``--figure-dir ""`` skips it).
27 trainings each; their training and refits took 23, 13, 6 and 8 minutes on one thread of this
shared machine (toy, learnable, learnable at lr 1e-3, informative: 10 minutes' wall; the load varied).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from anywhere, installed or not


class ToyWorld:
    """``rpo.toy.world`` at ``world_config(dial)`` (``"today"``: ``WorldConfig()``, the toy study's world; a
    level: that member of the witness-dial family): the SFT reference policy, training pairs drawn as the
    study does, held-out pairs = the world's other training pairs."""

    def __init__(self, dial: str = "today"):
        from rpo.toy.world import build_world, world_config

        self.world = build_world(world_config(dial), progress=False)
        label = "toy world" if dial == "today" else f"dial-{dial} world"
        self.describe = f"{label} {self.world.path.name} ({len(self.world.train)} train pairs)"

    def pairs(self, n: int, seed: int) -> tuple[list, list]:
        pairs = random.Random(seed).sample(self.world.train, min(n, len(self.world.train)))  # the study's draw
        used = {id(p) for p in pairs}
        return pairs, [p for p in self.world.train if id(p) not in used]

    def models(self, seed: int):
        policy, tok = self.world.load_reference()
        return policy, self.world.load_reference()[0].eval(), tok


class LearnableWorld:
    """A simpler learnable preference (the rule of tests/conftest.py): prompt ``<bos>word:``, chosen the word
    in upper case, rejected it reversed in lower case; the toy Llama from its random initialisation (seed),
    the reference its own initial weights. Learnt within the epoch (clean held-out accuracy 1.0), so eq. 2's
    witness is informative, unlike the toy world's (0.67 on held-out clean labels in the run above)."""

    name = "learnable"
    describe = "learnable preference (upper-case rule), toy Llama from random init"

    @staticmethod
    def draw(n: int, seed: int) -> list[dict]:
        rng, letters = random.Random(seed), "abcdefghijklmnopqrstuvwxyz"
        out = []
        for _ in range(n):
            word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 5)))
            out.append({"prompt": f"<bos>{word}:", "chosen": word.upper(), "rejected": word[::-1]})
        return out

    def pairs(self, n: int, seed: int) -> tuple[list, list]:
        return self.draw(n, seed), self.draw(n // 2, seed + 10_000)

    def models(self, seed: int):
        from rpo.models import build_toy_model, build_toy_tokenizer

        tok = build_toy_tokenizer()
        return build_toy_model(seed, tokenizer=tok), build_toy_model(seed, tokenizer=tok).eval(), tok


def train_pool(world, data, held, *, seed: int, eta0: float, eta_update: str, settings) -> dict:
    """One epoch of R-DPO on ``data``; eta at the end (online), after the exact refit on the training labels,
    and (post-hoc diagnostic) after a refit on ``held``: labels by the same annotators on pairs the model
    never trained on."""
    from rpo.data.schema import public_view
    from rpo.toy.study import toy_trainer

    config = dict(method="dpo", robust=True, layout="pool", noise=0.0, eta0=eta0, alpha=0.1)
    config.update(eta_update=eta_update, objective="gibbs")
    torch.manual_seed(seed)
    policy, reference, tok = world.models(seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rpo-pool-") as out:
        trainer = toy_trainer(policy, reference, tok, data, config, seed, settings, out)
        trainer.train()
        train_s = time.perf_counter() - t0
        online = trainer.eta.tolist()
        t1 = time.perf_counter()
        refit = trainer.fit_reliability().tolist()
        refit_s = time.perf_counter() - t1
        iterations = trainer.state.log_history[-1]["eta_refit/iterations"]
        trainer.eta = torch.full((len(online),), eta0, dtype=torch.float64)  # the held-out refit starts afresh
        refit_heldout = trainer.fit_reliability(public_view(held)).tolist()
    return {
        "names": trainer.annotator_names,
        "online": online,
        "refit": refit,
        "refit_heldout": refit_heldout,
        "train_s": train_s,
        "refit_s": refit_s,
        "iterations": iterations,
    }


def scores(names, eta_hat, truth: dict) -> dict:
    from rpo.toy.metrics import eta_agreement

    return eta_agreement(eta_hat, [truth[n] for n in names])


def pool_data(world, k: int, seed: int, settings):
    """The training labels and (same annotators, other pairs, other flips) the held-out labels."""
    from rpo.data.noise import apply_layout

    pairs, rest = world.pairs(settings.max_steps * settings.batch_size, seed)
    data = apply_layout(pairs, "pool", num_annotators=k, pool_seed=seed, seed=seed)
    return data, apply_layout(rest, "pool", num_annotators=k, pool_seed=seed, seed=seed + 1000)


def figure(fig3: dict, eta0s, k: int, folder: str, world: str, stem: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rpo.io import save_figure

    fig, axes = plt.subplots(1, len(eta0s), figsize=(3.2 * len(eta0s), 2.8), sharey=True)
    bins = np.linspace(0.5, 1.0, 26)
    for ax, e0 in zip(axes, eta0s):
        d = fig3[str(e0)]
        ax.hist(d["eq7"], bins=bins, alpha=0.6, label="eq. 7 (online)")
        ax.hist(d["refit"], bins=bins, histtype="step", lw=1.8, label="exact refit")
        ax.hist(d["truth"], bins=bins, histtype="step", ls="--", color="k", lw=1.0, label="truth (measured)")
        ax.axvline(e0, color="r", lw=1.0, ls=":")
        ax.set_title(f"eta0 = {e0}: mean {np.mean(d['eq7']):.3f} / {np.mean(d['refit']):.3f}", fontsize=9)
        ax.set_xlabel("eta_hat")
    axes[0].set_ylabel(f"annotators (K = {k}, seeds pooled)")
    axes[-1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Figure 3 analogue: estimated eta per annotator, {world}, one epoch of R-DPO", fontsize=10)
    fig.tight_layout()
    paths = save_figure(fig, folder, stem)
    plt.close(fig)
    return [str(p) for p in paths]


def _is_level(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fig-k", type=int, default=32)
    ap.add_argument("--eta0s", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.99])
    ap.add_argument("--world", choices=["toy", "learnable", "informative", "dial"], default="toy")
    ap.add_argument("--dial", default=None, help="--world dial: the level of the witness-dial family")
    ap.add_argument("--max-steps", type=int, default=None, help="default: the world's settings' max_steps")
    ap.add_argument("--lr", type=float, default=None, help="default: the world's settings' lr")
    ap.add_argument(
        "--out", default=None, help="output stem (.json, .txt); default benchmarks/many_annotators[_<world>]"
    )
    ap.add_argument("--figure-dir", default=str(HERE / "results"))  # a benchmark figure, not one of the study's
    a = ap.parse_args(argv)
    torch.set_num_threads(1)

    from rpo.data.noise import true_reliability
    from rpo.io import atomic_write_json, atomic_write_text
    from rpo.toy.metrics import mean_ci
    from rpo.toy.settings import DIAL_SETTINGS, INFORMATIVE_DIAL, TrainSettings

    overrides = {k: v for k, v in (("max_steps", a.max_steps), ("lr", a.lr)) if v is not None}
    if a.world == "informative":  # issue 12's informative witness level, at the dial studies' settings
        world, settings = ToyWorld(INFORMATIVE_DIAL), replace(DIAL_SETTINGS, **overrides)
    elif a.world == "dial":  # another level of the same family, at the same settings
        if a.dial is None or not _is_level(a.dial):
            ap.error(f"--world dial needs --dial LEVEL, a number in [0, 1] (got {a.dial!r})")
        world, settings = ToyWorld(a.dial), replace(DIAL_SETTINGS, **overrides)
    else:
        world, settings = (ToyWorld() if a.world == "toy" else LearnableWorld()), TrainSettings(**overrides)
    suffix = "" if a.world == "toy" else f"_{a.world}{a.dial if a.world == 'dial' else ''}"
    suffix += "" if a.lr is None else f"_lr{a.lr:g}"
    a.out = a.out or str(HERE / f"many_annotators{suffix}")
    lines = [
        f"{world.describe}; {settings}",
        f"pairs per run: {settings.max_steps * settings.batch_size} (one epoch); seeds 0-{a.seeds - 1}",
    ]
    print("\n".join(lines), flush=True)
    runs = []
    cache = {}  # (k, seed, eta0, update) -> result: the eta0 = 0.9 eq. 7 runs serve both parts
    for k in sorted(set(a.ks) | {a.fig_k}):
        for seed in range(a.seeds):
            data, held = pool_data(world, k, seed, settings)
            truth, held_truth = true_reliability(data), true_reliability(held)
            todo = [(0.9, "batch"), (0.9, "count")] if k in a.ks else []
            todo += [(e, "batch") for e in a.eta0s] if k == a.fig_k else []
            for eta0, update in dict.fromkeys(todo):  # in order, each once
                res = train_pool(world, data, held, seed=seed, eta0=eta0, eta_update=update, settings=settings)
                res.update(k=k, seed=seed, eta0=eta0, update=update, truth=[truth[n] for n in res["names"]])
                res["scores_online"] = scores(res["names"], res["online"], truth)
                res["scores_refit"] = scores(res["names"], res["refit"], truth)
                res["scores_refit_heldout"] = scores(res["names"], res["refit_heldout"], held_truth)
                cache[(k, seed, eta0, update)] = res
                runs.append(res)
                print(
                    f"K={k:<3} seed {seed} eta0 {eta0} {update:<5}: online {res['scores_online']}, "
                    f"refit {res['scores_refit']} ({res['iterations']:.0f} it), held-out refit "
                    f"{res['scores_refit_heldout']} ("
                    f"train {res['train_s']:.1f} s, refit {res['refit_s']:.1f} s)",
                    flush=True,
                )

    def agg(values):
        m, h = mean_ci(values)
        return [round(m, 4), round(h, 4) if h == h else None]

    table = {}
    header = f"{'estimate':<12} {'K':>4}  {'Spearman':>17}  {'MAE':>17}  {'worst':>17}"
    out = ["", "eta against the truth (measured agreement), mean +- 95% CI over seeds, eta0 = 0.9:", header]
    for k in a.ks:
        for name, update, key in (
            ("eq7", "batch", "scores_online"),
            ("count", "count", "scores_online"),
            ("refit", "batch", "scores_refit"),
            ("refit_count", "count", "scores_refit"),
            ("refit_heldout", "batch", "scores_refit_heldout"),
        ):
            rs = [cache[(k, s, 0.9, update)][key] for s in range(a.seeds)]
            row = {m: agg([r[m] for r in rs]) for m in ("spearman", "mae", "worst")}
            table[f"{name}@{k}"] = row
            out.append(
                f"{name:<14} {k:>4}  "
                + "  ".join(f"{row[m][0]:.3f} +- {row[m][1] or float('nan'):.3f}" for m in ("spearman", "mae", "worst"))
            )
    fig3 = {}
    out += ["", f"Figure 3 analogue (K = {a.fig_k}, seeds pooled): mean / std of eta_hat per eta0"]
    out.append(f"{'eta0':>5}  {'eq7 mean':>9} {'eq7 std':>8}  {'refit mean':>10} {'refit std':>9}  {'truth mean':>10}")
    for e0 in a.eta0s:
        rs = [cache[(a.fig_k, s, e0, "batch")] for s in range(a.seeds)]
        d = {
            "eq7": [v for r in rs for v in r["online"]],
            "refit": [v for r in rs for v in r["refit"]],
            "truth": [v for r in rs for v in r["truth"]],
        }
        fig3[str(e0)] = d
        out.append(
            f"{e0:>5}  {np.mean(d['eq7']):>9.3f} {np.std(d['eq7']):>8.3f}  {np.mean(d['refit']):>10.3f} "
            f"{np.std(d['refit']):>9.3f}  {np.mean(d['truth']):>10.3f}"
        )
    slopes = {}
    if len(a.eta0s) > 1:  # one eta0 (the dial map) has no slope
        slopes = {
            m: float(np.polyfit(a.eta0s, [np.mean(fig3[str(e)][m]) for e in a.eta0s], 1)[0]) for m in ("eq7", "refit")
        }
        out.append(
            f"slope of mean eta_hat against eta0: eq. 7 {slopes['eq7']:.3f}, refit {slopes['refit']:.3f} "
            "(1: the prior decides the mean; 0: the data does)"
        )
    k32 = table.get("refit@32")
    if k32:
        ok = k32["spearman"][0] >= 0.93 and k32["mae"][0] <= 0.06
        out.append(
            f"done criterion (K = 32, refit: Spearman >= 0.93, MAE <= 0.06): Spearman {k32['spearman'][0]:.3f}, "
            f"MAE {k32['mae'][0]:.3f}: {'MET' if ok else 'NOT MET'}"
        )
    stem = "figure3_pool" + suffix
    paths = figure(fig3, a.eta0s, a.fig_k, a.figure_dir, world.describe.split(" (")[0], stem) if a.figure_dir else []
    if paths:
        out.append(f"figure: {', '.join(Path(p).name for p in paths)} in {a.figure_dir}")
    print("\n".join(out))
    atomic_write_text(a.out + ".txt", "\n".join(lines + out) + "\n")
    atomic_write_json(
        a.out + ".json",
        {
            "args": vars(a),
            "settings": settings.to_dict(),
            "table": table,
            "figure3": fig3,
            "slopes": slopes,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
