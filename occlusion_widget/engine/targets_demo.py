"""Small offline demo models for segmentation and detection maps, and the synthetic scenes they learnt.

Scenes (64x64 RGB, [0, 1]) hold 1-3 objects on a textured background with distractors, so the true
evidence for every object is known:

- class 1 "square": a filled square; class 2 "disk": a filled disk (any colour, 12-22 px);
- distractors: thin outlines of squares and rings (same colours, not objects);
- context: every disk casts a dark "shadow" bar just below its box. The shadow is not part of the
  object (not in its mask, not in its box), so a model that uses it relies on context: the notebook
  reads this as a failure case.

:class:`TinySegmenter` returns torchvision's form ``{"out": (N, 3, H, W)}``; :class:`TinyDetector` is a
CenterNet-style detector (a class heatmap, box sizes and offsets at stride 4) returning torchvision's list
of dicts. ``scripts/train_segdet.py`` trains both in a few minutes on a CPU; the weights ship as
``occlusion_widget/data/segdet_*.pt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CATEGORIES = ["background", "square", "disk"]
SIZE = 64
STRIDE = 4
DATA = Path(__file__).resolve().parent.parent / "data"


def synthetic_scene(rng: np.random.Generator, size: int = SIZE, shadow: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One scene: image (3, H, W) in [0, 1], mask (H, W) int64 class per pixel, boxes (D, 4) xyxy, labels (D,)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Background: a low-frequency colour wash plus stripes and noise (texture the models must ignore).
    img = rng.uniform(0.2, 0.6, 3)[:, None, None] * np.ones((3, size, size), np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.3, 0.9)
    img += 0.12 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))[None]
    img += rng.normal(0, 0.06, (3, size, size))
    mask = np.zeros((size, size), np.int64)
    for _ in range(rng.integers(1, 4)):  # distractors: outlines, never objects
        s, cx, cy = rng.uniform(8, 20), rng.uniform(8, size - 8), rng.uniform(8, size - 8)
        colour = rng.uniform(0, 1, 3)[:, None]
        if rng.random() < 0.5:
            ring = np.abs(np.maximum(np.abs(xx - cx), np.abs(yy - cy)) - s / 2) < 1.0
        else:
            ring = np.abs(np.hypot(xx - cx, yy - cy) - s / 2) < 1.0
        img[:, ring] = colour
    boxes: list[list[float]] = []
    labels: list[int] = []
    for _ in range(rng.integers(1, 4)):
        s = rng.uniform(12, 22)
        for _try in range(20):  # place without overlapping earlier objects (boxes grown by 3 px)
            x0, y0 = rng.uniform(1, size - s - 1), rng.uniform(1, size - s - 7)
            if all(x0 > b[2] + 3 or x0 + s < b[0] - 3 or y0 > b[3] + 7 or y0 + s < b[1] - 3 for b in boxes):
                break
        else:
            continue
        label = int(rng.integers(1, 3))
        colour = rng.uniform(0, 1, 3)
        if np.abs(colour - img[:, int(y0 + s / 2), int(x0 + s / 2)]).max() < 0.3:
            colour = 1 - colour  # keep the object visible against its background
        cx, cy = x0 + s / 2, y0 + s / 2
        inside = (np.maximum(np.abs(xx + 0.5 - cx), np.abs(yy + 0.5 - cy)) <= s / 2) if label == 1 else \
            (np.hypot(xx + 0.5 - cx, yy + 0.5 - cy) <= s / 2)
        if label == 2 and shadow:  # context: a dark bar 2-5 px below the disk
            bar = (yy >= y0 + s + 2) & (yy < y0 + s + 5) & (np.abs(xx + 0.5 - cx) <= s / 2)
            img[:, bar] = 0.05
        img[:, inside] = colour[:, None]
        mask[inside] = label
        boxes.append([x0, y0, x0 + s, y0 + s])
        labels.append(label)
    img = np.clip(img, 0, 1).astype(np.float32)
    return (torch.from_numpy(img), torch.from_numpy(mask), torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            torch.tensor(labels, dtype=torch.int64))


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinySegmenter(nn.Module):
    """A small FCN (about 29k weights): (N, 3, H, W) -> ``{"out": (N, 3, H, W)}`` class logits."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(_block(3, 16), _block(16, 32, stride=2), _block(32, 32, dilation=2),
                                      _block(32, 32, dilation=4))
        self.classifier = nn.Conv2d(32, classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.classifier(self.features(x))
        return {"out": F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)}


