"""Small models shared by the engine tests."""

import torch
from torch import nn


class LinearScore(nn.Module):
    """score = sum(w * x): the change of an occlusion is computable by hand.

    Outputs (N, 2): [score, -score], so the second class is the mirror of the first.
    """

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x * self.weight).flatten(1).sum(1)
        return torch.stack([s, -s], dim=1)


class CountingModule(nn.Module):
    """Wraps a module; records the batch size of every forward call."""

    def __init__(self, inner: nn.Module, max_batch: int | None = None):
        super().__init__()
        self.inner = inner
        self.batch_sizes: list[int] = []
        self.max_batch = max_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        if self.max_batch is not None:
            assert x.shape[0] <= self.max_batch, f"forward batch {x.shape[0]} > {self.max_batch}"
        return self.inner(x)


def small_cnn(in_channels: int = 3, classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(16, classes),
    ).eval()
