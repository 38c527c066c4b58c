"""torchvision's DataLoader over an image folder with DeiT's training transform (timm's
create_transform: RandomResizedCrop bicubic, flip, RandAugment rand-m9-mstd0.5-inc1, random
erasing 0.25): images per second over timed batches after one warm-up batch. Run by
`incubator bench-loader --torchvision PYTHON`, which measures its own loader the same way on
the same folder and prints the ratio. Prints one JSON line."""
import argparse
import json
import time

import timm.data.auto_augment as timm_aa
import torch
from timm.data import create_transform
from torchvision import datasets

# timm's PosterizeIncreasing keeps 0 bits at magnitude 10 (m9 + mstd 0.5 reaches it), which
# Pillow >= 12 refuses ("bits must be between or equal to 1 and 8") and older Pillow turned
# into a black image; the black image, as before (and as incubator's loader does).
_posterize = timm_aa.posterize


def posterize(img, bits_to_keep, **kwargs):
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return _posterize(img, bits_to_keep, **kwargs)


timm_aa.posterize = posterize
timm_aa.NAME_TO_OP["Posterize"] = posterize
timm_aa.NAME_TO_OP["PosterizeIncreasing"] = posterize
timm_aa.NAME_TO_OP["PosterizeOriginal"] = posterize

p = argparse.ArgumentParser()
p.add_argument("--folder", required=True)
p.add_argument("--workers", type=int, required=True)
p.add_argument("--prefetch", type=int, default=2)
p.add_argument("--batch", type=int, required=True)
p.add_argument("--batches", type=int, required=True)
p.add_argument("--size", type=int, required=True)
a = p.parse_args()

transform = create_transform(
    a.size,
    is_training=True,
    auto_augment="rand-m9-mstd0.5-inc1",
    interpolation="bicubic",
    re_prob=0.25,
    re_mode="pixel",
    re_count=1,
    color_jitter=None,
)
ds = datasets.ImageFolder(f"{a.folder}/train", transform=transform)
loader = torch.utils.data.DataLoader(
    ds,
    batch_size=a.batch,
    shuffle=True,
    num_workers=a.workers,
    prefetch_factor=a.prefetch if a.workers > 0 else None,
    drop_last=True,
    generator=torch.Generator().manual_seed(0),
    # workers forked, as Linux did by default before Python 3.14: they inherit the posterize
    # patch above, and this script (run as `-c` source, with no guard around its top level)
    # is never imported again in them, as forkserver and spawn would
    multiprocessing_context="fork" if a.workers > 0 else None,
)
it = iter(loader)
next(it)  # warm-up: workers started, first batch decoded
start = time.perf_counter()
n = 0
for _ in range(a.batches):
    images, labels = next(it)
    n += images.shape[0]
elapsed = time.perf_counter() - start
print(json.dumps({"images_per_s": n / elapsed, "images": n, "seconds": elapsed,
                  "shape": list(images.shape), "torch": torch.__version__}))
