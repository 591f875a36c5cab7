"""Run a user's network in eval mode on a device without touching the user's module.

Sweeps (and the gradient methods) need the network in eval mode, on the
compute device, sometimes with channels-last weights. Flipping the user's
module to eval and back, or moving it, is visible to anyone else holding it:
another thread training it, or sweeping it at the same time, sees the wrong
mode or device mid-call. :func:`prepared_module` gives a module that computes
with the same weights and leaves the user's one as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["prepared_module", "check_materialised"]

# The containers every nn.Module keeps in its __dict__ (parameters, buffers,
# submodules, hooks, ...): a view gets its own copy of each, so registering or
# replacing something on the view never reaches the user's module.
_MODULE_CONTAINERS = tuple(k for k, v in vars(nn.Module()).items() if isinstance(v, (dict, set)))


def check_materialised(module: nn.Module) -> None:
    """Raise ``ValueError`` when a parameter or buffer lives on the meta device (no data)."""
    for name, tensor in _named_tensors(module):
        if tensor.is_meta:
            raise ValueError(
                f"model: {name!r} is on the meta device: the weights are not materialised (they hold no values). "
                "Load real weights first, e.g. module.to_empty(device='cpu') then module.load_state_dict(...), "
                "or build the model without device='meta'"
            )


def prepared_module(module: nn.Module, device: torch.device, *, channels_last: bool = False) -> nn.Module:
    """A module with ``module``'s weights, in eval mode, on ``device``; ``module`` is left as it is.

    Parameters
    ----------
    module : nn.Module
        The user's network. Its training flags, device and memory format, and
        those of its submodules, parameters and buffers, are never changed.
    device : torch.device
        Where the returned module's parameters and buffers are.
    channels_last : bool
        Also give the returned module channels-last 4-D weights (faster
        convolutions on CPU and on tensor cores).

    Returns
    -------
    nn.Module
        ``module`` itself when it is in eval mode everywhere, on ``device``, and
        needs no format change (the common case: no copy). Otherwise a *view*:
        a copy of the module tree (new module objects with their own
        parameter, buffer, submodule and hook dicts, ``training=False``) that
        holds the **same** parameter and buffer tensors. Nothing is cached, so
        a view never holds stale weights: a user who trains between two calls
        gets the new weights.

    Notes
    -----
    Memory: a view that only switches modes shares every tensor with
    ``module`` and costs a few objects per submodule. Tensors that must move to
    ``device``, or change to channels-last, are copied for the lifetime of the
    view: at most one extra copy of the weights (of the 4-D ones for
    channels-last), freed when the caller drops the view. Tied weights stay
    tied. State the forward pass keeps in mutable attributes (a list it
    appends to) is shared; an attribute it rebinds (``self.calls += 1``) is
    rebound on the view only.

    Raises
    ------
    ValueError
        When a parameter or buffer is on the meta device (not materialised).
    """
    check_materialised(module)
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())  # where .to("cuda") would put it
    training = any(m.training for m in module.modules())
    moves = any(not _on(t, device) for _, t in _named_tensors(module))
    reformat = channels_last and any(_needs_channels_last(t) for _, t in _named_tensors(module))
    if not (training or moves or reformat):
        return module
    if isinstance(module, torch.jit.ScriptModule):
        # TorchScript keeps its submodules and flags in C++: a real copy is the only safe way.
        script = copy.deepcopy(module).eval().to(device)
        return script.to(memory_format=torch.channels_last) if channels_last else script
    converted: dict[int, torch.Tensor] = {}  # id(original tensor) -> its converted copy, so tied weights stay tied

    def convert(tensor: torch.Tensor | None) -> torch.Tensor | None:
        if tensor is None:
            return None
        if id(tensor) not in converted:
            new = tensor
            if not _on(new, device):
                new = new.to(device)
            if channels_last and _needs_channels_last(new):
                new = new.contiguous(memory_format=torch.channels_last)
            if new is not tensor and isinstance(tensor, nn.Parameter):
                new = nn.Parameter(new, requires_grad=tensor.requires_grad)
            converted[id(tensor)] = new
        return converted[id(tensor)]

    return _view(module, {}, convert)


def _view(module: nn.Module, memo: dict[int, nn.Module], convert) -> nn.Module:
    """A shallow copy of the module tree in eval mode, tensors passed through ``convert``."""
    if id(module) in memo:  # a submodule used twice stays one module
        return memo[id(module)]
    clone = copy.copy(module)  # new object, same __dict__ values
    memo[id(module)] = clone
    for key in _MODULE_CONTAINERS:
        value = module.__dict__.get(key)
        if isinstance(value, (dict, set)):
            clone.__dict__[key] = copy.copy(value)
    clone.__dict__["training"] = False
    for name, param in module._parameters.items():
        clone._parameters[name] = convert(param)
    for name, buf in module._buffers.items():
        clone._buffers[name] = convert(buf)
    for name, child in module._modules.items():
        clone._modules[name] = None if child is None else _view(child, memo, convert)
    return clone


def _named_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    yield from module.named_parameters(remove_duplicate=True)
    yield from module.named_buffers(remove_duplicate=True)


def _on(tensor: torch.Tensor, device: torch.device) -> bool:
    # torch.device("cuda") and a tensor on cuda:0 are the same place.
    if tensor.device.type != device.type:
        return False
    return device.index is None or tensor.device.index == device.index


def _needs_channels_last(tensor: torch.Tensor) -> bool:
    return tensor.ndim == 4 and not tensor.is_contiguous(memory_format=torch.channels_last)
