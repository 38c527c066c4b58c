"""PyTorch side of `incubator bench --pytorch PYTHON`: the same ViT (timm-style, the engine's
shapes and recipe: AdamW, soft-target cross-entropy, drop-path 0.1) trained for a few steps on
random data with the same batch and threads; prints one JSON line with samples/s and peak RSS.
With `--device cuda` (what a CUDA build of the engine asks for) it trains on the GPU.
With `--matmul` it reports instead what PyTorch runs on this machine: its CPU capability (the
level of its vectorised kernels) and its f32 matmul rate at 512x512x512, best of 30.
"""
import argparse, json, os, resource, time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {"mnist-small": (64, 8, 4), "vit-tiny": (192, 12, 3), "vit-small": (384, 12, 6), "vit-base": (768, 12, 12)}


class Block(nn.Module):
    def __init__(self, d, heads, drop_path):
        super().__init__()
        self.heads, self.drop_path = heads, drop_path
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def dp(self, x):
        if not self.training or self.drop_path == 0:
            return x
        keep = 1 - self.drop_path
        mask = x.new_empty(x.shape[0], 1, 1).bernoulli_(keep) / keep
        return x * mask

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(-1)
        x = x + self.dp(self.proj((a @ v).transpose(1, 2).reshape(b, n, c)))
        return x + self.dp(self.fc2(F.gelu(self.fc1(self.norm2(x)))))


class ViT(nn.Module):
    def __init__(self, d, depth, heads, patch_dim, patches, classes=10, drop_path=0.1):
        super().__init__()
        self.embed = nn.Linear(patch_dim, d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, patches + 1, d))
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(*[Block(d, heads, r) for r in rates])
        self.norm, self.head = nn.LayerNorm(d, eps=1e-6), nn.Linear(d, classes)

    def forward(self, patches):
        x = self.embed(patches)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x)[:, 0]))


def matmul(dev):
    n = 512
    x = torch.randn(n, n, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    best = 0.0
    # many tries: the first ones start the thread pool (on a 16-core machine, six tries gave
    # 43 GFLOP/s with 16 threads, a fifth of what 2 threads gave there)
    for _ in range(30):
        sync()
        t = time.perf_counter()
        y = x @ x
        sync()
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
        del y
    print(json.dumps({
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "matmul_gflops": best,
    }))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--matmul", action="store_true")
    for k, v in [("preset", "mnist-small"), ("batch", 128), ("steps", 3), ("image", 28), ("channels", 1), ("patch", 4), ("threads", os.cpu_count()), ("device", "cpu")]:
        p.add_argument(f"--{k}", type=type(v), default=v)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.matmul:
        return matmul(torch.device(a.device))
    d, depth, heads = PRESETS[a.preset]
    patches, patch_dim = (a.image // a.patch) ** 2, a.channels * a.patch * a.patch
    dev = torch.device(a.device)
    model = ViT(d, depth, heads, patch_dim, patches).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x = torch.randn(a.batch, patches, patch_dim, device=dev)
    targets = torch.rand(a.batch, 10, device=dev).softmax(-1)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step():
        loss = torch.sum(-targets * F.log_softmax(model(x), -1), -1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    secs = time.perf_counter() - t
    print(json.dumps({
        "samples_per_sec": a.steps * a.batch / secs,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else 0,
    }))


if __name__ == "__main__":
    main()
