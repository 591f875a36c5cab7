"""One sweep for every detection vs one sweep per detection (how Captum and pytorch-grad-cam users do it).

    python benchmarks/detection.py [--size 320] [--detections 10] [--stride 64]

A torchvision Faster R-CNN (MobileNetV3-FPN, random weights, images resized to --size) explains its
--detections best detections: once with targets_output (all maps from the same forward passes), once
with a loop of one sweep per detection. Both give the same maps (checked); the figures move with the
machine and its load, so run it on yours.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torchvision

from occlusion_widget import occlusion_sensitivity
from occlusion_widget.engine.targets import default_targets, targets_output
from occlusion_widget.engine.targets_adapters import DetectorModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--detections", type=int, default=10)
    parser.add_argument("--stride", type=int, default=64, help="mask stride in pixels (mask = 2 x stride)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    det = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, min_size=args.size, max_size=args.size, box_score_thresh=0.0)
    model = DetectorModule(det)
    image = torch.rand(3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        targets = default_targets(model(image[None]), min_score=0.0, top_k=args.detections)
    kw = dict(mask_size=2 * args.stride, stride=args.stride, strategy="full")
    k = len(targets)

    start = time.perf_counter()
    one = occlusion_sensitivity(model, image, list(range(k)), output=targets_output(targets), **kw)
    t_one = time.perf_counter() - start
    start = time.perf_counter()
    loop = [occlusion_sensitivity(model, image, 0, output=targets_output([t]), **kw) for t in targets]
    t_loop = time.perf_counter() - start
    diff = max(float(np.abs(one.maps[i] - r.maps[0]).max()) for i, r in enumerate(loop))

    positions = int(np.prod(one.grid.shape[1:]))
    print(f"Faster R-CNN MobileNetV3-FPN (random weights), {args.size}x{args.size}, {k} detections, "
          f"{positions} mask positions (mask {2 * args.stride}, stride {args.stride}), "
          f"{torch.get_num_threads()} threads")
    print(f"one sweep for all {k}:   {t_one:7.2f} s   ({one.n_forward} forward calls)")
    print(f"one sweep per detection: {t_loop:7.2f} s   ({sum(r.n_forward for r in loop)} forward calls)")
    print(f"speed-up: {t_loop / t_one:.1f}x   largest map difference: {diff:.2e}")


if __name__ == "__main__":
    main()
