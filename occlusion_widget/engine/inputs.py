"""Turn what the user passed (image, mask value, output, targets, device) into
tensors and callables the sweep can use, with errors that name the parameter."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Protocol, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classifier import ImageClassifier, ImageLike

OUTPUTS = ("probability", "logit")


class ScoreFn(Protocol):
    """Scores (N, K_all) of an input batch; ``from_output(raw, n)`` the same from an output already computed."""

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

    from_output: Callable[[object, int], torch.Tensor]


Output = str | Callable[[torch.Tensor], torch.Tensor]


#: ``input_kind=``: how a tensor's axes are read (:func:`input_kind_of`).
INPUT_KINDS = ("auto", "image", "signal", "volume")
_FORMS = {"image": "an image (C, H, W) or a batch of one (1, C, H, W)", "signal": "a 1-D signal (C, L)",
          "volume": "a volume (C, D, H, W) or a batch of one (1, C, D, H, W)"}
_CONV_KINDS = {nn.Conv1d: "signal", nn.Conv2d: "image", nn.Conv3d: "volume"}


def input_kind_of(module: nn.Module, shape: tuple[int, ...], input_kind: str = "auto") -> str:
    """How a tensor of ``shape`` is read: "image", "signal" or "volume", or a clear error.

    ``"auto"``: a 5-D tensor is a volume (1, C, D, H, W); a 4-D one a volume (C, D, H, W) when the
    model's first convolution is an ``nn.Conv3d``, else a batch of one image (1, C, H, W); 3-D an
    image (C, H, W); 2-D a 1-D signal (C, L). An explicit kind overrides the guess. A tensor whose
    rank does not fit the model's first convolution is refused with both readings named.
    """
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind={input_kind!r} is not allowed; use one of {', '.join(map(repr, INPUT_KINDS))}")
    found = first_conv(module)
    conv_kind = next((k for t, k in _CONV_KINDS.items() if found is not None and isinstance(found[1], t)), None)
    ranks = {"image": (3, 4), "signal": (2,), "volume": (4, 5)}
    if input_kind == "auto":
        kind = {2: "signal", 3: "image", 5: "volume"}.get(len(shape))
        if len(shape) == 4:
            kind = "volume" if conv_kind == "volume" else "image"
        if kind is None:
            raise ValueError(f"image: expected a tensor (C, H, W), (1, C, H, W), a 1-D signal (C, L) or a volume "
                             f"(C, D, H, W) / (1, C, D, H, W); got {len(shape)} dimensions {shape}")
    else:
        kind = input_kind
        if len(shape) not in ranks[kind]:
            raise ValueError(f"image: input_kind={kind!r} needs {_FORMS[kind]}; got a tensor of shape {shape}")
    # Image vs signal mismatches get _check_channels' more specific messages.
    if conv_kind is not None and conv_kind != kind and "volume" in (kind, conv_kind):
        name, conv = found  # type: ignore[misc]
        raise ValueError(
            f"image: a tensor of shape {shape} read as {_FORMS[kind]}"
            f"{' (input_kind=' + repr(input_kind) + ')' if input_kind != 'auto' else ''}, but the model's first "
            f"convolution {name!r} is an nn.{type(conv).__name__}, which takes {_FORMS[conv_kind]}. Pass the "
            f"input in that shape (or input_kind={conv_kind!r} if the tensor already is one)")
    return kind


def prepare_input(classifier: ImageClassifier, image: object, input_kind: str = "auto", *,
                  volumes: bool = False) -> tuple[torch.Tensor, bool]:
    """The input as float32 (C, H, W), and whether it is a 1-D signal.

    A 1-D signal (C, L) comes back as (C, 1, L): the sweep treats it as an
    image of height 1. A volume comes back as (C, D, H, W) when ``volumes`` (the
    caller handles them), else it is refused clearly. ``input_kind``: see :func:`input_kind_of`.
    """
    if isinstance(image, torch.Tensor):
        x = image.detach()
        kind = input_kind_of(classifier.module, tuple(x.shape), input_kind)
        if kind == "volume" and not volumes:
            raise ValueError(f"image: a tensor of shape {tuple(x.shape)} is a volume (C, D, H, W) for this model; "
                             "volumes are supported by occlusion_sensitivity only, not by this function yet")
        if x.ndim == (5 if kind == "volume" else 4):
            if x.shape[0] != 1:
                raise ValueError(f"image: a {x.ndim}-D tensor must be a batch of one "
                                 f"{'(1, C, D, H, W)' if kind == 'volume' else '(1, C, H, W)'}, got {tuple(x.shape)}"
                                 + ("" if kind == "volume" else "; it is read as a volume (C, D, H, W) only for a "
                                    "model whose first convolution is an nn.Conv3d"))
            x = x[0]
        if not x.is_floating_point():
            raise TypeError(f"image: expected a float tensor in the model's input space, got {x.dtype}")
        x = x.float()
    else:
        if input_kind in ("volume", "signal"):
            raise ValueError(f"image: input_kind={input_kind!r} needs a tensor, {_FORMS[input_kind]}; "
                             f"got a {type(image).__name__}")
        x = classifier.preprocess(cast(ImageLike, image))
    if not torch.isfinite(x).all():
        raise ValueError("image: the input holds NaN or infinite values")
    _check_channels(classifier.module, tuple(x.shape))
    if x.ndim == 2:
        return x.unsqueeze(1).contiguous(), True
    return x.contiguous(), False


def first_conv(module: nn.Module) -> tuple[str, nn.Module] | None:
    """The first convolution (in registration order) whose ``in_channels`` is known, or None."""
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and not isinstance(m, nn.modules.lazy.LazyModuleMixin):
            return name, m
    return None


def _check_channels(module: nn.Module, shape: tuple[int, ...]) -> None:
    """Refuse, before any forward pass, an input whose channels or rank the first convolution cannot take.

    A 2-D tensor is a 1-D signal (C, L) when C is the model's channel count; otherwise it is most
    likely an (H, W) image missing its channel axis, which would fail deep in the network.
    """
    found = first_conv(module)
    if found is None:  # no convolution: nothing to read the expected shape from
        return
    name, conv = found
    c = int(cast(int, conv.in_channels))
    expects = f"(C, L) = ({c}, L) 1-D signals" if isinstance(conv, nn.Conv1d) else f"(C, H, W) = ({c}, H, W) images"
    where = f"its first convolution {name!r} takes {c} input channel{'s' * (c != 1)}"
    if len(shape) == 4 or isinstance(conv, nn.Conv3d):
        if isinstance(conv, nn.Conv3d) and shape[0] != c:
            raise ValueError(f"image: a volume of shape {shape} has {shape[0]} channel{'s' * (shape[0] != 1)}, but "
                             f"the model expects (C, D, H, W) = ({c}, D, H, W) volumes ({where})")
        return
    if len(shape) == 2:
        if shape[0] == c:
            return  # a 1-D signal with the model's channels
        raise ValueError(
            f"image: a 2-D tensor of shape {shape} is read as a 1-D signal (C, L), but the model expects "
            f"{expects} ({where}). An image (H, W) needs its channel axis: pass image[None]"
            + (f".expand({c}, -1, -1)" if c != 1 else "")
            + f" for a ({c}, H, W) tensor; a 1-D signal must be ({c}, L)"
        )
    if isinstance(conv, nn.Conv1d):
        raise ValueError(f"image: a 3-D tensor of shape {shape}, but the model expects {expects} ({where})")
    if isinstance(conv, nn.Conv2d) and shape[0] != c:
        hint = f"; a greyscale image (1, H, W) becomes ({c}, H, W) with image.expand({c}, -1, -1)" \
            if shape[0] == 1 else ""
        raise ValueError(
            f"image: a tensor of shape {shape} has {shape[0]} channel{'s' * (shape[0] != 1)}, but the model expects "
            f"{expects} ({where}){hint}"
        )


def resolve_device(device: object) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(cast(str, device))  # any other type raises TypeError, refused below
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not allowed; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine; use 'auto' or 'cpu'")
    return dev


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (C, H, W) with reflect padding (1-px axes are left alone)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = x[None]
    c = x.shape[0]
    for axis, n in ((2, x.shape[1]), (3, x.shape[2])):
        if n == 1:
            continue
        r = min(radius, n - 1)
        k = kernel[radius - r : radius + r + 1]
        k = k / k.sum()
        shape = (1, 1, -1, 1) if axis == 2 else (1, 1, 1, -1)
        pad = (0, 0, r, r) if axis == 2 else (r, r, 0, 0)
        out = F.conv2d(F.pad(out, pad, mode="reflect"), k.view(shape).repeat(c, 1, 1, 1), groups=c)
    return out[0]


def resolve_fill(mask_value: object, x: torch.Tensor, mask_size: tuple[int, ...]) -> tuple[torch.Tensor, np.ndarray | str]:
    """What an occluded pixel becomes: a tensor of ``x``'s shape ((C, H, W) or (C, D, H, W)), and the value to report.

    ``"auto"``: each channel's mean; a scalar; one value per channel; or
    ``"blur"``: a blurred copy of the input (sigma = half the mask size), so
    the mask removes detail at the mask's own scale but keeps colour.
    """
    c = x.shape[0]
    spatial_dims = tuple(range(1, x.ndim))
    if isinstance(mask_value, str):
        if mask_value == "auto":
            value = x.mean(dim=spatial_dims)
        elif mask_value == "blur":
            if x.ndim == 4:
                raise ValueError("mask_value='blur' is for images and signals; a volume (C, D, H, W) takes "
                                 "'auto', a number or one number per channel")
            sigma = max(1.0, max(mask_size) / 2)
            return gaussian_blur(x, sigma), "blur"
        else:
            raise ValueError(f"mask_value={mask_value!r} is not allowed; use 'auto', 'blur', a number or one number per channel")
    elif isinstance(mask_value, Real) and not isinstance(mask_value, bool):
        value = torch.full((c,), float(mask_value))
    elif isinstance(mask_value, (Sequence, np.ndarray, torch.Tensor)):
        value = torch.as_tensor(np.asarray(mask_value, dtype=np.float32)).flatten()
        if value.numel() != c:
            raise ValueError(f"mask_value: {value.numel()} values given, the input has {c} channels; give one per channel")
    else:
        raise TypeError(f"mask_value={mask_value!r} is not allowed; use 'auto', 'blur', a number or one number per channel")
    if not torch.isfinite(value).all():
        raise ValueError(f"mask_value={mask_value!r} must be finite")
    value = value.to(x)
    return value.view(c, *(1,) * len(spatial_dims)).expand_as(x).contiguous(), value.cpu().numpy().astype(np.float32)


class _StopForward(Exception):
    """Raised by a layer hook once it has what it needs: the rest of the network is skipped."""


def score_function(module: nn.Module, output: Output, layer: str | None, is_signal: bool) -> tuple[ScoreFn, str]:
    """A callable mapping an input batch (N, C, H, W) to scores (N, K_all), and its name."""
    if layer is not None:
        if output != "probability":
            raise ValueError("output and layer: give one of them; with layer= the score is the channel's total activation")
        modules = dict(module.named_modules())
        if layer not in modules:
            names = [n for n in modules if n][:8]
            raise ValueError(f"layer={layer!r} is not a module of the model; names look like {names}")
        target = modules[layer]

        def layer_scores(batch: torch.Tensor) -> torch.Tensor:
            captured: list[torch.Tensor] = []
            caller = threading.get_ident()

            def hook(_m, _inp, out):
                # Hooks fire for every thread's forward pass (the widget previews while it sweeps):
                # only this call's own pass is captured and cut short.
                if threading.get_ident() == caller and not captured:
                    captured.append(out)
                    raise _StopForward

            handle = target.register_forward_hook(hook)
            try:
                module(_model_view(batch, is_signal))
            except _StopForward:
                pass
            finally:
                handle.remove()
            act = captured[0]
            if not isinstance(act, torch.Tensor):
                raise TypeError(f"layer={layer!r} returned {describe_output(act)}; layer= needs a module "
                                "whose output is a tensor (N, C, ...): pick one of its submodules")
            return act.reshape(act.shape[0], act.shape[1], -1).sum(dim=2) if act.ndim > 2 else act

        def layer_from_output(_raw: object, _n: int) -> torch.Tensor:
            raise TypeError("layer= scores come from a forward hook, not from the model's output")

        layer_scores.from_output = layer_from_output  # type: ignore[attr-defined]
        return cast(ScoreFn, layer_scores), f"layer:{layer}"

    if callable(output):
        def reduce_custom(raw: object, n: int) -> torch.Tensor:
            scores = output(cast(torch.Tensor, raw))
            if not isinstance(scores, torch.Tensor):
                raise ValueError(f"output: the callable must return a (N, K) tensor for N={n} inputs, "
                                 f"got {describe_output(scores)}")
            if scores.ndim != 2 or scores.shape[0] != n:
                raise ValueError(f"output: the callable must return a (N, K) tensor, one row per input (N={n}), "
                                 f"got shape {tuple(scores.shape)}")
            if scores.shape[1] == 0:
                raise ValueError(f"output: the callable returned no scores (shape {tuple(scores.shape)}); "
                                 "it must return at least one column (N, K) with K >= 1")
            return scores

        def custom_scores(batch: torch.Tensor) -> torch.Tensor:
            return reduce_custom(module(_model_view(batch, is_signal)), batch.shape[0])

        custom_scores.from_output = reduce_custom  # type: ignore[attr-defined]
        return cast(ScoreFn, custom_scores), getattr(output, "__name__", "callable")
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not allowed; use 'probability', 'logit' or a callable")

    def reduce_classes(logits: object, n: int) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor):
            raise TypeError(
                f"output={output!r} needs a model that returns a tensor (N, classes); this model returned "
                f"{describe_output(logits)}. For a segmenter or a detector pass targets=[SegmentationTarget(label)] "
                f"or targets=[DetectionTarget(box, label)] (occlusion_widget.engine.targets), or targets=None to "
                f"explain everything it finds; for another output, pass output= a callable that reduces it to "
                f"(N, K) scores, e.g. {_example(logits)}"
            )
        if logits.ndim != 2:
            raise ValueError(
                f"output={output!r} needs a model returning (N, classes); it returned {tuple(logits.shape)}. "
                "Pass a callable output= to reduce it."
            )
        return logits.float().softmax(dim=1) if output == "probability" else logits.float()

    def class_scores(batch: torch.Tensor) -> torch.Tensor:
        return reduce_classes(module(_model_view(batch, is_signal)), batch.shape[0])

    class_scores.from_output = reduce_classes  # type: ignore[attr-defined]
    return cast(ScoreFn, class_scores), str(output)


def describe_output(out: object) -> str:
    """What a model returned, in words, for error messages: ``"a dict with keys ['out', 'aux']"``."""
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, Mapping):
        return f"a dict with keys {list(out.keys())[:8]}"
    if isinstance(out, (list, tuple)):
        kind = type(out).__name__
        if out and all(isinstance(o, Mapping) for o in out):
            return f"a {kind} of {len(out)} dicts with keys {list(out[0].keys())[:8]}"
        if out and all(isinstance(o, torch.Tensor) for o in out):
            return f"a {kind} of {len(out)} tensors of shapes {[tuple(o.shape) for o in out][:4]}"
        return f"a {kind} of {len(out)} items"
    return f"a {type(out).__name__}"


def _example(out: object) -> str:
    """An ``output=`` callable that fits this kind of output, for the error message."""
    if isinstance(out, dict):
        key = "out" if "out" in out else next(iter(out), "key")
        value = out.get(key)
        if isinstance(value, torch.Tensor) and value.ndim == 4:
            return f"output=lambda out: out[{key!r}].mean(dim=(2, 3))"
        return f"output=lambda out: out[{key!r}]"
    if isinstance(out, (list, tuple)) and out and all(isinstance(o, dict) for o in out):
        return ("output=lambda out: torch.stack([o['scores'][:1].sum() for o in out])[:, None] "
                "(the best detection's score per image)")
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor):
        return "output=lambda out: out[0]"
    return "output=lambda out: <a (N, K) tensor computed from out>"


def model_view(batch: torch.Tensor, is_signal: bool) -> torch.Tensor:
    """The batch as the model takes it: (N, C, L) for a 1-D signal (stored as (N, C, 1, L))."""
    return _model_view(batch, is_signal)


def _model_view(batch: torch.Tensor, is_signal: bool) -> torch.Tensor:
    return batch[:, :, 0, :] if is_signal else batch


def resolve_targets(targets: object, top_k: int | None, base_scores: torch.Tensor) -> np.ndarray:
    """Target indices (K,) from None (the top class), an int, a sequence, or ``top_k``."""
    n = base_scores.numel()
    if top_k is not None:
        if targets is not None:
            raise ValueError("targets and top_k: give one of them, not both")
        if not isinstance(top_k, Integral) or isinstance(top_k, bool) or not 1 <= top_k <= n:
            raise ValueError(f"top_k={top_k!r} is not allowed; use an int in 1..{n}")
        return base_scores.topk(int(top_k)).indices.cpu().numpy().astype(np.int64)
    if targets is None:
        return np.array([int(base_scores.argmax())], dtype=np.int64)
    values = [targets] if isinstance(targets, (Integral, np.integer)) else targets
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray, torch.Tensor)) or any(
        isinstance(t, bool) or not isinstance(t, (Integral, np.integer)) for t in np.asarray(values).ravel().tolist()
    ):
        raise TypeError(f"targets={targets!r} is not allowed; use None, an int or a sequence of ints")
    result = np.asarray(values, dtype=np.int64).ravel()
    if result.size == 0:
        raise ValueError("targets: the sequence is empty; give at least one class index")
    bad = [int(t) for t in result if not 0 <= t < n]
    if bad:
        raise ValueError(f"targets: {bad} outside [0, {n}); the output has {n} classes")
    return result
