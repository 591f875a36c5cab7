"""torch.fx analysis for exact incremental inference: tracing, node classes, dirty boxes.

The network is traced once into a torch.fx graph and interpreted node by node
on the clean input (batch 1). Every node gets a *kind*:

``input``      the image placeholder;
``const``      does not depend on the input (parameters, buffers, constants);
``value``      a non-tensor that depends on the input (sizes, shapes, ints);
``pointwise``  elementwise ops (batch norm in eval, activations, add/mul, ...):
               output pixel (y, x) depends on input pixels (y, x) only;
``window``     conv / max pool / avg pool: a kernel window on the stride grid;
``pad``        constant padding: coordinates shift;
``cat``        channel concatenation;
``dense``      everything else: global pooling, flatten, linear, attention...
               It runs on whole (stitched) tensors.

A node is *local* when it may hold a batch of crops at run time: the input,
and pointwise/window/pad/cat nodes all of whose input-dependent inputs are
local. An op that is not in the tables below may not consume a local tensor:
the model is then :class:`UnsupportedModel` (the caller runs the plain path).

Dirty boxes and plans are in :mod:`.boxes`.
"""

from __future__ import annotations

import builtins
import copy
import inspect
import operator
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn



class UnsupportedModel(Exception):
    """The model cannot be evaluated incrementally; the message says why (one line)."""


# ----------------------------------------------------------------------------------------------
# Op tables
# ----------------------------------------------------------------------------------------------

_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Tanhshrink, nn.Identity,
)
_DROPOUTS = (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_BATCHNORMS = (nn.BatchNorm2d,)

_POINTWISE_FUNCS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pos,
    torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.relu, torch.sigmoid, torch.tanh,
    torch.clamp, torch.clip, torch.maximum, torch.minimum,
    F.relu, F.relu6, F.hardtanh, F.silu, F.gelu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.elu,
    F.sigmoid, F.tanh, F.mish, F.softplus, F.dropout,
}
_INPLACE_FUNCS = {operator.iadd: operator.add, operator.isub: operator.sub,
                  operator.imul: operator.mul, operator.itruediv: operator.truediv}
_POINTWISE_METHODS = {"relu", "sigmoid", "tanh", "add", "sub", "mul", "div", "clamp", "clip", "neg",
                      "contiguous", "clone", "float"}

_DENSE_MODULES = (
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten, nn.Unflatten, nn.LayerNorm,
    nn.GroupNorm, nn.MultiheadAttention, nn.Softmax, nn.LogSoftmax,
)
_DENSE_FUNCS = {
    torch.flatten, torch.reshape, torch.mean, torch.sum, torch.amax, torch.amin, torch.matmul,
    torch.bmm, torch.transpose, torch.permute, torch.squeeze, torch.unsqueeze, torch.einsum,
    F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.linear, F.softmax, F.log_softmax, F.layer_norm,
    F.group_norm, F.normalize, F.scaled_dot_product_attention, operator.getitem, operator.matmul,
}
_DENSE_METHODS = {"flatten", "view", "reshape", "mean", "sum", "amax", "amin", "max", "min",
                  "permute", "transpose", "softmax", "log_softmax", "squeeze", "unsqueeze",
                  "expand", "matmul", "norm", "__getitem__"}
_SHAPE_METHODS = {"size", "dim", "numel"}
_SHAPE_ATTRS = {"shape", "ndim", "dtype"}


# ----------------------------------------------------------------------------------------------
# Node descriptions
# ----------------------------------------------------------------------------------------------

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


# Traces are cached per module and mode: the widget re-runs sweeps on the same
# network, and fx patches nn.Module.__call__ process-wide while it traces, so
# tracing happens once, under a lock.
_TRACES: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_TRACE_LOCK = threading.Lock()


def trace(module: nn.Module, fresh: bool = False) -> fx.GraphModule:
    """``torch.fx.symbolic_trace(module)``, cached; :class:`UnsupportedModel` when fx cannot trace it."""
    with _TRACE_LOCK:
        per_mode = _TRACES.setdefault(module, {})
        cached = None if fresh else per_mode.get(module.training)
        if cached is None:
            try:
                cached = fx.symbolic_trace(module)
            except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                cached = f"torch.fx cannot trace {type(module).__name__}: {first[:160]}"
            per_mode[module.training] = cached
    if isinstance(cached, str):
        raise UnsupportedModel(cached)
    return cached


