"""torch.distributed set-up from torchrun or SageMaker multi-instance env, plus small collectives.

One process per host under SageMaker (`SM_HOSTS` / `SM_CURRENT_HOST`); rank = the host's index.
MASTER_ADDR / MASTER_PORT win when set (the local cloud runs every "host" on 127.0.0.1).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from training.config import InputError

DEFAULT_PORT = "29500"


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect(env: Mapping[str, str]) -> tuple[DistInfo, dict[str, str]]:
    """Rank layout and the MASTER_* rendezvous variables this process should use."""
    if int(env.get("WORLD_SIZE", "1")) > 1:  # torchrun (or anything exporting its variables)
        info = DistInfo(int(env.get("RANK", "0")), int(env["WORLD_SIZE"]),
                        int(env.get("LOCAL_RANK", "0")))
        return info, {"MASTER_ADDR": env.get("MASTER_ADDR", "127.0.0.1"),
                      "MASTER_PORT": env.get("MASTER_PORT", DEFAULT_PORT)}
    hosts = _sm_hosts(env)
    if len(hosts) <= 1:
        return DistInfo(), {}
    current = env.get("SM_CURRENT_HOST", "")
    if current not in hosts:
        raise InputError(f"SM_CURRENT_HOST {current!r} is not in SM_HOSTS {hosts}")
    return DistInfo(hosts.index(current), len(hosts), 0), {
        "MASTER_ADDR": env.get("MASTER_ADDR", hosts[0]),
        "MASTER_PORT": env.get("MASTER_PORT", DEFAULT_PORT)}


def _sm_hosts(env: Mapping[str, str]) -> list[str]:
    raw = env.get("SM_HOSTS", "")
    if not raw:
        return []
    try:
        hosts = json.loads(raw)
    except json.JSONDecodeError:
        raise InputError(f"SM_HOSTS is not a JSON list: {raw!r}") from None
    if not isinstance(hosts, list):
        raise InputError(f"SM_HOSTS is not a JSON list: {raw!r}")
    return [str(h) for h in hosts]


def init(info: DistInfo, rendezvous: dict[str, str], device: torch.device) -> None:
    if not info.enabled:
        return
    os.environ.update(rendezvous)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", rank=info.rank,
                            world_size=info.world_size, timeout=timedelta(minutes=30))


def shutdown(info: DistInfo, finished: bool = True) -> None:
    """Tear the process group down. After a normal run every rank first meets at a barrier:
    a rank that destroys its group while a peer is still writing its outputs closes the gloo
    pairs under that peer, whose I/O thread then aborts the process ("terminate called
    without an active exception"). After an error there is no barrier, as the peers may never
    arrive."""
    if not (info.enabled and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_rows(x: torch.Tensor, pad_to: int, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's rows; ranks pad to `pad_to` rows since all_gather needs equal
    shapes, and the padding is cut off again using the gathered row counts."""
    if not info.enabled:
        return x
    padded = torch.zeros((pad_to, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: len(x)] = x
    counts = torch.tensor([len(x)], device=x.device)
    all_counts = [torch.zeros_like(counts) for _ in range(info.world_size)]
    dist.all_gather(all_counts, counts)
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(c)] for p, c in zip(parts, all_counts, strict=True)])


def gather_objects(obj, info: DistInfo) -> list:
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo):
    """Rank 0's `obj` on every rank (rank 0 decides, e.g. which checkpoint to resume)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
