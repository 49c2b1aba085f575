"""Multi-label training of the fusion model's graphs on a CPU (PyTorch).

Small, plain loops: AdamW, a one-cycle learning rate, binary cross-entropy over the
labels (a chunk may hold several species or none). Every random choice (initial weights,
batch order, time shifts, dropout) comes from one seeded generator, so a run with the
same seed, data and thread count gives the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


@dataclass(frozen=True)
class FitOptions:
    epochs: int
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    #: Roll each training item along time by a random amount: calls may fall anywhere in a
    #: chunk, and the roll keeps every call (the chunk wraps around).
    time_shift: bool = True


class Stack(nn.Module):
    """Modules applied in turn (the embedder and its classifier, trained as one branch)."""

    def __init__(self, *parts: nn.Module) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for part in self.parts:
            x = part(x)
        return x


def _shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each item rolled along its last (time) axis by its own random offset."""
    length = x.shape[-1]
    offsets = torch.randint(0, length, (x.shape[0],), generator=generator)
    index = (torch.arange(length)[None, :] - offsets[:, None]) % length
    index = index.view(x.shape[0], *([1] * (x.dim() - 2)), length).expand_as(x)
    return torch.gather(x, -1, index)


def fit(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, options: FitOptions,
        generator: torch.Generator, desc: str = "train", bar: bool = False,
        log: Callable[[str], None] | None = None) -> list[float]:
    """Train `model` in place on ([n, ...] inputs, [n, C] multi-hot targets); returns the
    mean loss of each epoch."""
    x_all = torch.from_numpy(inputs)
    y_all = torch.from_numpy(targets)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    steps = options.epochs * -(-len(x_all) // options.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr,
                                                   total_steps=max(steps, 1), pct_start=0.2)
    loss_fn = nn.BCEWithLogitsLoss()
    losses = []
    model.train()
    with tqdm(total=steps, desc=desc, unit="batch", disable=not bar, leave=False) as progress:
        for epoch in range(options.epochs):
            order = torch.randperm(len(x_all), generator=generator)
            total = 0.0
            for start in range(0, len(order), options.batch):
                rows = order[start:start + options.batch]
                if len(rows) < 2:  # batch norm needs two items
                    continue
                x = x_all[rows]
                if options.time_shift:
                    x = _shift(x, generator)
                loss = loss_fn(model(x), y_all[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(rows)
                progress.update(1)
            losses.append(total / len(x_all))
            if log:
                log(f"{desc}: epoch {epoch + 1}/{options.epochs}, loss {losses[-1]:.4f}")
    model.eval()
    return losses


@torch.no_grad()
def predict(model: nn.Module, inputs: np.ndarray, batch: int = 64) -> np.ndarray:
    """Sigmoid outputs [n, C] of `model` in evaluation mode (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    parts = [torch.sigmoid(model(torch.from_numpy(inputs[i:i + batch]).to(device))).cpu()
             for i in range(0, len(inputs), batch)]
    return torch.cat(parts).numpy()


def training_device(choice: str = "auto") -> torch.device:
    """cuda when asked for, or when `auto` and PyTorch sees a GPU; else the CPU."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def unfreeze(model: nn.Module) -> nn.Module:
    """Make every parameter trainable (LoRA layers freeze their base weights)."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model
