#!/usr/bin/env python3
"""Compare one LeNet-5 training step (batch 64, one thread) between slimnet and PyTorch.

Requires: pip install torch numpy
Run from the repository root:  python3 benches/peers/train_step.py
Prints: peer lenet5_train_step_b64 slimnet_ms=<f> torch_ms=<f> ratio=<torch_ms/slimnet_ms>
"""
import os
import subprocess
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)


def slimnet_ms() -> float:
    out = subprocess.run(
        ["cargo", "run", "--release", "--quiet", "--example", "peer_train_step", "--", "1"],
        check=True, capture_output=True, text=True,
    ).stdout
    line = [l for l in out.splitlines() if l.startswith("slimnet_ms=")][-1]
    return float(line.split("=")[1])


def torch_ms() -> float:
    nn = torch.nn
    # The same LeNet-5 as slimnet's models::lenet5: conv-pool-relu twice, fc 500, relu, fc 10.
    model = nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    y = torch.arange(64) % 10
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    times = []
    for _ in range(50):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


if __name__ == "__main__":
    s = slimnet_ms()
    t = torch_ms()
    print(f"peer lenet5_train_step_b64 slimnet_ms={s:.3f} torch_ms={t:.3f} ratio={t / s:.3f}")