class TinyDetector(nn.Module):
    """A CenterNet-style detector (about 29k weights) for 2 classes, torchvision's output form.

    ``forward`` returns, in eval mode, a list of N dicts ``boxes`` (D, 4) xyxy in input pixels,
    ``labels`` (D,) in {1, 2}, ``scores`` (D,): the class-heatmap peaks (3x3 local maxima) above
    ``score_thresh``, at most ``max_detections``. In training mode it returns the raw heads
    (heatmap logits (N, 2, H/4, W/4), sizes and offsets (N, 4, H/4, W/4)).
    """

    def __init__(self, score_thresh: float = 0.05, max_detections: int = 20) -> None:
        super().__init__()
        self.features = nn.Sequential(_block(3, 16), _block(16, 32, stride=2), _block(32, 32, stride=2),
                                      _block(32, 32, dilation=2), _block(32, 32, dilation=4))
        self.heat = nn.Conv2d(32, 2, 1)
        self.geometry = nn.Conv2d(32, 4, 1)  # log width, log height, x offset, y offset (in cells)
        self.score_thresh, self.max_detections = score_thresh, max_detections

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.heat(f), self.geometry(f)

    def forward(self, x: torch.Tensor | list[torch.Tensor]):
        if isinstance(x, (list, tuple)):
            x = torch.stack(list(x))
        heat, geo = self.heads(x)
        if self.training:
            return heat, geo
        return self.decode(heat, geo)

    def decode(self, heat: torch.Tensor, geo: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        prob = heat.sigmoid()
        peaks = prob * (prob == F.max_pool2d(prob, 3, 1, 1))
        n, c, h, w = prob.shape
        out = []
        for i in range(n):
            scores, idx = peaks[i].flatten().topk(min(self.max_detections, c * h * w))
            keep = scores > self.score_thresh
            scores, idx = scores[keep], idx[keep]
            cls, cell = idx // (h * w), idx % (h * w)
            cy, cx = (cell // w).float(), (cell % w).float()
            g = geo[i].flatten(1)[:, cell]                                   # (4, D)
            bw, bh = g[0].exp() * STRIDE, g[1].exp() * STRIDE
            px, py = (cx + 0.5 + g[2]) * STRIDE, (cy + 0.5 + g[3]) * STRIDE
            boxes = torch.stack([px - bw / 2, py - bh / 2, px + bw / 2, py + bh / 2], dim=1)
            out.append({"boxes": boxes, "labels": cls + 1, "scores": scores})
        return out


def load_demo_models() -> tuple[TinySegmenter, TinyDetector]:
    """The shipped segmenter and detector (eval mode, CPU), trained by ``scripts/train_segdet.py``."""
    seg, det = TinySegmenter(), TinyDetector()
    for model, name in ((seg, "segdet_segmenter.pt"), (det, "segdet_detector.pt")):
        path = DATA / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run python scripts/train_segdet.py to train it")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.eval()
    return seg, det


def pointing_game(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per map (K, H, W): whether its peak (largest value) lies inside its box (K, 4) xyxy in pixels."""
    hits = []
    for m, (x0, y0, x1, y1) in zip(maps, boxes, strict=True):
        r, c = np.unravel_index(int(np.nanargmax(m)), m.shape)
        hits.append(bool(x0 <= c + 0.5 <= x1 and y0 <= r + 0.5 <= y1))
    return np.array(hits)
