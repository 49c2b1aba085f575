"""The two MLP branches: the embedding classifier and the meta model over branch outputs."""

from __future__ import annotations

from torch import nn


def mlp(
    in_dim: int, hidden: tuple[int, ...], out_dim: int, *, batch_norm: bool, dropout: float
) -> nn.Sequential:
    """Linear (+ batch norm) + ReLU + dropout per hidden width, then a linear output."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(in_dim, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def embed_classifier(hidden: tuple[int, ...], num_classes: int, embedding_dim: int = 2048) -> nn.Sequential:
    """embedding [B, 2048] -> logits [B, C]; the seed's 2048 -> 2048 -> 1024 -> 512 -> C."""
    return mlp(embedding_dim, hidden, num_classes, batch_norm=True, dropout=0.3)


def meta_mlp(hidden: tuple[int, ...], num_classes: int, branches: int = 4) -> nn.Sequential:
    """branch_probs [B, 4C] (the four branches' sigmoids) -> logits [B, C]."""
    return mlp(branches * num_classes, hidden, num_classes, batch_norm=False, dropout=0.2)
