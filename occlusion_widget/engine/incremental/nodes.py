"""Data types of the incremental analysis: the node descriptions it produces.

:class:`NodeInfo` describes one fx node (its kind, locality, clean shape and
how to run it), :class:`Window` the kernel window of a conv/pool node, and
:class:`Analysis` a whole traced network. :class:`UnsupportedModel` is raised
by the analysis when the network cannot be evaluated incrementally.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.fx as fx
from torch import nn


def submodule(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    """The module a ``call_module`` node calls (its target is then the module's qualified name)."""
    return gm.get_submodule(cast(str, node.target))


class UnsupportedModel(Exception):
    """The model cannot be evaluated incrementally; the message says why (one line)."""


@dataclass
class Window:
    """A kernel window on the stride grid (conv, max pool, avg pool), per spatial axis (y, x)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad_before: tuple[int, int]
    """The op's own padding at the top and the left."""
    pad_after: tuple[int, int]
    """Padding at the bottom and the right that makes every window fit (may exceed the op's)."""
    pad_value: float
    run: Callable[[torch.Tensor], torch.Tensor]
    """Runs the op with no padding on a patch of exactly the needed size."""

    def region(self, origin: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        """Input region (in padded coordinates) that output crops at ``origin`` of ``size`` need."""
        s, k, d = np.array(self.stride), np.array(self.kernel), np.array(self.dilation)
        span = tuple(int(v) for v in (np.array(size) - 1) * s + (k - 1) * d + 1)
        return origin * s, span  # type: ignore[return-value]


@dataclass
class NodeInfo:
    index: int
    node: fx.Node
    kind: str
    dep: bool
    local: bool
    fn: Callable[..., Any]
    """Runs the node on (dense) values: ``fn(*args, **kwargs)`` with args mapped."""
    args: tuple
    kwargs: dict
    inputs: tuple[int, ...]
    """Indices of the nodes it reads."""
    shape: tuple[int, ...] | None = None
    """Clean output shape when it is a tensor."""
    window: Window | None = None
    pad: tuple[int, int] = (0, 0)
    """(top, left) shift of a pad node."""
    macs: int = 0
    """Multiply-adds per output pixel (conv) or per output row (linear), for one position."""
    pixels: int = 1
    """Output pixels (conv: H * W; linear: the other output dims)."""
    known: bool = True

    @property
    def hw(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]  # type: ignore[index]

    def describe(self) -> str:
        n = self.node
        if n.op == "call_module":
            return f"module {n.target!r} ({type(self.fn).__name__})"
        name = getattr(n.target, "__name__", str(n.target))
        return f"{n.op} {name!r} (node {n.name})"


@dataclass
class Analysis:
    gm: fx.GraphModule
    infos: list[NodeInfo]
    clean: list[Any]
    """Each node's value on the clean input (batch 1)."""
    output: int
    input_shape: tuple[int, ...]
