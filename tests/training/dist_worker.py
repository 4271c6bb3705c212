"""Worker for tests/test_trainer_distributed.py: trains R-DPO on the toy data and writes, per rank,
the eta after every optimizer step. Run directly (one process) or under torchrun (gloo on CPU).

    python tests/training/dist_worker.py OUT_DIR GRAD_ACCUM [PREF_LOSS]
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ (conftest)


import torch  # noqa: E402
from conftest import make_pairs  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from rpo.models import build_toy_model, build_toy_tokenizer  # noqa: E402
from rpo.training import RobustConfig, RobustTrainer  # noqa: E402

GLOBAL_BATCH = 8


class Record(TrainerCallback):
    def __init__(self):
        self.trainer, self.etas = None, []

    def on_step_end(self, args, state, control, **kwargs):
        # Registered after RobustTrainer's own callback, so eta already holds this step's update.
        self.etas.append(self.trainer.eta.tolist())


def main(out_dir: str, grad_accum: int, pref_loss: str = "dpo") -> None:
    torch.set_num_threads(1)
    tok = build_toy_tokenizer()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rows = make_pairs(32, flip_frac=0.3, seed=1, annotators=["ann", "bea", "cid"])
    rows.pop("flipped")
    args = RobustConfig(
        output_dir=out_dir,
        pref_loss=pref_loss,
        beta=0.5,
        learning_rate=1e-2,
        max_steps=4,
        seed=0,
        per_device_train_batch_size=GLOBAL_BATCH // (world * grad_accum),
        gradient_accumulation_steps=grad_accum,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        ddp_backend="gloo" if world > 1 else None,
    )
    ref = build_toy_model(1, tokenizer=tok) if pref_loss in ("dpo", "ipo") else None
    record = Record()
    trainer = RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        ref_model=ref,
        args=args,
        train_dataset=Dataset.from_dict(rows),
        processing_class=tok,
        callbacks=[record],
    )
    record.trainer = trainer
    trainer.callback_handler.callbacks.remove(record)  # re-append after RobustTrainer's _EtaCallback
    trainer.add_callback(record)
    trainer.train()
    w = trainer.label_confidences()  # the full E-step, sharded over ranks and gathered in order
    refit = trainer.fit_reliability()  # exact EM on the gathered log-odds: every rank computes the same eta
    rank = int(os.environ.get("RANK", "0"))
    with open(os.path.join(out_dir, f"eta_rank{rank}.json"), "w") as f:
        json.dump(
            {
                "world": world,
                "grad_accum": grad_accum,
                "etas": record.etas,
                "w": w.tolist(),
                "refit": refit.tolist(),
                "names": trainer.annotator_names,
            },
            f,
        )
    trainer.accelerator.end_training()  # destroy the gloo group before exit (avoids an abort at shutdown)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
