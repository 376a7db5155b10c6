"""torch.distributed glue: one store written by K ranks (torchrun; gloo on CPU, nccl on GPUs)."""

from __future__ import annotations

import os

import torch.distributed as dist


def init_from_env(device: str) -> tuple[int, int]:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns (rank, world_size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return rank_world()


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device(device: str) -> str:
    """cuda → cuda:<LOCAL_RANK> under torchrun; anything else unchanged."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def barrier() -> None:
    if rank_world()[1] > 1:
        dist.barrier()


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    if rank_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

