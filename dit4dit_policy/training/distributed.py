"""One process or many (torchrun): the process group, and the model wrapped for data parallelism.

- One process: the model as it is.
- `ddp`: DistributedDataParallel; every process holds the whole model and optimiser state.
- `fsdp`: PyTorch's fully_shard (FSDP2) with the whole model as one unit: parameters, gradients
  and optimiser state are sharded between steps and gathered for each forward and backward. One
  unit, because the loss and inference call into the model through methods (the video trunk, the
  action DiT's key/value projection) that bypass the submodules' forward, where finer FSDP units
  gather their weights.

Whatever the wrapping, the loss runs through `LossModule.forward`, so DDP and FSDP see one forward
per step, and checkpoints hold the same full state dicts (keys of the bare model).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from dit4dit_policy.model.dit4dit import DiT4DiT
from dit4dit_policy.model.loss import TrainBatch, compute_loss

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
_PREFIX = "model."  # LossModule's attribute holding the DiT4DiT


@dataclass(frozen=True)
class Processes:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device_kind: str) -> Processes:
        """Join torchrun's process group when launched by it (WORLD_SIZE > 1)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device_kind == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("train.device is cuda but this torch build sees no CUDA device")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        if world == 1:
            return cls(rank=0, world=1, device=device)
        if not dist.is_initialized():
            if device.type == "cuda":
                dist.init_process_group(backend="nccl", device_id=device)
            else:
                dist.init_process_group(backend="gloo")
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), device=device)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of `t` over all processes (`t` itself with one), on this process's device (NCCL
        reduces GPU tensors only)."""
        if self.world > 1:
            t = t.to(self.device, copy=True)
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def agree(self, message: str | None) -> None:
        """Raise ValueError on every process if any process has a problem (its message), so that
        no process is left waiting in a collective for one that failed a check."""
        messages = [message]
        if self.world > 1:
            messages = [None] * self.world
            dist.all_gather_object(messages, message)
        problems = [m for m in messages if m]
        if problems:
            raise ValueError(problems[0])


class LossModule(nn.Module):
    """`compute_loss` as a module, so the data-parallel wrapper sees the whole step's forward."""

    def __init__(self, model: DiT4DiT):
        super().__init__()
        self.model = model

    def forward(self, batch: TrainBatch, sample_seeds: list[int]) -> tuple[torch.Tensor, ...]:
        parts = compute_loss(self.model, batch, sample_seeds=sample_seeds)
        return parts.action, parts.video, parts.action_entries


class Wrapped:
    """The model as the step sees it (`module`, possibly DDP/FSDP) and as everything else sees it."""

    def __init__(self, model: DiT4DiT, procs: Processes, parallel: str):
        self.model = model
        self.loss = LossModule(model)
        self.fsdp = procs.world > 1 and parallel == "fsdp"
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            fully_shard(self.loss)
            self.module: nn.Module = self.loss
        elif procs.world > 1:
            device_ids = [procs.device.index] if procs.device.type == "cuda" else None
            self.module = nn.parallel.DistributedDataParallel(self.loss, device_ids=device_ids)
        else:
            self.module = self.loss

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """Within the block the bare model holds its full weights on every process, for calls that
        are not the loss forward (validation)."""
        if not self.fsdp:
            yield
            return
        self.loss.unshard()
        try:
            yield
        finally:
            self.loss.reshard()

    def full_state(self) -> dict[str, torch.Tensor]:
        """Every weight of the bare model on CPU, on the main process (empty elsewhere)."""
        state = get_model_state_dict(self.loss, options=_FULL)
        return {k.removeprefix(_PREFIX): v for k, v in state.items()}

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """The full optimiser state keyed by parameter name, on CPU (complete on the main process)."""
        return get_optimizer_state_dict(self.loss, optimizer, options=_FULL)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        set_optimizer_state_dict(self.loss, optimizer, state, options=StateDictOptions(full_state_dict=True))