def analyze(module: nn.Module, x: torch.Tensor, fresh: bool = False) -> Analysis:
    """Trace ``module``, run it on ``x`` (1, C, H, W) node by node, classify every node."""
    gm = trace(module, fresh)
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    infos: list[NodeInfo] = []
    clean: list[Any] = []
    output = -1
    seen_input = False
    for i, node in enumerate(nodes):
        inputs = tuple(index[m] for m in node.all_input_nodes)
        dep = any(infos[j].dep for j in inputs)
        args, kwargs = node.args, dict(node.kwargs)
        if node.op == "placeholder":
            if not seen_input:
                seen_input = True
                infos.append(NodeInfo(i, node, "input", True, True, _identity, (), {}, (), tuple(x.shape)))
                clean.append(x)
                continue
            if not node.args:
                raise UnsupportedModel(f"the model takes more than one input ({node.name!r})")
            infos.append(NodeInfo(i, node, "const", False, False, _identity, (), {}, ()))
            clean.append(node.args[0])
            continue
        if node.op == "output":
            if not isinstance(node.args[0], fx.Node):
                raise UnsupportedModel("the model returns a tuple or dict; one output tensor is needed")
            output = index[node.args[0]]
            infos.append(NodeInfo(i, node, "output", dep, False, _identity, (), {}, inputs))
            clean.append(None)
            continue
        if node.op == "get_attr":
            value = _fetch_attr(gm, node.target)
            infos.append(NodeInfo(i, node, "const", False, False, _identity, (), {}, ()))
            clean.append(value)
            continue

        fn, args, kwargs, inplace = _callable(gm, node, args, kwargs)
        value = fn(*_map(args, clean, index), **_map(kwargs, clean, index))
        clean.append(value)
        info = NodeInfo(i, node, "const", dep, False, fn, args, kwargs, inputs,
                        tuple(value.shape) if isinstance(value, torch.Tensor) else None)
        infos.append(info)
        if inplace:
            _check_inplace(node, args)
        if not dep:
            continue
        _classify(info, infos, clean, gm, index)
    if output < 0:
        raise UnsupportedModel("the traced graph has no output")
    if not isinstance(clean[output], torch.Tensor):
        raise UnsupportedModel("the model does not return a tensor")
    return Analysis(gm, infos, clean, output, tuple(x.shape))


def _classify(info: NodeInfo, infos: list[NodeInfo], clean: list, gm: fx.GraphModule, index: dict) -> None:
    node, value = info.node, clean[info.index]
    dep_inputs = [j for j in info.inputs if infos[j].dep]
    local_inputs = [j for j in dep_inputs if infos[j].local]
    if not isinstance(value, torch.Tensor):
        info.kind = "value"
        if local_inputs and not _is_shape_query(node):
            raise UnsupportedModel(f"{info.describe()} reads a tensor before the dense switch")
        return
    if not local_inputs:
        info.kind = "dense"
        try:  # after the dense switch any op runs as it is; "known" ops need no defensive copies
            info.known = _is_known_dense(info) or _is_pointwise(info, gm) or _window_kind(info, gm) is not None
        except UnsupportedModel:
            info.known = False
        _count_macs(info, gm, clean, index)
        return
    dense_inputs = [j for j in dep_inputs if not infos[j].local and infos[j].kind != "value"]
    if _is_pointwise(info, gm):
        info.kind = "pointwise"
        _check_pointwise(info, infos, clean)
        info.local = not dense_inputs
    elif node.op == "call_function" and node.target in (torch.cat, torch.concat):
        dim = info.args[1] if len(info.args) > 1 else info.kwargs.get("dim", 0)
        if len(value.shape) != 4 or dim not in (1, -3):
            raise UnsupportedModel(f"{info.describe()}: only channel concatenation (dim=1) is supported before the dense switch")
        info.kind = "cat"
        _check_pointwise(info, infos, clean)
        info.local = not dense_inputs
    elif _window_kind(info, gm) is not None:
        info.kind = "window"
        info.window = _window(info, gm, clean, index, infos)
        info.local = True
        _count_macs(info, gm, clean, index)
    elif _pad_amounts(info, gm) is not None:
        top, bottom, left, right = _pad_amounts(info, gm)  # type: ignore[misc]
        src = clean[local_inputs[0]]
        if min(top, bottom, left, right) < 0 or tuple(value.shape[-2:]) != (src.shape[-2] + top + bottom, src.shape[-1] + left + right):
            raise UnsupportedModel(f"{info.describe()}: negative or non-spatial padding before the dense switch")
        info.kind, info.pad, info.local = "pad", (top, left), True
    elif _is_known_dense(info):
        info.kind = "dense"
        _count_macs(info, gm, clean, index)
        return
    else:
        raise UnsupportedModel(f"{info.describe()} is not supported before the dense switch")
    if info.local and (value.ndim != 4 or value.shape[0] != 1):
        raise UnsupportedModel(f"{info.describe()} gives shape {tuple(value.shape)}; expected (1, C, H, W)")


