"""Training on several processes with torchrun and ``torch.distributed`` (DistributedDataParallel).

``torchrun --nproc_per_node N mobclf train-teacher ...`` starts N copies of the command; each reads ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` from its environment. :func:`setup` joins them into one process group (gloo on CPU,
NCCL on CUDA, one GPU per process) and says which device this process trains on. From there:

- every process builds the same model; DistributedDataParallel copies rank 0's weights to the others and averages
  the gradients, so the weights stay equal on every rank (:func:`parameters_agree` proves it at the end);
- each global batch of ``--batch-size`` texts is cut into one share per process (:func:`share`), so the batch size
  and learning rate are what the user set whatever N is;
- validation and prediction are split the same way and summed (:func:`summed`), so every rank scores the whole
  val split and takes the same early-stopping decision;
- rank 0 alone claims and writes artifacts and the teacher-output cache, and logs; the others wait for it.

Without torchrun (``WORLD_SIZE`` unset or 1) every function here is the one-process answer and nothing is started.
"""

from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mobclf.artifacts import Artifact, check_output_dir, load_artifact
from mobclf.console import console
from mobclf.models import resolve_device


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Whether this process writes artifacts and logs (rank 0, or the only process)."""
    return rank() == 0


def active() -> bool:
    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def setup(device: str) -> torch.device:
    """Join the torchrun process group (once) and return this process's device: ``cuda:LOCAL_RANK`` under torchrun on
    CUDA, else :func:`mobclf.models.resolve_device`'s answer. Other ranks than 0 print nothing from here on."""
    resolved = resolve_device(device)
    if world_size() == 1:
        return resolved
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    console.quiet = not is_main()
    return resolved


def rank_seed(seed: int) -> int:
    """The seed of this rank's dropout and other random draws: the run's seed on rank 0, derived from it elsewhere (so
    ranks do not draw the same dropout masks, and a rerun draws what the first run drew)."""
    return seed if rank() == 0 else seed + 1_000_003 * rank()


def share(index: torch.Tensor) -> torch.Tensor:
    """This rank's part of a global batch: rows ``rank, rank + N, ...``."""
    return index[rank()::world_size()] if active() else index


def my_batches(batches: list[torch.Tensor]) -> list[torch.Tensor]:
    """The batches this process predicts: every N-th, from its rank on (all of them in one process)."""
    return batches[rank()::world_size()] if active() else batches


def barrier() -> None:
    if active():
        dist.barrier()


def gather(part: Any) -> list[Any]:
    """Every rank's ``part`` (any picklable object), in rank order, on every rank."""
    if not active():
        return [part]
    parts = [None] * world_size()
    dist.all_gather_object(parts, part)
    return parts


def same_on_every_rank(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a decision all ranks must take alike)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_true(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank."""
    if not active():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def summed(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """The element-wise sum of every rank's ``tensor`` (on ``device`` while summed: NCCL sums CUDA tensors), on every
    rank, on the CPU."""
    if not active():
        return tensor
    on_device = tensor.to(device)
    dist.all_reduce(on_device)
    return on_device.cpu()


def mean_over_ranks(value: float, device: torch.device) -> float:
    return summed(torch.tensor([value], dtype=torch.float64), device).item() / world_size()


def parameters_agree(module: torch.nn.Module) -> bool:
    """Whether every rank holds bit-identical parameters (compared by a hash of their bytes)."""
    digest = hashlib.sha256()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return len(set(gather(digest.hexdigest()))) == 1


def claim_output(out: Path, force: bool) -> None:
    """:func:`mobclf.artifacts.check_output_dir` on rank 0, which alone writes ``out``."""
    if is_main():
        check_output_dir(out, force)


def written_by_main(out: Path, write: Callable[[], None]) -> Artifact:
    """Rank 0 runs ``write()``, which writes the artifact at ``out``; every rank then returns that artifact."""
    if is_main():
        write()
    barrier()
    return load_artifact(out)
