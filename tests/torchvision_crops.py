"""torchvision's evaluation transform (Resize(floor(size / crop_pct), bicubic), CenterCrop)
and resized_crop (the resize inside RandomResizedCrop) on the given images, as 8-bit RGB:
what tests/torchvision_transforms.rs compares incubator's folder pipeline with.
Args: size crop_pct left top width height out image..."""
import json
import math
import sys

import numpy as np
from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Resize
from torchvision.transforms import functional as F

size, crop_pct = int(sys.argv[1]), float(sys.argv[2])
left, top, width, height, out = map(int, sys.argv[3:8])
bicubic = InterpolationMode.BICUBIC
evaluation = [Resize(math.floor(size / crop_pct), interpolation=bicubic), CenterCrop(size)]
result = []
for path in sys.argv[8:]:
    img = Image.open(path).convert("RGB")
    e = img
    for t in evaluation:
        e = t(e)
    r = F.resized_crop(img, top, left, height, width, [out, out], interpolation=bicubic)
    result.append({
        "eval": np.asarray(e).reshape(-1).tolist(),
        "resized_crop": np.asarray(r).reshape(-1).tolist(),
    })
print(json.dumps(result))
