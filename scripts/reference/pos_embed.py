"""Golden outputs for core/src/model/resample.rs: position embeddings resized the way DeiT does
before a higher-resolution fine-tune (torch.nn.functional.interpolate, bicubic,
align_corners=False), class token kept.

Usage: python scripts/reference/pos_embed.py core/tests/fixtures/pos_embed_resample.json
(needs torch; the fixture is committed, tests read it without PyTorch).
"""

import json
import sys

import torch
import torch.nn.functional as F


def resample(pos, old, new):
    # pos: (1 + old*old, dim) -> (1 + new*new, dim), as DeiT's main.py
    cls, grid = pos[:1], pos[1:]
    dim = pos.shape[1]
    grid = grid.reshape(1, old, old, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new * new, dim)
    return torch.cat([cls, grid], dim=0)


def main():
    torch.manual_seed(0)
    cases = []
    # up (the paper's 224 -> 384 of ViT-B/16 is 14 -> 24; ViT-H/14 at 392 is 16 -> 28), down
    for old, new, dim in [(3, 5, 2), (14, 24, 3), (16, 28, 2), (5, 3, 2), (4, 7, 1)]:
        pos = torch.randn(1 + old * old, dim, dtype=torch.float32) * 0.02
        out = resample(pos, old, new)
        cases.append({"old": old, "new": new, "dim": dim,
                      "input": pos.flatten().tolist(), "output": out.flatten().tolist()})
    with open(sys.argv[1], "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f)


if __name__ == "__main__":
    main()
