"""What an audit explains: a folder, a list of paths or a map-style dataset, with true labels and annotations."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Item:
    """One image of the data: its stable id, where it comes from and its true label."""

    index: int
    image_id: str
    path: str
    label: int | None  # the model's class index of the true label, when known
    label_name: str | None


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", " ")


def label_index(name: str, labels: Sequence[str] | None) -> int | None:
    """The model's index of a class name (case and '_' vs ' ' ignored), or None."""
    if not labels:
        return None
    table = {_norm(lab): i for i, lab in enumerate(labels)}
    return table.get(_norm(name))


class Source:
    """The images of an audit, indexable and picklable (Ray workers load images themselves).

    Parameters
    ----------
    data : folder path, sequence of paths, or map-style dataset
        A folder with class subfolders is an ImageFolder (true labels from the subfolder
        names); a folder of images has no labels. A dataset's items are images or
        (image, label); an int label is the model's class index unless the dataset has
        ``classes`` (then it indexes those names, as torchvision's ImageFolder does).
    labels : the model's class names, to map true label names to its indices.
    """

    def __init__(self, data: Any, labels: Sequence[str] | None):
        self.dataset = None
        self.files: list[tuple[str, str, str | None]] = []  # (image_id, path, true label name)
        if isinstance(data, (str, os.PathLike)):
            root = Path(data).expanduser()
            if not root.is_dir():
                raise ValueError(f"data={str(data)!r}: not a folder; pass a folder of images, a list of paths or a "
                                 "dataset with __len__ and __getitem__")
            classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
            for p in sorted(q for q in root.iterdir() if _is_image(q)):
                self.files.append((p.name, str(p), None))
            for c in classes:
                for p in sorted(q for q in (root / c).rglob("*") if _is_image(q)):
                    self.files.append((p.relative_to(root).as_posix(), str(p), c))
            if not self.files:
                raise ValueError(f"data={str(data)!r}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)})")
        elif isinstance(data, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in data):
            if not data:
                raise ValueError("data: the list of paths is empty")
            for p in data:
                if not Path(p).is_file():
                    raise ValueError(f"data: {str(p)!r} is not a file")
            ids = [str(p) for p in data]
            if len(set(ids)) != len(ids):
                raise ValueError("data: the list holds the same path twice; each image is explained once")
            self.files = [(str(p), str(p), None) for p in data]
        elif hasattr(data, "__len__") and hasattr(data, "__getitem__"):
            if len(data) == 0:
                raise ValueError("data: the dataset is empty")
            self.dataset = data
        else:
            raise TypeError(f"data: expected a folder, a list of paths or a map-style dataset (__len__ and "
                            f"__getitem__), got {type(data).__name__}")
        self.labels = list(labels) if labels else None
        named = getattr(data, "classes", None) if self.dataset is not None else None
        self.classes = list(named) if named is not None else None

    def __len__(self) -> int:
        return len(self.dataset) if self.dataset is not None else len(self.files)

    @property
    def has_labels(self) -> bool:
        if self.dataset is not None:
            first = self.dataset[0]
            return isinstance(first, tuple) and len(first) == 2
        return any(name is not None for _, _, name in self.files)

    def item_id(self, i: int) -> str:
        return self.files[i][0] if self.dataset is None else str(i)

    def load(self, i: int) -> tuple[Item, Any]:
        """The item's description and the image to give the model (a path, PIL image, array or tensor)."""
        if self.dataset is None:
            image_id, path, name = self.files[i]
            idx = label_index(name, self.labels) if name is not None else None
            return Item(i, image_id, path, idx, name), path
        got = self.dataset[i]
        image, label = got if isinstance(got, tuple) and len(got) == 2 else (got, None)
        idx, name = None, None
        if isinstance(label, torch.Tensor) and label.numel() == 1:
            label = label.item()
        if isinstance(label, str):
            name, idx = label, label_index(label, self.labels)
        elif isinstance(label, (int, np.integer)):
            if self.classes is not None:
                name = str(self.classes[int(label)])
                idx = label_index(name, self.labels)
            else:
                idx = int(label)
                name = self.labels[idx] if self.labels and 0 <= idx < len(self.labels) else str(idx)
        elif label is not None:
            raise TypeError(f"data[{i}]: the label must be an int or a class name, got {type(label).__name__}")
        path = str(image) if isinstance(image, (str, os.PathLike)) else ""
        return Item(i, str(i), path, idx, name), image


