"""One training run for the checkpoint fault-injection test (run as a script, in its own process).

    python checkpoint_worker.py OUTPUT_DIR KILL_POINT KILL_STEP

KILL_POINT ``none`` trains to the end. ``after_model_saved``: SIGKILL right after the model of step
KILL_STEP is saved (before its optimizer, trainer state and the rotation). ``after_rotation``: SIGKILL
right after transformers deleted the older checkpoints of that step (the window in which RPO's state used
to be written only afterwards)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

os.environ.update(OMP_NUM_THREADS="1", TRL_EXPERIMENTAL_SILENCE="1", HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest's make_pairs

import torch  # noqa: E402

torch.set_num_threads(1)

import transformers.trainer as hf_trainer  # noqa: E402
from conftest import make_pairs  # noqa: E402
from datasets import Dataset  # noqa: E402

from rpo.models import build_toy_model, build_toy_tokenizer  # noqa: E402
from rpo.training import RobustConfig, RobustTrainer  # noqa: E402

OPTS = dict(
    use_cpu=True,
    bf16=False,
    gradient_checkpointing=False,
    report_to=[],
    disable_tqdm=True,
    seed=0,
    pref_loss="dpo",
    beta=0.5,
    learning_rate=1e-2,
    per_device_train_batch_size=4,
    max_steps=6,
    save_strategy="steps",
    save_steps=2,
    save_total_limit=1,
    logging_steps=1,
)


def make_trainer(output_dir: str) -> RobustTrainer:
    tok = build_toy_tokenizer()
    return RobustTrainer(
        build_toy_model(0, tokenizer=tok),
        ref_model=build_toy_model(1, tokenizer=tok),
        args=RobustConfig(output_dir=output_dir, **OPTS),
        train_dataset=Dataset.from_dict({k: v for k, v in make_pairs(32, flip_frac=0.3).items() if k != "flipped"}),
        processing_class=tok,
    )


def kill_at(trainer: RobustTrainer, point: str, step: int) -> None:
    def die():
        if trainer.state.global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)

    if point == "after_model_saved":
        save_optimizer = trainer._save_optimizer_and_scheduler

        def patched(output_dir):
            die()  # save_model(output_dir) has just run
            return save_optimizer(output_dir)

        trainer._save_optimizer_and_scheduler = patched
    elif point == "after_rotation":
        rotate = hf_trainer.rotate_checkpoints

        def patched_rotate(*args, **kwargs):
            rotate(*args, **kwargs)
            die()

        hf_trainer.rotate_checkpoints = patched_rotate


if __name__ == "__main__":
    out, point, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
    trainer = make_trainer(out)
    kill_at(trainer, point, step)
    trainer.train()
    print("finished", trainer.eta.tolist())
