"""torch.fx analysis for exact incremental inference: tracing, running, batch-norm folding.

:func:`analyze` traces the network once into a torch.fx graph (cached per
module and mode), interprets it node by node on the clean input (batch 1) and
classifies every node (:mod:`.classify`); :func:`fold_batchnorm` folds each
eval-mode batch norm into the convolution feeding it. The node descriptions
are in :mod:`.nodes` (re-exported here), dirty boxes and plans in :mod:`.boxes`.
"""

from __future__ import annotations

import copy
import inspect
import threading
import weakref
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .classify import _BATCHNORMS, _INPLACE_FUNCS, _POINTWISE_METHODS, _classify, _map
from .nodes import Analysis, NodeInfo, UnsupportedModel, Window, submodule

__all__ = ["TRACE_LOCK", "Analysis", "NodeInfo", "UnsupportedModel", "Window", "analyze", "fold_batchnorm", "trace"]


# Traces are cached per module and mode (the widget re-runs sweeps on the same
# network). TRACE_LOCK serialises our own traces: fx keeps one process-wide
# patch stack, and two traces at once would restore each other's patches.
# Forward passes in other threads need no lock (see _ThreadAwareTracer).
_TRACES: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()
TRACE_LOCK = threading.Lock()


class _ThreadAwareTracer(fx.Tracer):
    """``torch.fx.Tracer`` whose process-wide patches act only in the thread that traces.

    While it traces, fx replaces ``nn.Module.__call__`` and ``__getattr__`` for
    every thread; its replacements call :meth:`call_module` and :meth:`getattr`,
    which here give any other thread the original behaviour (the module's
    ``__call__`` with its hooks, the plain attribute). fx's other patches (math
    functions, ``torch.fx.wrap``-ed functions such as torchvision's) only act
    when an argument is a Proxy, which no other thread ever holds. In the
    tracing thread, modules that are traced through run their ``forward``
    without hooks, so no hook (the user's, or a global one) ever sees a Proxy.
    """

    def __init__(self) -> None:
        super().__init__()
        self._thread: int | None = None

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        self._thread = threading.get_ident()
        try:
            return super().trace(root, concrete_args)
        finally:
            self._thread = None  # a late call through a stale patch is another thread's too

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if self._thread != threading.get_ident():
            return forward(*args, **kwargs)  # fx's forward = the original nn.Module.__call__
        return super().call_module(m, m.forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if self._thread != threading.get_ident():
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)


def _copy_for_tracing(module: nn.Module) -> nn.Module:
    """A copy of the module tree (every module shallow-copied, hooks dropped) sharing every tensor.

    fx runs ``forward`` with Proxies and may store constants on the root;
    whatever a forward assigns to ``self`` lands on a copy, never on the
    user's modules. Tensors and other attributes are shared (no memory cost,
    weights stay live); a shared submodule stays shared.
    """
    copies: dict[int, nn.Module] = {}

    def copy_tree(m: nn.Module) -> nn.Module:
        if id(m) not in copies:
            c = copies[id(m)] = copy.copy(m)
            for name, value in vars(m).items():
                if "hook" in name and isinstance(value, dict):
                    c.__dict__[name] = type(value)()  # hooks belong to the user's modules
            c.__dict__["_parameters"] = dict(m._parameters)
            c.__dict__["_buffers"] = dict(m._buffers)
            c.__dict__["_modules"] = {k: None if v is None else copy_tree(v) for k, v in m._modules.items()}
        return copies[id(m)]

    return copy_tree(module)


def trace(module: nn.Module, fresh: bool = False) -> fx.GraphModule:
    """``module`` traced by torch.fx (on a copy, in this thread only), cached per module and mode.

    Raises :class:`UnsupportedModel` when the module cannot be copied or traced.
    Safe while other threads run the same or other modules (:class:`_ThreadAwareTracer`).
    """
    with TRACE_LOCK:
        per_mode = _TRACES.setdefault(module, {})
        cached = None if fresh else per_mode.get(module.training)
        if cached is None:
            cached = per_mode[module.training] = _trace_copy(module)
    if isinstance(cached, str):
        raise UnsupportedModel(cached)
    return cached


def _trace_copy(module: nn.Module) -> fx.GraphModule | str:
    """The traced copy of ``module``, or why there is none (one line)."""
    name = type(module).__name__
    try:
        root = _copy_for_tracing(module)
    except Exception as exc:  # a module that refuses copying: never trace the user's own
        return f"{name} cannot be copied for tracing: {_first_line(exc)}"
    try:
        return fx.GraphModule(root, _ThreadAwareTracer().trace(root), name)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...)
        return f"torch.fx cannot trace {name}: {_first_line(exc)}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


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


def _callable(gm: fx.GraphModule, node: fx.Node, args: tuple, kwargs: dict) -> tuple[Callable, tuple, dict, bool]:
    """The node's callable with in-place variants replaced, its args, and whether it was in place."""
    if node.op == "call_module":
        mod = submodule(gm, node)
        if getattr(mod, "inplace", False) is True:
            copied: Any = copy.copy(mod)  # a module with an ``inplace`` flag (ReLU, ...)
            copied.inplace = False
            return copied, args, kwargs, True
        return mod, args, kwargs, False
    if node.op == "call_method":
        name = cast(str, node.target)  # the method's name
        inplace = name.endswith("_") and not name.startswith("_") and name[:-1] in _POINTWISE_METHODS
        if inplace:
            name = name[:-1]
        return _method(name), args, kwargs, inplace
    target = cast(Callable, node.target)  # call_function: the function itself
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
        mod = submodule(gm, src) if src.op == "call_module" else None
        if type(mod) is not nn.Conv2d or mod.padding_mode != "zeros" or conv.local != bn.local:
            continue
        m = bn.fn
        # A batch norm without running statistics (track_running_stats=False) cannot be folded.
        assert m.running_mean is not None and m.running_var is not None, f"{node.name}: no running statistics"
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
            def run(patch, w=weight, b=bias, s=s, d=d, g=g):
                return F.conv2d(patch, w, b, s, 0, d, g)

            conv.window.run = run
        clean[conv.index] = clean[bn.index]
        bn.fn = _identity
        folded += 1
    return folded
