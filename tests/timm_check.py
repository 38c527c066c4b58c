"""Loads a model written by `incubator export --format timm` into timm's own VisionTransformer
(strict=True) and compares timm's logits on the exported check images with the engine's.

Usage: python tests/timm_check.py EXPORT_DIR
Output (JSON): {"missing": [], "unexpected": [], "rel_error": ..., "max_abs": ..., "argmax_agree": ...}
"""

import json
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer


def main() -> None:
    out = Path(sys.argv[1])
    config = json.loads((out / "config.json").read_text())
    model = VisionTransformer(**config["kwargs"], norm_layer=partial(nn.LayerNorm, eps=config["norm_eps"]))
    result = model.load_state_dict(load_file(str(out / "model.safetensors")), strict=True)
    model.eval()
    check = load_file(str(out / "check.safetensors"))
    with torch.no_grad():
        logits = model(check["images"])
    ours = check["logits"]
    diff = (logits.double() - ours.double()).norm() / ours.double().norm()
    json.dump({
        "missing": list(result.missing_keys),
        "unexpected": list(result.unexpected_keys),
        "rel_error": float(diff),
        "max_abs": float((logits - ours).abs().max()),
        "argmax_agree": bool((logits.argmax(1) == ours.argmax(1)).all()),
        "timm": __import__("timm").__version__,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
