"""The one training loop: AdamW, linear warmup + cosine decay, gradient clipping, early stopping on a validation
score with the best weights kept, and resumable from a checkpoint of its whole state. Teachers, students and
pre-training all train through ``fit``."""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mobclf.console import console, progress
from mobclf.errors import UserError
from mobclf.stages import FitConfig
from mobclf.train import distributed
from mobclf.train.batching import batch_indices
from mobclf.train.state import NOT_THE_RUN


@dataclass
class FitResult:
    best_score: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None  # the global step a resumed run started at
    stopped: str | None = None  # why training ended early on a non-finite loss (the best weights before it are kept)
    processes: int = 1  # torchrun processes that trained together (their weights checked equal at the end)


class _LossOf(nn.Module):
    """``batch_loss`` as the forward of a module that holds ``module``: what DistributedDataParallel wraps, so that it
    sees the parameters the loss uses, whatever the loss calls (a student, its projections, a frozen teacher)."""

    def __init__(self, module: nn.Module, batch_loss: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.module, self.batch_loss = module, batch_loss

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.batch_loss(index)


def fit(module: nn.Module, n_examples: int, batch_loss: Callable[[torch.Tensor], torch.Tensor],
        validate: Callable[[], float] | None, config: FitConfig, description: str, *,
        checkpoint: Path | None = None, score_name: str = "val micro-F1", minimize: bool = False,
        lengths: torch.Tensor | None = None) -> FitResult:
    """Train every parameter of ``module`` (the model plus any learned projections) on ``batch_loss(indices)``.

    After each epoch ``validate()`` returns a score to maximise (``score_name``, val micro-F1 by default), or with
    ``minimize`` one to minimise (a validation loss), logged and recorded as it is; training stops after
    ``patience`` epochs without improvement and ``module`` ends holding the weights of its best epoch. Without
    ``validate`` (e.g. FitNets hint pre-training) every epoch runs and the last weights are kept.
    With the examples' token ``lengths``, batches group texts of similar length (see ``batch_indices``).

    With ``checkpoint`` the whole training state is saved there every ``config.save_every`` optimizer steps (0: at
    epoch ends only) and at every epoch end, and a run that finds the file continues where it stopped: the batches of an
    epoch depend only on seed and epoch, and the torch RNG state is restored, so ``batch_loss`` sees what an
    uninterrupted run would have seen.

    Under torchrun (see ``distributed``) every process runs this loop on its share of each global batch through
    DistributedDataParallel; losses, scores and the stopping decision are the same on every rank, and rank 0 alone
    writes the checkpoint (with every rank's RNG state).
    """
    world = distributed.world_size() if distributed.active() else 1
    torch.manual_seed(distributed.rank_seed(config.seed))
    parameters = [p for p in module.parameters() if p.requires_grad]
    device = parameters[0].device if parameters else torch.device("cpu")
    # static_graph: each fit uses one set of parameters throughout, which may leave some out (TinyBERT's projection
    # after its intermediate stage); DDP finds them in the first step instead of searching the graph every step
    loss_of = DistributedDataParallel(_LossOf(module, batch_loss), static_graph=True) if world > 1 else batch_loss
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(n_examples / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    from transformers import get_cosine_schedule_with_warmup  # here: importing transformers takes seconds

    scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    result = FitResult(best_score=math.inf if minimize else -math.inf, best_epoch=0)
    best_state, stale, first_epoch, skip, running = None, 0, 1, 0, 0.0
    fingerprint = {"config": {key: value for key, value in asdict(config).items() if key not in NOT_THE_RUN},
                   "n_examples": n_examples, **({"minimize": True} if minimize else {}),
                   **({"processes": world} if world > 1 else {})}
    if checkpoint is not None and Path(checkpoint).is_file():
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            if state["fingerprint"] != fingerprint:
                raise UserError("is the training state of another configuration or data; start over with --restart",
                                path=checkpoint)
            module.load_state_dict(state["module"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            mine = state["ranks"][distributed.rank()]
            torch.set_rng_state(mine["rng"])
            if torch.cuda.is_available() and mine["cuda_rng"] is not None:
                torch.cuda.set_rng_state(mine["cuda_rng"])
            result = FitResult(**state["result"])
            best_state, stale, first_epoch, skip = (state[key] for key in ("best_state", "stale", "epoch", "step"))
            running = mine["running"]
        except UserError:
            raise
        except Exception as err:  # truncated, not a torch file, or another shape: torch and pickle raise many kinds
            reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
            raise UserError(f"the saved training state is damaged ({reason}); start over with --restart",
                            path=checkpoint) from None
        result.resumed_from = (first_epoch - 1) * steps_per_epoch + skip
        console.log(f"{description}: resuming from epoch {first_epoch} step {skip}")

    def save(epoch: int, step: int) -> None:
        """The state after ``step`` optimizer steps of ``epoch``, written to a temporary file, then renamed."""
        result.seconds = round(time.perf_counter() - start, 2)
        ranks = distributed.gather({"rng": torch.get_rng_state(), "running": running,  # what differs per rank
                                    "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() else None})
        if not distributed.is_main():
            return
        state = {"fingerprint": fingerprint, "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "ranks": ranks, "result": asdict(result),
                 "best_state": best_state, "stale": stale, "epoch": epoch, "step": step}
        partial = Path(checkpoint).with_name(Path(checkpoint).name + ".tmp")
        torch.save(state, partial)
        os.replace(partial, checkpoint)

    def accumulate_gradients(index: torch.Tensor) -> torch.Tensor:
        """Backpropagate the loss of one global batch: this process's share, in ``config.accumulate`` pieces (each
        weighted by its size, so the gradient is the batch mean's however it is cut; DDP averages the processes'
        when the last piece is done), under bf16 autocast if asked. Returns the (weighted) loss."""
        pieces = [piece for piece in torch.tensor_split(distributed.share(index), config.accumulate) if len(piece)]
        total = torch.zeros((), device=device)
        for number, piece in enumerate(pieces, start=1):
            not_yet = loss_of.no_sync() if world > 1 and number < len(pieces) else contextlib.nullcontext()
            with not_yet:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                    loss = loss_of(piece)
                if len(pieces) > 1 or world > 1:
                    loss = loss * (len(piece) * world / len(index))
                loss.backward()
            total += loss.detach().float()
        return total

    start = time.perf_counter() - result.seconds
    last_val = f" | {score_name} {result.history[-1]['val_score']:.4f}" if validate and result.history else ""
    with progress() as bar:
        task = bar.add_task(description, total=total_steps, completed=result.resumed_from or 0, status="")
        for epoch in range(first_epoch, config.epochs + 1):
            module.train()
            epoch_start = time.perf_counter()
            batches = batch_indices(n_examples, config.batch_size, shuffle=True, seed=config.seed + epoch,
                                    lengths=lengths)
            for step, index in enumerate(batches[skip:], start=skip + 1):
                if len(index) < world:  # a last batch too small to give every process a text
                    continue
                optimizer.zero_grad(set_to_none=True)
                loss = accumulate_gradients(index)
                if not distributed.all_true(bool(torch.isfinite(loss)), device):
                    result.stopped = f"the training loss became {loss.item()} at epoch {epoch} step {step}"
                    break
                nn.utils.clip_grad_norm_(parameters, config.grad_clip)
                optimizer.step()
                scheduler.step()
                running += loss.item()
                bar.update(task, advance=1, status=f"epoch {epoch} loss {running / step:.4f}{last_val}")
                if checkpoint is not None and config.save_every and (
                        (epoch - 1) * steps_per_epoch + step) % config.save_every == 0:
                    save(epoch, step)
            if result.stopped:
                if best_state is None:
                    raise UserError(f"{description}: {result.stopped}, before any epoch ended well; nothing was "
                                    "written (lower --lr or the loss weights)")
                console.log(f"[yellow]{description}: {result.stopped}; stopping with the weights of epoch "
                            f"{result.best_epoch}")
                break
            module.eval()
            score = distributed.same_on_every_rank(validate()) if validate else None
            epoch_loss = distributed.mean_over_ranks(running / len(batches), device)
            result.history.append({"epoch": epoch, "train_loss": epoch_loss, "val_score": score,
                                   "seconds": round(time.perf_counter() - epoch_start, 2)})
            console.log(f"{description}: epoch {epoch} loss {epoch_loss:.4f}"
                        + (f" {score_name} {score:.4f}" if validate else ""))
            last_val = f" | {score_name} {score:.4f}" if score is not None else ""
            bar.update(task, status=f"epoch {epoch} loss {epoch_loss:.4f}{last_val}")
            skip, running, stop = 0, 0.0, False
            if score is None:
                result.best_epoch = epoch
            elif (score < result.best_score) if minimize else (score > result.best_score):
                result.best_score, result.best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    console.log(f"{description}: early stop, no improvement for {stale} epochs")
                    bar.update(task, total=epoch * steps_per_epoch)
                    stop = True
            if checkpoint is not None:
                save(config.epochs + 1 if stop else epoch + 1, 0)  # a stopped run resumes with nothing left to do
            if stop:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    if world > 1:
        if not distributed.parameters_agree(module):
            raise RuntimeError(f"{description}: the {world} processes ended with different weights")
        result.processes = world
    result.seconds = round(time.perf_counter() - start, 2)
    return result
