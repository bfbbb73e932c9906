"""The one training loop: AdamW, linear warmup + cosine decay, gradient clipping, early stopping on a validation
score with the best weights kept. Teachers and students both train through ``fit``."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from transformers import get_cosine_schedule_with_warmup

from mobclf.console import console, progress
from mobclf.train.batching import batch_indices


@dataclass
class FitConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    patience: int = 3
    grad_clip: float = 1.0
    seed: int = 42


@dataclass
class FitResult:
    best_score: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def fit(module: nn.Module, n_examples: int, batch_loss: Callable[[torch.Tensor], torch.Tensor],
        validate: Callable[[], float] | None, config: FitConfig, description: str) -> FitResult:
    """Train every parameter of ``module`` (the model plus any learned projections) on ``batch_loss(indices)``.

    After each epoch ``validate()`` returns a score to maximise (val micro-F1); training stops after ``patience``
    epochs without improvement and ``module`` ends holding the weights of its best epoch. Without ``validate``
    (e.g. FitNets hint pre-training) every epoch runs and the last weights are kept.
    """
    torch.manual_seed(config.seed)
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(n_examples / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    result = FitResult(best_score=-math.inf, best_epoch=0)
    best_state, stale, start, last_val = None, 0, time.perf_counter(), ""
    with progress() as bar:
        task = bar.add_task(description, total=total_steps, status="")
        for epoch in range(1, config.epochs + 1):
            module.train()
            epoch_start, running = time.perf_counter(), 0.0
            batches = batch_indices(n_examples, config.batch_size, shuffle=True, seed=config.seed + epoch)
            for step, index in enumerate(batches, start=1):
                loss = batch_loss(index)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(parameters, config.grad_clip)
                optimizer.step()
                scheduler.step()
                running += loss.item()
                bar.update(task, advance=1, status=f"epoch {epoch} loss {running / step:.4f}{last_val}")
                if not console.is_terminal and step % max(1, len(batches) // 10) == 0:  # a log file sees no bar
                    console.log(f"{description}: epoch {epoch} step {step}/{len(batches)} loss {running / step:.4f}")
            module.eval()
            score = validate() if validate else None
            result.history.append({"epoch": epoch, "train_loss": running / len(batches), "val_score": score,
                                   "seconds": round(time.perf_counter() - epoch_start, 2)})
            console.log(f"{description}: epoch {epoch} loss {running / len(batches):.4f}"
                        + (f" val micro-F1 {score:.4f}" if validate else ""))
            last_val = f" | val micro-F1 {score:.4f}" if score is not None else ""
            if score is None:
                result.best_epoch = epoch
            elif score > result.best_score:
                result.best_score, result.best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    console.log(f"{description}: early stop, no improvement for {stale} epochs")
                    bar.update(task, total=epoch * steps_per_epoch)
                    break
    if best_state is not None:
        module.load_state_dict(best_state)
    result.seconds = round(time.perf_counter() - start, 2)
    return result
