"""Run by test_training.py under torchrun: a few DDP iterations, then each rank saves its weights."""
import sys
from pathlib import Path

import torch

from pldc_core import distributed as dist_utils
from pldc_core.config import load_config
from pldc_core.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[3]


def main(data_root: str, out: str) -> None:
    cfg = load_config(ROOT / "configs" / "smoke.yaml", [
        f"data.data_root={data_root}", "data.percent=25", "data.eval_images=4", "pldc.c_t=0.0", "pldc.m_t=0.0",
        "train.max_iters=6", "train.burn_in_iters=3", "train.checkpoint_every=3", "train.eval_every=6",
        "records.num_images=4", "train.device=cpu"])
    trainer = Trainer(cfg, Path(out) / "run")
    trainer.train()
    # the labeled images each rank draws in its first two steps (they must differ between ranks)
    seen = []
    from pldc_core.data.loader import infinite_batches

    batches = infinite_batches(trainer.data.labeled, cfg.train.batch_labeled, seed=cfg.train.seed,
                               rank=dist_utils.rank(), world_size=dist_utils.world_size())
    for _ in range(2):
        seen += [s.image_id for s in next(batches)]
    # Parameters must agree; BatchNorm running statistics are per-rank by design (SyncBatchNorm is
    # used on CUDA only), so they are not compared.
    result = {"iteration": trainer.iter, "student": dict(trainer.student.named_parameters()),
              "teacher": dict(trainer.teacher.named_parameters()), "seen": seen}
    # resuming puts back this rank's own random stream, not rank 0's
    trainer.close()
    dist_utils.barrier()
    Trainer(cfg, Path(out) / "run", resume=True)
    result["rng_after_resume"] = torch.get_rng_state()
    torch.save(result, Path(out) / f"rank{dist_utils.rank()}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
