"""Node classification for the incremental analysis: which op each fx node is.

Every node gets a *kind*:

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

This module holds the op tables, :func:`_classify`, the window / padding
extraction (:func:`_window`, :func:`_pad_amounts`), argument binding helpers
and MAC counting. Tracing and the node-by-node run are in :mod:`.graph`.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .nodes import NodeInfo, UnsupportedModel, Window, submodule

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
# Classification
# ----------------------------------------------------------------------------------------------

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
        if (min(top, bottom, left, right) < 0
                or tuple(value.shape[-2:]) != (src.shape[-2] + top + bottom, src.shape[-1] + left + right)):
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


def _is_shape_query(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    return node.op == "call_function" and node.target is builtins.getattr and node.args[1] in _SHAPE_ATTRS


def _is_pointwise(info: NodeInfo, gm: fx.GraphModule) -> bool:
    node = info.node
    if node.op == "call_module":
        mod = submodule(gm, node)
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


# ----------------------------------------------------------------------------------------------
# Windows, padding, arguments, MACs
# ----------------------------------------------------------------------------------------------

def _map(value: Any, clean: list, index: dict) -> Any:
    return fx.node.map_arg(value, lambda n: clean[index[n]])


def _window_kind(info: NodeInfo, gm: fx.GraphModule) -> str | None:
    node = info.node
    if node.op == "call_module":
        mod = submodule(gm, node)
        if type(mod) is nn.Conv2d:
            return "conv"
        if type(mod) is nn.MaxPool2d:
            return "max"
        if type(mod) is nn.AvgPool2d:
            return "avg"
        return None
    if node.op == "call_function":
        kinds: dict[object, str] = {F.conv2d: "conv", F.max_pool2d: "max", F.avg_pool2d: "avg"}
        return kinds.get(node.target)
    return None


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) in (1, 2) else (int(v[0]), int(v[1]))
    return (int(v), int(v))


def _bind(names: Sequence[str], defaults: dict, args: tuple, kwargs: dict) -> dict:
    out = dict(defaults)
    out.update(zip(names, args, strict=False))
    out.update(kwargs)
    return out


def _window(info: NodeInfo, gm: fx.GraphModule, clean: list, index: dict, infos: list[NodeInfo]) -> Window:
    node, kind = info.node, _window_kind(info, gm)
    src = next(j for j in info.inputs if infos[j].dep)
    in_hw, out_hw = tuple(clean[src].shape[-2:]), tuple(clean[info.index].shape[-2:])
    desc = info.describe()
    p: dict[str, Any]
    if node.op == "call_module":
        mod = submodule(gm, node)
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
        kernel = (weight.shape[-2], weight.shape[-1])
        stride, dilation = _pair(p["stride"]), _pair(p["dilation"])
        if isinstance(p["padding"], str):
            if p["padding"] == "valid":
                before = (0, 0)
            else:  # "same": PyTorch puts the extra pixel at the end
                before = ((dilation[0] * (kernel[0] - 1)) // 2, (dilation[1] * (kernel[1] - 1)) // 2)
        else:
            before = _pair(p["padding"])
        pad_value = 0.0
        run: Callable[[torch.Tensor], torch.Tensor]

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
    return Window(kernel, stride, dilation, before, (after[0], after[1]), pad_value, run)


def _pad_amounts(info: NodeInfo, gm: fx.GraphModule) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a constant pad node, else None."""
    node = info.node
    if node.op == "call_module":
        mod = submodule(gm, node)
        if type(mod) in (nn.ZeroPad2d, nn.ConstantPad2d):
            left, right, top, bottom = cast("nn.ZeroPad2d | nn.ConstantPad2d", mod).padding
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
    mod = submodule(gm, node) if node.op == "call_module" else None
    shape = info.shape or (1,)
    if isinstance(mod, nn.Conv2d) or (node.op == "call_function" and node.target is F.conv2d):
        weight = mod.weight if isinstance(mod, nn.Conv2d) else _map(info.args[1], clean, index)
        info.macs, info.pixels = int(weight.numel()), int(np.prod(shape[-2:]))
    elif isinstance(mod, nn.Linear) or (node.op == "call_function" and node.target is F.linear):
        weight = mod.weight if isinstance(mod, nn.Linear) else _map(info.args[1], clean, index)
        info.macs, info.pixels = int(weight.numel()), int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
