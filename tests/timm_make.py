"""Makes a timm VisionTransformer as a timm user would (timm's own initialisation, seed 0) and
saves its state dict, for `incubator import`'s tests.

Usage: python tests/timm_make.py CONFIG_JSON OUT.safetensors [EMBED_DIM]
CONFIG_JSON is what `incubator export --format timm` writes (constructor arguments, eps);
EMBED_DIM overrides the width (a model that does not fit the run).
Output (JSON): {"tensors": number of tensors saved}
"""

import json
import sys
from functools import partial

import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer


def main() -> None:
    config = json.load(open(sys.argv[1]))
    kwargs = dict(config["kwargs"])
    if len(sys.argv) > 3:
        kwargs["embed_dim"] = int(sys.argv[3])
    torch.manual_seed(0)
    model = VisionTransformer(**kwargs, norm_layer=partial(nn.LayerNorm, eps=config["norm_eps"]))
    # timm initialises biases and the class token to zero; perturb them so that every tensor
    # matters to the comparison
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, sys.argv[2])
    json.dump({"tensors": len(state)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
