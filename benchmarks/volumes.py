"""Our full batched sweep vs MONAI's OcclusionSensitivity on a 3-D DenseNet121, in one process.

    python benchmarks/volumes.py            # 48^3, mask 24, overlap 0.5 (27 windows)
    python benchmarks/volumes.py --size 64 --mask 16 --overlap 0.5

Random weights (no download). Both use the same windows (``from_monai``), a constant fill, logits, and
the same batch size; the maps are compared as MONAI defines them (``monai_map``: base - pixel_mean()).
Figures move with the machine and its load: run it on yours.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from monai.networks.nets import DenseNet121
from monai.visualize import OcclusionSensitivity

from occlusion_widget import occlusion_sensitivity
from occlusion_widget.engine.volume import from_monai, monai_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--mask", type=int, default=24)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DenseNet121(spatial_dims=3, in_channels=1, out_channels=3).eval()
    x = torch.rand(1, 1, args.size, args.size, args.size)
    kwargs = from_monai((args.size,) * 3, args.mask, args.overlap, 0.0)
    occ = OcclusionSensitivity(model, mask_size=args.mask, n_batch=args.batch, verbose=False, mode=0.0,
                               overlap=args.overlap, activate=False)
    with torch.no_grad():
        model(x)  # warm-up: both runs then start from the same state
        start = time.perf_counter()
        theirs = occ(x)[0][0].numpy()
        t_monai = time.perf_counter() - start
    start = time.perf_counter()
    result = occlusion_sensitivity(model, x, targets=[0, 1, 2], output="logit", device="cpu",
                                   batch_size=args.batch, **kwargs)
    t_ours = time.perf_counter() - start
    diff = float(np.abs(monai_map(result) - theirs).max())
    print(f"DenseNet121 3-D, {args.size}^3, mask {args.mask}, overlap {args.overlap} -> stride {kwargs['stride']}, "
          f"{result.computed.size} windows, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"MONAI OcclusionSensitivity: {t_monai:.2f} s")
    print(f"ours (strategy={result.params.strategy}): {t_ours:.2f} s ({result.n_forward} forward calls)")
    print(f"ratio MONAI / ours: {t_monai / t_ours:.2f}x; max |difference| of the maps: {diff:.3g} "
          f"(largest |value| {float(np.abs(theirs).max()):.3g})")


if __name__ == "__main__":
    main()
