"""occlusion-widget vs Captum's Occlusion, in one process, on the same ResNet-18.

    python benchmarks/vs_captum.py [--repeats 1] [--batch-size 32]

(a) one target, mask 15, stride 8;  (b) the top-5 classes at the auto parameters
(mask 45, stride 22 on 224x224), where Captum needs one run per class.

Both sides use full-size masks (``mask_clipping=False``), the same windows,
strides and baseline, so the maps can be compared: ours is ``pixel_mean()``
(Captum's per-pixel convention). Captum is timed twice: with its default
``perturbations_per_eval=1`` (as documented) and batched like ours.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torchvision
from captum.attr import Occlusion

from occlusion_widget import occlusion_sensitivity


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def run_case(name, model, x, targets, mask, stride, batch, repeats):
    fill = x.mean(dim=(1, 2))
    baseline = fill.view(1, -1, 1, 1).expand(1, *x.shape).contiguous()

    def ours():
        return occlusion_sensitivity(model, x, targets, mask_size=mask, stride=stride, mask_clipping=False,
                                     batch_size=batch, device="cpu").pixel_mean()

    def captum(per_eval):
        def run():
            occ = Occlusion(lambda b: model(b).softmax(dim=1))
            with torch.no_grad():
                return np.stack([
                    occ.attribute(x[None], sliding_window_shapes=(3, mask, mask), strides=(3, stride, stride),
                                  baselines=baseline, target=int(t), perturbations_per_eval=per_eval)[0, 0].numpy()
                    for t in targets
                ])
        return run

    t_ours, maps_ours = timed(ours, repeats)
    t_cap1, maps_cap = timed(captum(1), repeats)
    t_capb, _ = timed(captum(batch), repeats)
    diff = float(np.abs(maps_ours - maps_cap).max())
    print(f"\n({name}) targets={len(targets)} mask={mask} stride={stride}")
    print(f"  occlusion-widget            {t_ours:7.2f} s")
    print(f"  Captum, perturbations=1     {t_cap1:7.2f} s   ratio {t_cap1 / t_ours:5.2f}x")
    print(f"  Captum, perturbations={batch:<4d}  {t_capb:7.2f} s   ratio {t_capb / t_ours:5.2f}x")
    print(f"  max |ours - Captum|         {diff:.2e}")
    return t_ours, t_cap1, t_capb, diff


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ResNet-18 (random weights), 224x224")
    with torch.no_grad():
        top5 = model(x[None]).softmax(1)[0].topk(5).indices.tolist()
    run_case("a", model, x, top5[:1], 15, 8, args.batch_size, args.repeats)
    run_case("b", model, x, top5, 45, 22, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