# --- annotations -------------------------------------------------------------------------------------------------

def load_annotations(annotations: Any) -> dict[str, list]:
    """{key: [box [x0, y0, x1, y1] or bool mask (H0, W0), ...]} from a COCO JSON path or a dict.

    COCO keys are the images' ``file_name`` (matched to an image id or a path's name); COCO ``bbox``
    [x, y, w, h] becomes [x0, y0, x1, y1]; segmentations are not read (their boxes are used).
    """
    if annotations is None:
        return {}
    if isinstance(annotations, (str, os.PathLike)):
        with open(annotations, encoding="utf-8") as fh:
            coco = json.load(fh)
        if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
            raise ValueError(f"annotations={str(annotations)!r}: not a COCO file (needs 'images' and 'annotations')")
        names = {im["id"]: im["file_name"] for im in coco["images"]}
        out: dict[str, list] = {}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            out.setdefault(names[a["image_id"]], []).append([x, y, x + w, y + h])
        return out
    if isinstance(annotations, dict):
        out = {}
        for key, value in annotations.items():
            if isinstance(value, np.ndarray) and value.dtype == bool:
                value = [value]
            shapes: list[np.ndarray | list[float]] = []
            for v in value:
                arr = np.asarray(v)
                if arr.dtype == bool and arr.ndim == 2:
                    shapes.append(arr)
                elif arr.shape == (4,) and np.isfinite(arr).all() and arr[2] > arr[0] and arr[3] > arr[1]:
                    shapes.append([float(a) for a in arr])
                else:
                    raise ValueError(f"annotations[{key!r}]: each entry must be a box [x0, y0, x1, y1] with "
                                     f"x1 > x0, y1 > y0, or a bool mask (H, W); got {arr.dtype} {arr.shape}")
            out[str(key)] = shapes
        return out
    raise TypeError(f"annotations: expected a COCO JSON path or a dict, got {type(annotations).__name__}")


def find_annotation(table: dict[str, list], item: Item) -> list | None:
    """The annotation of ``item``: by image id, path, or file name."""
    for key in (item.image_id, item.path, os.path.basename(item.path) if item.path else None):
        if key and key in table:
            return table[key]
    return None


def original_size(image: Any) -> tuple[int, int] | None:
    """(width, height) as the image is shown (EXIF orientation applied), or None for a tensor."""
    if isinstance(image, torch.Tensor):
        return None
    if isinstance(image, np.ndarray):
        return int(image.shape[1]), int(image.shape[0])
    if isinstance(image, Image.Image):
        return image.size
    with Image.open(image) as img:
        w, h = img.size
        if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
            w, h = h, w
    return w, h


def object_mask(shapes: list, size: tuple[int, int] | None, model: Any) -> np.ndarray:
    """The union of boxes / masks in original pixels, mapped to the model's input (H, W) as bool.

    The shapes are drawn into a picture of the original size and that picture goes through the model's own
    ``preprocess`` (its resize and centre crop, whatever their arithmetic), thresholded at half coverage.
    ``size`` None (a tensor input) means the shapes are already in input pixels.
    """
    in_h, in_w = model.input_size
    w, h = size if size is not None else (in_w, in_h)
    canvas = np.zeros((h, w), dtype=bool)
    for s in shapes:
        if isinstance(s, np.ndarray):
            if s.shape != (h, w):
                raise ValueError(f"annotations: a mask of shape {s.shape} for an image of {h}x{w} pixels")
            canvas |= s
        else:
            x0, y0, x1, y1 = s
            c0, c1 = max(int(np.floor(x0)), 0), max(int(np.ceil(x1)), 0)
            r0, r1 = max(int(np.floor(y0)), 0), max(int(np.ceil(y1)), 0)
            canvas[r0:r1, c0:c1] = True
    if size is None:
        return canvas
    picture = Image.fromarray(np.repeat(canvas[:, :, None], 3, axis=2).astype(np.uint8) * 255)
    return model.preprocess(picture).mean(0).numpy() > 0.5