# ----------------------------------------------------------------------------------------------
# Callables
# ----------------------------------------------------------------------------------------------

def _identity(x=None, *args, **kwargs):
    return x


def _fetch_attr(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _map(value: Any, clean: list, index: dict) -> Any:
    return fx.node.map_arg(value, lambda n: clean[index[n]])


def _callable(gm: fx.GraphModule, node: fx.Node, args: tuple, kwargs: dict) -> tuple[Callable, tuple, dict, bool]:
    """The node's callable with in-place variants replaced, its args, and whether it was in place."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if getattr(mod, "inplace", False) is True:
            mod = copy.copy(mod)
            mod.inplace = False
            return mod, args, kwargs, True
        return mod, args, kwargs, False
    if node.op == "call_method":
        name = node.target
        inplace = name.endswith("_") and not name.startswith("_") and name[:-1] in _POINTWISE_METHODS
        if inplace:
            name = name[:-1]
        return _method(name), args, kwargs, inplace
    target = node.target
    if target in _INPLACE_FUNCS:
        return _INPLACE_FUNCS[target], args, kwargs, True
    if inspect.isfunction(target):
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):  # pragma: no cover - builtins have none
            sig = None
        if sig is not None and "inplace" in sig.parameters:
            bound = sig.bind(*args, **kwargs)
            if bound.arguments.get("inplace") is True:
                bound.arguments["inplace"] = False
                return target, tuple(bound.args), dict(bound.kwargs), True
    return target, args, kwargs, False


def _method(name: str) -> Callable:
    def call(obj, *args, **kwargs):
        return getattr(obj, name)(*args, **kwargs)

    call.__name__ = name
    return call


def _check_inplace(node: fx.Node, args: tuple) -> None:
    first = args[0] if args else None
    if isinstance(first, fx.Node) and len(first.users) > 1:
        raise UnsupportedModel(f"in-place op {node.name!r} writes to a tensor that other ops also read")


def _is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    return node.op == "call_function" and node.target is builtins.getattr and node.args[1] in _SHAPE_ATTRS


def _is_pointwise(info: NodeInfo, gm: fx.GraphModule) -> bool:
    node = info.node
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, _BATCHNORMS):
            if mod.training or not mod.track_running_stats or mod.running_mean is None:
                raise UnsupportedModel(f"{info.describe()} uses batch statistics (training mode)")
            return True
        if isinstance(mod, _DROPOUTS):
            if mod.training:
                raise UnsupportedModel(f"{info.describe()} is in training mode")
            return True
        return isinstance(mod, _ACTIVATIONS)
    if node.op == "call_method":
        return str(node.target).rstrip("_") in _POINTWISE_METHODS
    if node.op == "call_function":
        if node.target is F.dropout:
            training = info.args[2] if len(info.args) > 2 else info.kwargs.get("training", True)
            if training is not False:
                raise UnsupportedModel(f"{info.describe()} is in training mode")
        return node.target in _POINTWISE_FUNCS or node.target in _INPLACE_FUNCS.values()
    return False


def _is_known_dense(info: NodeInfo) -> bool:
    node = info.node
    if node.op == "call_module":
        return isinstance(info.fn, _DENSE_MODULES)
    if node.op == "call_method":
        return node.target in _DENSE_METHODS
    return node.op == "call_function" and node.target in _DENSE_FUNCS


def _check_pointwise(info: NodeInfo, infos: list[NodeInfo], clean: list) -> None:
    """Local pointwise/cat nodes: every spatial operand has the output's (H, W)."""
    value = clean[info.index]
    if value.ndim != 4:
        raise UnsupportedModel(f"{info.describe()} gives shape {tuple(value.shape)}; expected (1, C, H, W)")
    hw = tuple(value.shape[-2:])
    for j in info.inputs:
        v = clean[j]
        if not isinstance(v, torch.Tensor):
            continue
        if infos[j].dep and infos[j].local:
            if v.ndim != 4 or tuple(v.shape[-2:]) != hw:
                raise UnsupportedModel(f"{info.describe()} broadcasts a spatial tensor {tuple(v.shape)}")
        elif not infos[j].dep and not (_broadcast_only(v) or _spatial_const(v, hw)):
            raise UnsupportedModel(f"{info.describe()} reads a constant of shape {tuple(v.shape)}")


def _broadcast_only(v: torch.Tensor) -> bool:
    """A constant that does not vary over space (scalar, (C, 1, 1), (1, C, 1, 1))."""
    return v.numel() == 1 or (v.ndim >= 2 and tuple(v.shape[-2:]) == (1, 1))


def _spatial_const(v: torch.Tensor, hw: tuple[int, int]) -> bool:
    return v.ndim >= 2 and tuple(v.shape[-2:]) == hw and not _broadcast_only(v)


def is_spatial_const(v: Any, hw: tuple[int, int]) -> bool:
    return isinstance(v, torch.Tensor) and _spatial_const(v, hw)


def _window_kind(info: NodeInfo, gm: fx.GraphModule) -> str | None:
    node = info.node
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if type(mod) is nn.Conv2d:
            return "conv"
        if type(mod) is nn.MaxPool2d:
            return "max"
        if type(mod) is nn.AvgPool2d:
            return "avg"
        return None
    if node.op == "call_function":
        return {F.conv2d: "conv", F.max_pool2d: "max", F.avg_pool2d: "avg"}.get(node.target)
    return None


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) in (1, 2) else (int(v[0]), int(v[1]))
    return (int(v), int(v))


