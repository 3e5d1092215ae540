#!/usr/bin/env python3
"""The `small` preset's training in PyTorch eager mode on the CPU, for the speed comparison in
docs/performance.md: tokens/s at a given thread count.

    python3 benches/pytorch_small.py THREADS [STEPS] [f32|f64]

The same model as `microgpt train --model small` (V 27, T 16, E 64, 4 heads, MLP 256, 4 layers,
no biases, rmsnorm without gain after the embeddings and before each branch, ReLU, no final
norm), the same recipe's work per step (batches of 32 names, dropout 0.1 on both branch
outputs, the token-mean loss, AdamW lr 3e-3, betas 0.9/0.99, eps 1e-8, weight decay 0.1, an
EMA of the weights at 0.9998), names.txt shuffled. A batch is padded to its longest name and
the padded positions are masked out of the loss; tokens/s counts the real positions only, as
microgpt's `training time` line does. Steps after 20 untimed ones.
"""
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

threads = int(sys.argv[1])
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
dtype = torch.float64 if len(sys.argv) > 3 and sys.argv[3] == "f64" else torch.float32
torch.set_num_threads(threads)
torch.manual_seed(42)

here = os.path.dirname(os.path.abspath(__file__))
names = open(os.path.join(here, "..", "data", "names.txt")).read().split()
random.seed(42)
random.shuffle(names)
chars = sorted(set("".join(names)))
BOS = len(chars)
V, T, E, H, FF, L, B = BOS + 1, 16, 64, 4, 256, 4, 32
D = E // H
stoi = {c: i for i, c in enumerate(chars)}
docs = [[BOS] + [stoi[c] for c in n] + [BOS] for n in names]


def param(*shape):
    return (torch.randn(*shape, dtype=dtype) * 0.08).requires_grad_()


wte, wpe, lm_head = param(V, E), param(T, E), param(V, E)
blocks = [[param(E, E) for _ in range(4)] + [param(FF, E), param(E, FF)] for _ in range(L)]
params = [wte, wpe, lm_head] + [p for b in blocks for p in b]
opt = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
ema = [p.detach().clone() for p in params]
causal = torch.full((T, T), float("-inf"), dtype=dtype).triu(1)


def rmsnorm(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)


def loss_of(batch):
    n = max(len(d) for d in batch) - 1
    n = min(n, T)
    pad = [d[: n + 1] + [BOS] * (n + 1 - len(d[: n + 1])) for d in batch]
    idx = torch.tensor(pad)
    inp, tgt = idx[:, :n], idx[:, 1 : n + 1]
    real = torch.tensor([[p < min(len(d) - 1, T) for p in range(n)] for d in batch])
    x = rmsnorm(wte[inp] + wpe[:n])
    for wq, wk, wv, wo, fc1, fc2 in blocks:
        h = rmsnorm(x)
        q = (h @ wq.T).view(len(batch), n, H, D).transpose(1, 2)
        k = (h @ wk.T).view(len(batch), n, H, D).transpose(1, 2)
        v = (h @ wv.T).view(len(batch), n, H, D).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D) + causal[:n, :n]
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(len(batch), n, E)
        x = x + F.dropout(y @ wo.T, 0.1)
        h = rmsnorm(x)
        x = x + F.dropout(torch.relu(h @ fc1.T) @ fc2.T, 0.1)
    logits = x @ lm_head.T
    ce = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), reduction="none")
    mask = real.reshape(-1).to(dtype)
    return (ce * mask).sum() / mask.sum(), int(real.sum())


def step(k):
    batch = [docs[(k * B + i) % len(docs)] for i in range(B)]
    loss, tokens = loss_of(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - 0.9998)
    return tokens, loss


first = step(0)[1].item()
for k in range(1, 20):
    step(k)
start = time.perf_counter()
tokens, last = 0, None
for k in range(steps):
    n, last = step(20 + k)
    tokens += n
elapsed = time.perf_counter() - start
name = "f64" if dtype == torch.float64 else "f32"
print(
    f"pytorch {torch.__version__} {name}, {threads} thread(s): {steps} steps, "
    f"{tokens / elapsed:.0f} tokens/s (loss {first:.3f} at the first step, {last.item():.3f} at the last)"
)
