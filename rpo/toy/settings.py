"""The training settings of the toy study, stated once: every training of a profile shares them
(:mod:`rpo.pipeline.profiles` passes the profile's values to ``02_train``, whose parameters default to
these). Toy values as measured in ``benchmarks/noise_premise.txt``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class TrainSettings:
    """Shared by every training of a profile (toy values measured in benchmarks/noise_premise.txt)."""

    beta: float = 0.5  # DPO/IPO/SimPO/CPO temperature on the toy model (paper: 0.01 on 7B models)
    lr: float = 1e-4  # 1e-3 made DPO worse than its reference even on clean data
    batch_size: int = 32
    max_steps: int = 150  # pairs seen = max_steps * batch_size, each once (one epoch, as in the paper)
    n_test_pairs: int = 273  # clean test pairs for clean_acc
    n_heldout: int = 200  # held-out prompts for the win rates
    samples: int = 2  # samples per held-out prompt (lower variance of the win rate)
    n_confidence: int = 1024  # training pairs re-scored by a full E-step for auroc_w (a forward pass each)
    lr_scheduler_type: str = "constant"
    model: str = "toy"  # the policy: "toy" (the world's SFT reference) or "small" (SmolLM2-135M-Instruct)

    @classmethod
    def from_params(cls, **params) -> "TrainSettings":
        """Settings from a notebook's parameters: a None value keeps the default; unknown names are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: v for k, v in params.items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


#: the witness-dial studies' settings (issue 12; benchmarks/dynamic_range.md): beta 1.0, so that 30% flips
#: cost clean-label DPO >= 0.10 of win rate at dial 0.75; the committed toy study keeps TrainSettings()
DIAL_SETTINGS = TrainSettings(beta=1.0)

#: the informative witness level of the Table 2 analogue beside today's (issue 12): the lowest dial level whose
#: plain-DPO witness AUROC (benchmarks/witness.py, noise 0.2) is >= 0.85, a rule written before any RPO number
#: of the dial worlds was looked at. On 3 seeds (benchmarks/witness_seeds3.txt, the rerun the README asked for
#: before relying on the 1-seed 0.850 of level 0): level 0 0.845 +- 0.030, level 0.25 0.873 +- 0.009
INFORMATIVE_DIAL = "0.25"