def _bind(names: Sequence[str], defaults: dict, args: tuple, kwargs: dict) -> dict:
    out = dict(defaults)
    out.update(zip(names, args))
    out.update(kwargs)
    return out


def _window(info: NodeInfo, gm: fx.GraphModule, clean: list, index: dict, infos: list[NodeInfo]) -> Window:
    node, kind = info.node, _window_kind(info, gm)
    src = next(j for j in info.inputs if infos[j].dep)
    in_hw, out_hw = tuple(clean[src].shape[-2:]), tuple(clean[info.index].shape[-2:])
    desc = info.describe()
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if kind == "conv":
            p = dict(weight=mod.weight, bias=mod.bias, stride=mod.stride, padding=mod.padding,
                     dilation=mod.dilation, groups=mod.groups)
            if mod.padding_mode != "zeros":
                raise UnsupportedModel(f"{desc}: padding_mode={mod.padding_mode!r} reads the border; only zeros is supported")
        elif kind == "max":
            p = dict(kernel_size=mod.kernel_size, stride=mod.stride, padding=mod.padding, dilation=mod.dilation,
                     ceil_mode=mod.ceil_mode, return_indices=mod.return_indices)
        else:
            p = dict(kernel_size=mod.kernel_size, stride=mod.stride, padding=mod.padding, ceil_mode=mod.ceil_mode,
                     count_include_pad=mod.count_include_pad, divisor_override=mod.divisor_override)
    else:
        a = _map(info.args, clean, index)
        kw = _map(info.kwargs, clean, index)
        if kind == "conv":
            p = _bind(["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
                      dict(bias=None, stride=1, padding=0, dilation=1, groups=1), a, kw)
            if any(infos[j].dep for j in info.inputs if j != src):
                raise UnsupportedModel(f"{desc}: the weights depend on the input")
        elif kind == "max":
            p = _bind(["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
                      dict(stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False), a, kw)
        else:
            p = _bind(["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
                      dict(stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None), a, kw)
    if kind == "conv":
        weight, bias, groups = p["weight"], p["bias"], p["groups"]
        kernel = tuple(weight.shape[-2:])
        stride, dilation = _pair(p["stride"]), _pair(p["dilation"])
        if isinstance(p["padding"], str):
            if p["padding"] == "valid":
                before = (0, 0)
            else:  # "same": PyTorch puts the extra pixel at the end
                before = tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation))
        else:
            before = _pair(p["padding"])
        pad_value = 0.0

        def run(patch, w=weight, b=bias, s=stride, d=dilation, g=groups):
            return F.conv2d(patch, w, b, s, 0, d, g)
    else:
        kernel = _pair(p["kernel_size"])
        stride = _pair(p["stride"]) if p["stride"] not in (None, ()) else kernel
        before = _pair(p["padding"])
        if kind == "max":
            if p["return_indices"]:
                raise UnsupportedModel(f"{desc}: return_indices is not supported before the dense switch")
            dilation, pad_value = _pair(p["dilation"]), float("-inf")

            def run(patch, k=kernel, s=stride, d=dilation):
                return F.max_pool2d(patch, k, s, 0, d)
        else:
            dilation, pad_value = (1, 1), 0.0
            if max(before) > 0 and not p["count_include_pad"] and p["divisor_override"] is None:
                raise UnsupportedModel(f"{desc}: count_include_pad=False with padding is not supported")

            def run(patch, k=kernel, s=stride, dv=p["divisor_override"]):
                return F.avg_pool2d(patch, k, s, 0, False, True, dv)
    after = []
    for ax in range(2):
        needed_end = (out_hw[ax] - 1) * stride[ax] - before[ax] + (kernel[ax] - 1) * dilation[ax] + 1
        extra = max(0, needed_end - in_hw[ax])
        if kind == "avg" and extra > before[ax] and p["divisor_override"] is None:
            raise UnsupportedModel(f"{desc}: ceil_mode windows past the padding are not supported")
        after.append(extra)
    return Window(tuple(kernel), tuple(stride), tuple(dilation), tuple(before), tuple(after), pad_value, run)


def _pad_amounts(info: NodeInfo, gm: fx.GraphModule) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a constant pad node, else None."""
    node = info.node
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if type(mod) in (nn.ZeroPad2d, nn.ConstantPad2d):
            left, right, top, bottom = mod.padding
            return top, bottom, left, right
        return None
    if node.op == "call_function" and node.target is F.pad:
        p = _bind(["input", "pad", "mode", "value"], dict(mode="constant", value=None), info.args, info.kwargs)
        pad = tuple(p["pad"])
        if p["mode"] != "constant" or len(pad) not in (2, 4) or isinstance(pad[0], fx.Node):
            return None
        left, right = pad[0], pad[1]
        top, bottom = (pad[2], pad[3]) if len(pad) == 4 else (0, 0)
        return top, bottom, left, right
    return None


def _count_macs(info: NodeInfo, gm: fx.GraphModule, clean: list, index: dict) -> None:
    node = info.node
    mod = gm.get_submodule(node.target) if node.op == "call_module" else None
    shape = info.shape or (1,)
    if isinstance(mod, nn.Conv2d) or (node.op == "call_function" and node.target is F.conv2d):
        weight = mod.weight if mod is not None else _map(info.args[1], clean, index)
        info.macs, info.pixels = int(weight.numel()), int(np.prod(shape[-2:]))
    elif isinstance(mod, nn.Linear) or (node.op == "call_function" and node.target is F.linear):
        weight = mod.weight if mod is not None else _map(info.args[1], clean, index)
        info.macs, info.pixels = int(weight.numel()), int(np.prod(shape[1:-1])) if len(shape) > 2 else 1


def fold_batchnorm(analysis: Analysis) -> int:
    """Fold each eval-mode batch norm into the convolution that feeds it alone.

    The conv then computes ``bn(conv(x))`` (weights scaled, bias shifted) both
    on crops and densely, and the batch norm node passes its input through:
    one op less per layer. Equal to the unfolded network within float rounding.
    Returns the number of folds.
    """
    infos, clean, gm = analysis.infos, analysis.clean, analysis.gm
    index = {info.node: info.index for info in infos}
    folded = 0
    for bn in infos:
        node = bn.node
        if node.op != "call_module" or not isinstance(bn.fn, _BATCHNORMS) or bn.fn.training or not bn.dep:
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, fx.Node) or len(src.users) != 1 or len(node.args) != 1 or node.kwargs:
            continue
        conv = infos[index[src]]
        if conv.kind != "window" and conv.kind != "dense":
            continue
        mod = gm.get_submodule(src.target) if src.op == "call_module" else None
        if type(mod) is not nn.Conv2d or mod.padding_mode != "zeros" or conv.local != bn.local:
            continue
        m = bn.fn
        scale = m.weight.detach() / torch.sqrt(m.running_var + m.eps) if m.affine else 1 / torch.sqrt(m.running_var + m.eps)
        shift = (m.bias.detach() if m.affine else 0) - m.running_mean * scale
        weight = (mod.weight.detach() * scale.view(-1, 1, 1, 1).to(mod.weight)).contiguous(
            memory_format=torch.channels_last if mod.weight.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format)
        bias = (shift + (mod.bias.detach() * scale if mod.bias is not None else 0)).to(mod.weight)
        s, p, d, g = mod.stride, mod.padding, mod.dilation, mod.groups

        def dense(x, w=weight, b=bias, s=s, p=p, d=d, g=g):
            return F.conv2d(x, w, b, s, p, d, g)

        conv.fn = dense
        if conv.window is not None:
            conv.window.run = lambda patch, w=weight, b=bias, s=s, d=d, g=g: F.conv2d(patch, w, b, s, 0, d, g)
        clean[conv.index] = clean[bn.index]
        bn.fn = _identity
        folded += 1
    return folded
