"""torch.distributed helpers: one process per GPU (torchrun), or a single process."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def pick_device(name: str) -> torch.device:
    """``auto``: this process's GPU when there is one, else the CPU; otherwise the named device.

    ValueError for a name that is not a device, or a CUDA device on a machine without one.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r}: not a device name (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: no CUDA GPU is available to this process; use cpu or auto")
    return device


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order (a one-element list without distribution)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def batch_share(total: int, scope: str, key: str, processes: int | None = None) -> int:
    """This process's share of a batch size: ``total / processes`` for a ``global`` batch (an error
    naming ``key`` when it does not divide), ``total`` itself for a ``per_rank`` one."""
    from pldc_core.config import ConfigError

    processes = world_size() if processes is None else processes
    if scope == "per_rank":
        return total
    if total % processes:
        raise ConfigError(f"{key}: the batch size {total} is global (train.batch_scope=global) and does not "
                          f"divide among {processes} processes; use a multiple of {processes}")
    return total // processes
