"""The batched occlusion sweep: one forward pass per mask position, all targets at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import cast

import numpy as np
import torch
from torch import nn

from .classifier import ImageClassifier, as_classifier
from .fills import MASK_SHAPES, Fill, resolve_occlusion_fill
from .grid import MaskGrid, resolve_sizes
from .incremental import STRATEGIES, make_incremental_score
from .inputs import Output, model_view, prepare_input, resolve_device, resolve_targets, score_function
from .model_state import check_materialised, prepared_module
from .regions import BoxOccluder, SegmentOccluder, describe_segments, resolve_segments, segment_boxes
from .result import OcclusionParams, OcclusionResult
from .structured_outputs import check_min_score, is_target_objects, resolve_structured
from .token_drop import check_token_drop, token_drop_scores
from .upsampling import UPSAMPLING, VOLUME_UPSAMPLING, resolve_upsampling
from .volume import check_volume_options

ProgressFn = Callable[[int, int, OcclusionResult], None]

#: Occluded images per forward pass when ``batch_size=None``.
DEFAULT_BATCH = {"cpu": 32, "cuda": 256}
PRECISIONS = ("float32", "bfloat16")
#: How many of the best outputs ``top_ids`` / ``top_scores`` keep at every mask position.
TOP_OUTPUTS = 5


def occlusion_sensitivity(
    model: ImageClassifier | nn.Module,
    image: object,
    targets: int | Sequence[int] | object | None = None,
    *,
    top_k: int | None = None,
    min_score: float = 0.5,
    mask_size: int | tuple[int, int] | str = "auto",
    stride: int | tuple[int, int] | str = "auto",
    mask_value: float | Sequence[float] | str = "auto",
    mask_clipping: bool = True,
    mask_shape: str = "box",
    segments: np.ndarray | torch.Tensor | str | None = None,
    n_segments: int = 50,
    upsampling: str = "bicubic",
    output: Output = "probability",
    layer: str | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "float32",
    strategy: str = "auto",
    positions: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    input_kind: str = "auto",
) -> OcclusionResult:
    """Occlusion sensitivity maps (Zeiler & Fergus 2014) for one input and K targets.

    A mask slides over the input; at each position the network runs on the
    occluded input and the change in each target's score is recorded. All
    targets come from the same forward passes.

    Parameters
    ----------
    model : ImageClassifier or nn.Module
        A wrapper (see :func:`load_default_model`, :func:`from_torchvision`) or a
        module mapping (N, C, H, W) (or (N, C, L)) to scores.
    image : tensor (C, H, W), (1, C, H, W), (C, L) or a volume (C, D, H, W) / (1, C, D, H, W); or PIL image / path / HxWx3 array
        A tensor is taken as it is, in the model's input space ([0, 1] pixels
        for a wrapper). Anything else goes through the wrapper's ``preprocess``.
        A 2-D tensor (C, L) is a 1-D signal: masks slide along L only. A 5-D tensor
        is a volume; a 4-D one is a volume (C, D, H, W) when the model's first
        convolution is an ``nn.Conv3d``, else an image batch of one (``input_kind``).
        Volumes: :mod:`occlusion_widget.engine.volume` (also how maps relate to MONAI's).
    targets : None, int, sequence of int, or SegmentationTarget / DetectionTarget (or a list of them)
        None: the class predicted on the unoccluded input; for a segmenter (output
        a dict with "out" or (N, C, H, W)) every class present in its prediction,
        largest area first; for a detector (a list of dicts with boxes, labels,
        scores) every detection with ``score >= min_score``, best first. A
        sequence gives one map per target, in that order; target objects
        (:mod:`occlusion_widget.engine.targets`) all come from the same sweep.
    top_k : int, optional
        Instead of ``targets``: the ``top_k`` best classes on the unoccluded input
        (at most ``top_k`` default targets of a segmenter or detector).
    min_score : float
        With ``targets=None`` and a detector: the lowest detection score explained.
    mask_size : "auto", int, (h, w) or (d, h, w)
        "auto" is 20% of the input size along each axis (MATLAB's MaskSize).
    stride : "auto", int, (a, b) or (a, b, c)
        "auto" is 10% of the input size along each axis (MATLAB's Stride).
    mask_value : "auto", float, per-channel sequence, or "blur"
        "auto" is each channel's mean over the input (MATLAB's MaskValue);
        "blur" replaces the region with a blurred copy of the input.
    mask_value : ... or "inpaint" or "drop"
        "inpaint": each region filled in from its surroundings, per position
        (scikit-image's biharmonic inpainting; slower, no incremental path).
        "drop" (vision transformers: torchvision ``VisionTransformer``, timm ViT/DeiT): the
        patches under the mask leave the token sequence instead of being painted grey, which
        a ViT never saw in training (Jain et al., ICLR 2022); masks grow outward to the patch
        grid (:func:`~.token_drop.patch_aligned_boxes`), and the full path runs.
    mask_clipping : bool
        True: mask centres at 0, s, 2s, ...; edge masks are cut to the input.
        False: every mask is full size, corners at 0, s, 2s, ... (MATLAB's MaskClipping).
    mask_shape : "box" or "gaussian"
        "gaussian": a soft mask, ``x * (1 - w) + fill * w`` with ``w`` 1 at the
        mask's centre falling smoothly to 0 at its edge (:func:`~.fills.gaussian_window`).
    segments : None, "slic" or int array (H, W)
        Occlude regions instead of boxes: one position per label of the label
        image ("slic": scikit-image's SLIC superpixels of the input). ``grid`` is
        then (K, n_segments) and each map paints every segment with its value;
        mask_size, stride and mask_clipping do not apply.
    n_segments : int
        With ``segments="slic"``: how many superpixels SLIC aims at.
    upsampling : "bicubic", "nearest", "none"; "trilinear" for volumes
        How ``maps`` is made from ``grid`` (MATLAB's OutputUpsampling). On a
        volume "bicubic" (the default) means "trilinear" (``params`` says so).
    output : "probability", "logit" or callable
        The score: softmax, raw output, or ``f(model_output) -> (N, K_all)``.
    layer : str, optional
        Watch this named module instead (MATLAB's OutputNames): the score of
        channel k is its activation summed over space; targets index channels.
    batch_size : int, optional
        Occluded inputs per forward pass (memory is bounded by it). Default 32
        on CPU, 256 on CUDA; on CUDA out-of-memory it halves and the sweep goes on.
    device : "auto", "cpu", "cuda" or torch.device
        "auto" picks CUDA when available. The computation runs there; the
        model itself is not moved (a module elsewhere is run from a copy of its
        weights on the device, see :func:`prepared_module`).
    precision : "float32" or "bfloat16"
        "bfloat16" runs the network under autocast: about 3x faster on CPUs
        with AMX and on tensor-core GPUs, with scores accurate to ~1e-2.
    strategy : "auto", "full" or "incremental"
        "incremental" recomputes, in every layer, only the part the mask can
        change, from activations cached on the unoccluded input (exact: the
        same maps within 1e-4; 2-3x faster on CNNs for masks up to ~20% of the
        input). "full" runs the whole network on every occluded input. "auto"
        goes incremental when the model supports it and the estimated cost is
        below 0.8 of a full pass. A model torch.fx cannot trace, or with an op
        it does not know before global pooling, runs the full path
        ("incremental" warns once); so do ``layer=`` and 1-D signals. Volumes
        run the full path ("incremental" refuses them: 3-D incremental inference
        is future work).
    positions : bool array (gy, gx), optional
        Evaluate only these mask positions (e.g. stride 1 in a region of
        interest); ``computed`` marks them and ``grid`` is NaN elsewhere.
    progress : callable(done, total, partial), optional
        Called after every batch with the positions done so far and a partial
        result (coarse positions come first, so it covers the whole input early).
    cancel : threading.Event, optional
        When set, the sweep stops within one batch and returns the partial
        result with ``complete=False``.
    input_kind : "auto", "image", "signal" or "volume"
        How a tensor's axes are read; "auto" guesses from its rank and the model's
        first convolution. A rank that does not fit the model's convolutions is refused.

    Returns
    -------
    OcclusionResult
        ``grid`` (K, gy, gx), ``maps`` (K, H, W) (volumes: (K, gd, gy, gx), (K, D, H, W)), ``base_scores`` (K,), ``top_ids`` /
        ``top_scores`` (gy, gx, 5): the best outputs with the mask at each position, ...

    Notes
    -----
    The model is run in eval mode without changing the user's module: its
    training flags, device and weights' memory format are never touched, so
    other threads may use (or sweep) the same module at the same time.

    Raises
    ------
    TypeError
        A parameter of the wrong type, or a model output that is not a tensor
        (a dict, a list of detections): pass ``output=`` a callable reducing it.
    ValueError
        A parameter out of range, an input of the wrong shape for the model,
        weights on the meta device, or NaN/inf scores.
    """
    classifier = as_classifier(model)
    if not isinstance(mask_clipping, (bool, np.bool_)):
        raise TypeError(f"mask_clipping={mask_clipping!r} is not allowed; use True or False")
    if upsampling not in UPSAMPLING + VOLUME_UPSAMPLING:
        raise ValueError(f"upsampling={upsampling!r} is not allowed; use one of {', '.join(map(repr, UPSAMPLING))}")
    if batch_size is not None and (not isinstance(batch_size, Integral) or isinstance(batch_size, bool)
                                   or batch_size < 1):
        raise ValueError(f"batch_size={batch_size!r} is not allowed; use None or a positive int")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not allowed; use 'float32' or 'bfloat16'")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not allowed; use 'auto', 'full' or 'incremental'")
    if cancel is not None and not hasattr(cancel, "is_set"):
        raise TypeError("cancel: expected a threading.Event (anything with is_set())")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress={progress!r} is not allowed; use None or a callable progress(done, total, partial)")
    if mask_shape not in MASK_SHAPES:
        raise ValueError(f"mask_shape={mask_shape!r} is not allowed; use one of {', '.join(map(repr, MASK_SHAPES))}")
    check_min_score(min_score)
    check_materialised(classifier.module)

    x, is_signal = prepare_input(classifier, image, input_kind, volumes=True)
    upsampling = resolve_upsampling(upsampling, x.ndim - 1)
    if x.ndim == 4:  # a volume (C, D, H, W)
        strategy = check_volume_options(strategy, segments, mask_value)
    spatial = tuple(x.shape[1:])
    mask_pair, stride_pair = resolve_sizes(spatial, mask_size, stride)
    grid = MaskGrid.build(spatial, mask_pair, stride_pair, bool(mask_clipping))
    dev = resolve_device(device)
    if segments is not None:
        if mask_shape != "box":
            raise ValueError(f"mask_shape={mask_shape!r} with segments=: a segment is occluded whole; use "
                             "mask_shape='box' (the default)")
        if positions is not None:
            raise ValueError("positions= selects mask positions of the box grid; it does not apply with segments=")
        occluder: BoxOccluder | SegmentOccluder = SegmentOccluder(*resolve_segments(segments, x, n_segments), dev)
    else:
        occluder = BoxOccluder(grid, mask_shape, dev)
    if positions is not None:
        positions = np.asarray(positions)
        if positions.dtype != bool or positions.shape != grid.shape:
            raise ValueError(f"positions: expected a bool array of the grid's shape {grid.shape}, "
                             f"got {positions.dtype} {positions.shape}")
        if not positions.any():
            raise ValueError("positions: no mask position is selected (the array is all False); "
                             "select at least one, or pass positions=None for all of them")
    batch = int(batch_size or DEFAULT_BATCH.get(dev.type, 32))

    # An eval-mode module on `dev` that shares the user's weights: the user's module keeps its
    # training flags, device and memory format, even while another thread uses it (model_state.py).
    module = prepared_module(classifier.module, dev)
    drop = isinstance(mask_value, str) and mask_value == "drop"
    if drop:
        strategy = check_token_drop(module, x, is_signal, segments, mask_shape, layer, strategy)
    # channels_last inputs speed convolutions up 1.3-1.6x on CPU and on tensor cores; the
    # weights keep their format (converting them would mean a copy on every call).
    channels_last = not is_signal and x.ndim == 3 and any(isinstance(m, nn.Conv2d) for m in module.modules())
    job = _Sweep(classifier=classifier, module=module, x=x.to(dev), is_signal=is_signal, grid=grid,
                 mask_value=mask_value, upsampling=upsampling, output=output, layer=layer, batch=batch, device=dev,
                 channels_last=channels_last, precision=precision, strategy=strategy, positions=positions,
                 occluder=occluder, min_score=float(min_score), segments=segments)
    return _run(job, targets, top_k, progress, cancel)


@dataclass(frozen=True)
class _Sweep:
    """What :func:`occlusion_sensitivity` resolved, handed to :func:`_run` in one piece."""

    classifier: ImageClassifier
    module: nn.Module
    x: torch.Tensor  # (C, H, W) on ``device``; (C, 1, L) for a 1-D signal; (C, D, H, W) for a volume
    is_signal: bool
    grid: MaskGrid
    mask_value: object
    upsampling: str
    output: Output
    layer: str | None
    batch: int
    device: torch.device
    channels_last: bool
    precision: str
    strategy: str
    positions: np.ndarray | None
    occluder: BoxOccluder | SegmentOccluder
    min_score: float
    segments: object


@torch.inference_mode()
def _run(job: _Sweep, targets: object, top_k: int | None, progress: ProgressFn | None,
         cancel: threading.Event | None) -> OcclusionResult:
    start = time.perf_counter()
    classifier, module, x, is_signal, grid, occ = job.classifier, job.module, job.x, job.is_signal, job.grid, job.occluder
    mask_value, upsampling, output, layer, batch = job.mask_value, job.upsampling, job.output, job.layer, job.batch
    dev, channels_last, precision, strategy, positions = (job.device, job.channels_last, job.precision,
                                                          job.strategy, job.positions)
    segmented = isinstance(occ, SegmentOccluder)
    segment_occ = occ if isinstance(occ, SegmentOccluder) else None  # the same object, typed for its fields
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
    x_in = x[None].contiguous(memory_format=torch.channels_last) if channels_last else x[None]
    structured = None
    if is_target_objects(targets) and (layer is not None or callable(output)):
        resolve_structured(None, targets, output, top_k, job.min_score, layer=layer)  # raises: which to give
    if layer is None and not callable(output) and (targets is None or is_target_objects(targets)):
        # One pass on the unoccluded input tells a classifier from a segmenter or a detector; it is
        # also the base pass (no extra forward).
        with autocast:
            raw = module(model_view(x_in, is_signal))
        structured = resolve_structured(raw, targets, output, top_k, job.min_score, classifier.labels)
        if structured is not None:
            output, targets, top_k = structured.output, structured.indices, None
        network_score, output_name = score_function(module, output, layer, is_signal)
        with autocast:
            base_all = network_score.from_output(raw, 1).float()[0]
    else:
        network_score, output_name = score_function(module, output, layer, is_signal)
        with autocast:
            base_all = network_score(x_in).float()[0]
    source = f"the model (through output={output_name})" if callable(output) else "the model"

    def score(batch_in: torch.Tensor) -> torch.Tensor:
        with autocast:
            return network_score(batch_in).float()

    fill_size = grid.mask_size
    if segmented:  # "blur": sigma from the mean segment's side
        side = max(1, int(round((x.shape[1] * x.shape[2] / occ.size) ** 0.5)))
        fill_size = (min(side, x.shape[1]), min(side, x.shape[2]))
    drop = isinstance(mask_value, str) and mask_value == "drop"
    # "drop": a ViT's occluded patches leave its token sequence (no fill); the result's fill is the input.
    fill = Fill(None, "drop") if drop else resolve_occlusion_fill(mask_value, x, cast("tuple[int, int]", fill_size))
    if not torch.isfinite(base_all).all():
        bad = torch.nonzero(~torch.isfinite(base_all)).flatten().tolist()
        raise ValueError(f"{source} returned NaN/inf scores on the unoccluded input: score indices "
                         f"{bad[:10]}{' ...' if len(bad) > 10 else ''} of {base_all.numel()}; "
                         "occlusion maps of them would be NaN")
    target_idx = resolve_targets(targets, top_k, base_all)
    target_t = torch.as_tensor(target_idx, device=dev)
    base = base_all[target_t]
    n_top = min(TOP_OUTPUTS, base_all.numel())
    base_top = base_all.topk(n_top)
    hard_boxes = not segmented and occ.mask_shape == "box" and not fill.per_position and not drop
    if not hard_boxes and strategy == "incremental":
        raise ValueError("strategy='incremental' needs box masks with one fill for every position; with "
                         "mask_shape='gaussian', mask_value='inpaint' or segments= use strategy='auto' or 'full'")
    if not hard_boxes or (structured is not None and strategy == "auto"):
        strategy = "full"  # segmenters and detectors: nothing to gain from tracing them
    incremental = None
    if hard_boxes and fill.value is not None:
        incremental = make_incremental_score(module, x, fill.value, output, strategy=strategy,
                                             mask_size=cast("tuple[int, int]", grid.mask_size), layer=layer,
                                             is_signal=is_signal, precision=precision)
    used = "full" if incremental is None else "incremental"

    order = occ.order()
    if positions is not None:
        order = order[positions.ravel()[order]]
    changes = np.zeros((len(target_idx), occ.size), dtype=np.float32)
    computed = np.zeros(occ.size, dtype=bool)
    # The n_top best outputs at every position (what the network answers with that region hidden).
    top_ids = np.full((occ.size, n_top), -1, dtype=np.int64)
    top_scores = np.full((occ.size, n_top), np.nan, dtype=np.float32)
    n_forward, done = 1, 0
    labels = structured.labels if structured is not None else _labels(classifier, target_idx, layer)
    row_axis = is_signal or segmented  # a grid of one row: (K, gx) for a signal, (K, n) for segments

    def result(complete: bool) -> OcclusionResult:
        raw_values = changes.reshape(-1, *occ.shape)
        comp = computed.reshape(occ.shape)
        if positions is not None:
            values = np.where(comp, raw_values, np.nan).astype(np.float32)
        else:
            values = raw_values if complete else occ.partial(raw_values, comp)
        maps = occ.maps(values, cast("tuple[int, int]", tuple(x.shape[1:])), upsampling)
        params = OcclusionParams(
            mask_size=(grid.mask_size[1],) if is_signal else grid.mask_size,
            stride=(grid.stride[1],) if is_signal else grid.stride,
            mask_value=fill.reported, mask_clipping=grid.clipping, upsampling=upsampling,
            output=output_name, batch_size=batch, device=str(dev), precision=precision, strategy=used,
            mask_shape=occ.mask_shape, segments=describe_segments(job.segments, occ.size),
        )
        if segmented:
            assert segment_occ is not None
            boxes = segment_boxes(segment_occ.index, occ.size)
        else:
            boxes = grid.boxes[0][:, [1, 3]] if is_signal else grid.boxes.copy()
        n_pos = occ.shape[1] if row_axis else None
        per_position = (lambda a: a.reshape(n_pos, n_top)) if row_axis else (lambda a: a.reshape(*occ.shape, n_top))
        return OcclusionResult(
            grid=(values[:, 0] if row_axis else values).copy(), maps=maps[:, 0] if is_signal else maps,
            base_scores=base.float().cpu().numpy(), targets=target_idx, labels=labels,
            boxes=boxes, params=params, image=x.cpu().numpy()[:, 0] if is_signal else x.cpu().numpy(),
            fill=fill.image(x, is_signal),
            computed=comp[0].copy() if row_axis else comp.copy(), complete=complete,
            n_forward=n_forward, elapsed_s=time.perf_counter() - start,
            top_ids=per_position(top_ids).copy(), top_scores=per_position(top_scores).copy(),
            base_top_ids=base_top.indices.cpu().numpy().astype(np.int64),
            base_top_scores=base_top.values.float().cpu().numpy(),
            segments=None if segment_occ is None else (segment_occ.index[0] if is_signal else segment_occ.index.copy()),
            extra={} if segment_occ is None else {"segment_ids": segment_occ.ids.copy()},
        )

    while done < len(order):
        if cancel is not None and cancel.is_set():
            return result(complete=False)
        idx = order[done : done + batch]
        try:
            if incremental is not None:
                scores = incremental(occ.boxes(idx))
            elif drop:
                with autocast:
                    scores = token_drop_scores(module, x, occ.boxes(idx), reduce=network_score.from_output,
                                               batch_size=batch).float()
            else:
                occluded = fill.occlude(x, occ.weights(idx))
                if channels_last:
                    occluded = occluded.contiguous(memory_format=torch.channels_last)
                scores = score(occluded)
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            batch //= 2  # Retry the same positions in smaller batches.
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            continue
        finite = torch.isfinite(scores).all(dim=1)
        if not bool(finite.all()):
            bad = idx[~finite.cpu().numpy()]
            where = [tuple(int(v) for v in np.unravel_index(i, occ.shape))[1 if row_axis else 0:] for i in bad[:5]]
            cols_bad = torch.nonzero(~torch.isfinite(scores).all(dim=0)).flatten().tolist()
            raise ValueError(f"{source} returned NaN/inf scores with the mask at {'segment' if segmented else 'grid'} "
                             f"position(s) {where}{' ...' if len(bad) > 5 else ''} ({len(bad)} of the {len(idx)} "
                             f"positions of occluded batch {n_forward}; score indices {cols_bad[:10]}"
                             f"{' ...' if len(cols_bad) > 10 else ''}); occlusion maps of them would be NaN")
        n_forward += 1
        changes[:, idx] = (base[:, None] - scores[:, target_t].T).float().cpu().numpy()
        best = scores.topk(n_top, dim=1)
        top_ids[idx] = best.indices.cpu().numpy()
        top_scores[idx] = best.values.float().cpu().numpy()
        computed[idx] = True
        done += len(idx)
        if progress is not None:
            progress(done, len(order), result(complete=done == len(order)))
    return result(complete=True)


def _labels(classifier: ImageClassifier, target_idx: np.ndarray, layer: str | None) -> list[str] | None:
    if layer is not None:
        return [f"{layer}[{t}]" for t in target_idx]
    if classifier.labels is None:
        return None
    return [classifier.label(int(t)) for t in target_idx]
