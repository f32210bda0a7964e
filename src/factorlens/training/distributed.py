"""Data parallelism for the training loop under ``torchrun`` (gloo on CPU, NCCL on CUDA).

``torchrun --nproc_per_node=N -m factorlens train ...`` starts N processes with ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK`` in their environment; :func:`context_from_env` joins them into one process group. Every
rank holds the whole (uint8, 64x64) training split in memory and walks the same seeded permutation; at
each step rank r takes its slice ``[r*b, (r+1)*b)`` of the global batch of ``train.batch_size = N*b``
images, so the global batch and epoch order are those of a single-process run. Gradients are averaged
with one coalesced all-reduce per optimizer (generator, then adversary) instead of wrapping the model in
``DistributedDataParallel``: DDP only synchronises through ``forward()``, while the models are trained
through ``compute_loss``/``adversary_loss``, and the adversarial generator step leaves the
discriminator's parameters without gradients, which DDP's reducer treats as an error. Averaging the
gradients of per-rank batch means is exactly the gradient of the global batch mean.

The β-TCVAE estimator runs on each rank's local minibatch (M = b) with the *global* training-set size N,
as in Chen et al.'s multi-GPU setting. BatchNorm normalises with per-process batch statistics (as DDP
without SyncBatchNorm) and its running statistics are broadcast from rank 0 after each step (as DDP's
``broadcast_buffers``). Only rank 0 writes the run directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from factorlens.errors import FactorlensError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job: ``world_size == 1`` means a plain single-process run.

    ``control_group``: the process group for host-side agreement (the stop request). Under NCCL it is a
    second, gloo group, so that agreeing costs a CPU round trip and never a wait for the GPU; under gloo
    it is None (the default group, already on the CPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control_group: Any = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env(device_type: str) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (no-op without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    # every rank must take part in creating a group, so this is decided from the backend alone
    control = dist.new_group(backend="gloo") if dist.get_backend() == "nccl" else None
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       control_group=control)


def _comm_device() -> torch.device:
    """NCCL moves CUDA tensors only; gloo moves CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean_grads(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """Average the gradients of ``params`` over ranks in one all-reduce; parameters without a gradient
    count as zero."""
    if not ctx.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).to(torch.float32) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for param, grad in zip(params, grads, strict=True):
        n = grad.numel()
        averaged = flat[offset : offset + n].view_as(grad).to(grad.dtype) / ctx.world_size
        if param.grad is None:
            param.grad = averaged
        else:
            param.grad.copy_(averaged)
        offset += n


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is true on at least one (one all-reduce of a CPU scalar over
    the control group; the GPU is not involved). Single process: ``flag`` itself."""
    if not ctx.enabled:
        return flag
    vote = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX, group=ctx.control_group)
    return bool(vote.item())


def broadcast_parameters(module: torch.nn.Module, ctx: DistContext) -> None:
    """Make every rank start from rank 0's weights (seeding alone would, but this does not rely on it)."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's floating-point buffers (BatchNorm running statistics) to every rank in one
    broadcast, as DDP does before each forward: batch statistics are per process (no SyncBatchNorm), the
    running estimates used at evaluation time follow process 0."""
    if not ctx.enabled:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1).to(torch.float32) for b in buffers]).to(_comm_device())
    dist.broadcast(flat, src=0)
    offset = 0
    with torch.no_grad():
        for buffer in buffers:
            n = buffer.numel()
            buffer.copy_(flat[offset : offset + n].view_as(buffer).to(buffer.device, buffer.dtype))
            offset += n


def all_reduce_(tensor: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum``, ``min`` or ``max``) of a small tensor; returns it."""
    if ctx.enabled:
        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        moved = tensor.to(_comm_device())
        dist.all_reduce(moved, op=ops[op])
        tensor.copy_(moved.to(tensor.device))
    return tensor


def broadcast_json(value: Any, ctx: DistContext) -> Any:
    """Rank 0's JSON-able ``value`` on every rank (sent as UTF-8 bytes: nothing is unpickled)."""
    if not ctx.enabled:
        return value
    device = _comm_device()
    payload = json.dumps(value).encode("utf-8") if ctx.is_main else b""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if ctx.is_main:
        buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buffer, src=0)
    return json.loads(bytes(buffer.cpu().tolist()).decode("utf-8"))


def run_on_main(fn, ctx: DistContext) -> Any:
    """Run ``fn()`` on rank 0 only and hand its JSON-able result to every rank. A ``FactorlensError`` on
    rank 0 is re-raised on every rank (same class, same message) so no rank waits forever."""
    if not ctx.enabled:
        return fn()
    outcome: dict[str, Any] = {}
    error: FactorlensError | None = None
    if ctx.is_main:
        try:
            outcome = {"ok": fn()}
        except FactorlensError as exc:
            error = exc
            outcome = {"error": type(exc).__name__, "message": str(exc)}
    outcome = broadcast_json(outcome, ctx)
    if "error" in outcome:
        if error is not None:
            raise error
        raise _error_class(outcome["error"])(outcome["message"])
    return outcome["ok"]


def _error_class(name: str) -> type[FactorlensError]:
    from factorlens import errors

    candidate = getattr(errors, name, None)
    if isinstance(candidate, type) and issubclass(candidate, FactorlensError):
        return candidate
    return FactorlensError


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


SHUTDOWN_WAIT_S = 30


def shutdown(ctx: DistContext, *, wait: bool = True) -> None:
    """Leave the process group. With ``wait`` (a run that ended the same way on every rank: finished, or
    stopped by an agreed SIGINT/SIGTERM), every rank first meets the others at a barrier, so that no rank
    tears down its gloo connections while a peer still uses them: rank 1 used to destroy its group while
    rank 0 was still writing ``summary.json``, and gloo's teardown then aborted a process now and then
    (SIGABRT, "terminate called without an active exception"; seen once in CI). Without ``wait`` (this rank
    raised on its own) it leaves at once: the barrier's timeout binds rank 0 only, the other ranks would
    wait for the process group's own timeout (30 minutes)."""
    if ctx.enabled and dist.is_initialized():
        if wait:
            try:
                dist.monitored_barrier(group=ctx.control_group, timeout=timedelta(seconds=SHUTDOWN_WAIT_S))
            except RuntimeError:
                pass  # a peer is gone: nothing left to synchronise with
        dist.destroy_process_group()
