"""Helpers every Ray Train loop shares: metrics across workers, where workers ran."""

from __future__ import annotations

import os
from typing import Any

import ray
import ray.train
import torch
import torch.distributed as dist


def gather_placement(samples: int) -> list[dict[str, Any]]:
    """Per worker (rank order): the Ray node and actor it ran on (and its process id), and
    the examples it trained on."""
    context = ray.get_runtime_context()
    mine = {
        "rank": ray.train.get_context().get_world_rank(),
        "node_id": context.get_node_id(),
        "actor_id": context.get_actor_id(),
        "pid": os.getpid(),
        "samples": samples,
    }
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return everyone


def mean_across_workers(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    return sum_across_workers(value, device) / dist.get_world_size()


def sum_across_workers(value: float, device: torch.device) -> float:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


__all__ = ["gather_placement", "is_distributed", "mean_across_workers", "sum_across_workers"]
