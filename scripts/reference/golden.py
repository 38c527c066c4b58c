"""Golden outputs of the reference (timm-style) ViT in PyTorch, for core/tests/pytorch_parity.rs.

The model is written out here with the engine's parameter names (stem.patch_embed.weight,
blocks.3.attn.qkv.weight, norm.weight, head.weight, ...), so a file of weights means the same
network on both sides. For each case the script draws weights and a batch from a fixed seed and
saves, in one safetensors file: the weights, the images, the soft targets, and the reference
logits, loss and gradient of every trainable parameter (computed in float64, stored as float32).

    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch safetensors
    .venv-torch/bin/python scripts/reference/golden.py core/tests/fixtures
"""
import math
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.set_default_dtype(torch.float32)
IMG, CH, PATCH, D, HEADS, CLASSES, BATCH = 8, 1, 4, 16, 2, 5, 3
TOKENS = (IMG // PATCH) ** 2 + 1
EPS = 1e-6


def init(depths, seed):
    """Random weights by name for modules of these depths (module 0 owns the stem, the last
    the head); larger than timm's init so that every part of the function matters."""
    g = torch.Generator().manual_seed(seed)
    w = {}

    def rnd(*shape, scale=0.3):
        return (torch.randn(*shape, generator=g) * scale).contiguous()

    w["stem.patch_embed.weight"] = rnd(D, CH * PATCH * PATCH)
    w["stem.patch_embed.bias"] = rnd(D)
    w["stem.cls_token"] = rnd(D)
    w["stem.pos_embed"] = rnd(TOKENS, D)
    for j in range(sum(depths)):
        p = f"blocks.{j}."
        w[p + "norm1.weight"] = 1 + rnd(D, scale=0.1)
        w[p + "norm1.bias"] = rnd(D, scale=0.1)
        w[p + "attn.qkv.weight"] = rnd(3 * D, D)
        w[p + "attn.qkv.bias"] = rnd(3 * D, scale=0.1)
        w[p + "attn.proj.weight"] = rnd(D, D)
        w[p + "attn.proj.bias"] = rnd(D, scale=0.1)
        w[p + "norm2.weight"] = 1 + rnd(D, scale=0.1)
        w[p + "norm2.bias"] = rnd(D, scale=0.1)
        w[p + "mlp.fc1.weight"] = rnd(4 * D, D)
        w[p + "mlp.fc1.bias"] = rnd(4 * D, scale=0.1)
        w[p + "mlp.fc2.weight"] = rnd(D, 4 * D)
        w[p + "mlp.fc2.bias"] = rnd(D, scale=0.1)
    w["norm.weight"] = 1 + rnd(D, scale=0.1)
    w["norm.bias"] = rnd(D, scale=0.1)
    w["head.weight"] = rnd(CLASSES, D)
    w["head.bias"] = rnd(CLASSES, scale=0.1)
    return w


def forward(w, images, depth):
    dt = images.dtype
    """timm's VisionTransformer forward (pre-norm blocks, exact GELU, class-token head)."""
    b = images.shape[0]
    conv = w["stem.patch_embed.weight"].reshape(D, CH, PATCH, PATCH)
    x = F.conv2d(images, conv, w["stem.patch_embed.bias"], stride=PATCH).flatten(2).transpose(1, 2)
    x = torch.cat([w["stem.cls_token"].reshape(1, 1, D).expand(b, -1, -1).to(dt), x], dim=1)
    x = x + w["stem.pos_embed"].unsqueeze(0)
    hd = D // HEADS
    for j in range(depth):
        p = f"blocks.{j}."
        h = F.layer_norm(x, (D,), w[p + "norm1.weight"], w[p + "norm1.bias"], EPS)
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        qkv = qkv.reshape(b, TOKENS, 3, HEADS, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * hd ** -0.5).softmax(dim=-1)
        o = (a @ v).transpose(1, 2).reshape(b, TOKENS, D)
        x = x + F.linear(o, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        h = F.layer_norm(x, (D,), w[p + "norm2.weight"], w[p + "norm2.bias"], EPS)
        h = F.linear(F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
                     w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
        x = x + h
    cls = F.layer_norm(x[:, 0], (D,), w["norm.weight"], w["norm.bias"], EPS)
    return F.linear(cls, w["head.weight"], w["head.bias"])


def case(name, depths, trained_blocks, trained_stem, trained_head, seed, out_dir):
    """`trained_*`: which parameters get gradients (a hybrid trains one module only)."""
    w = init(depths, seed)
    g = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(BATCH, CH, IMG, IMG, generator=g)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
    targets = F.one_hot(labels, CLASSES).float() * 0.9 + 0.1 / CLASSES  # label smoothing 0.1

    def trainable(n):
        if n.startswith("stem."):
            return trained_stem
        if n.startswith("blocks."):
            return int(n.split(".")[1]) in trained_blocks
        return trained_head

    # The reference is computed in float64 from the same (float32) numbers: the truth both
    # float32 implementations are measured against (PyTorch's own float32 gradients differ
    # from it by up to ~3e-4 per element here, so float32 golden values would test noise).
    params = {n: t.double().clone().requires_grad_(trainable(n)) for n, t in w.items()}
    logits = forward(params, images.double(), sum(depths))
    loss = torch.sum(-targets.double() * F.log_softmax(logits, dim=-1), dim=-1).mean()
    loss.backward()
    tensors = {f"weight.{n}": t for n, t in w.items()}
    tensors["input.images"] = images.contiguous()
    tensors["input.targets"] = targets.contiguous()
    tensors["output.logits"] = logits.detach().float().contiguous()
    tensors["output.loss"] = loss.detach().float().reshape(1)
    for n, p in params.items():
        if p.grad is not None:
            tensors[f"grad.{n}"] = p.grad.float().contiguous()
    meta = {
        "depths": ",".join(map(str, depths)),
        "torch": torch.__version__,
        "image": str(IMG), "channels": str(CH), "patch": str(PATCH), "embed_dim": str(D),
        "heads": str(HEADS), "classes": str(CLASSES),
    }
    path = f"{out_dir}/{name}.safetensors"
    save_file(tensors, path, metadata=meta)
    print(f"{path}: loss {loss.item():.6f}, {sum(k.startswith('grad.') for k in tensors)} gradients")


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "core/tests/fixtures"
    # the target ViT, trained end to end: modules of 2, 1, 3 blocks
    case("target", [2, 1, 3], set(range(6)), True, True, 11, out)
    # the meta model: one block per module
    case("meta", [1, 1, 1], set(range(3)), True, True, 12, out)
    # a hybrid: meta modules 0 and 2 around target module 1 (2 blocks); only module 1 trains
    case("hybrid", [1, 2, 1], {1, 2}, False, False, 13, out)
