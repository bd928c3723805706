"""Benchmark: exact categorical sampling against the memory floor, then FHS against MDLM end to end.

    python -m kernels.bench            # the issue's sizes (meant for a GPU)
    python -m kernels.bench --small    # CPU-sized: N / 32 rows, a short end-to-end run

Prints two tables (nothing is asserted; the tests check correctness):

1. For bf16 logits [8192 x 50257], [1024 x 50257] and [49152 x 256]: the read-only floor (one pass
   over the logits: a row max), the float64 and float32 exponential races of the reference code
   (softmax, a uniform per element, ``argmax p / E``), ``torch.multinomial``, and
   ``kernels.categorical.sample`` (the Triton kernel on CUDA; on CPU its float64 reference path),
   in milliseconds and as multiples of the floor.
2. FHS against MDLM at L = 1024, V = 50257 with a fixed stand-in network (an embedding and a linear
   head): wall time and network calls.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import minimal.masked_fhs as ref
from kernels.categorical import sample, triton_available
from kernels.fhs import fhs_sample, mdlm_sample

EPS = 1e-10


def _timer(device):
    if device.type == "cuda":
        def now():
            torch.cuda.synchronize()
            return time.perf_counter()
    else:
        now = time.perf_counter
    return now


def time_ms(fn, device, repeats):
    """Median wall time of ``fn()`` in ms, after one warm-up call."""
    now = _timer(device)
    fn()
    runs = []
    for _ in range(repeats):
        start = now()
        fn()
        runs.append((now() - start) * 1e3)
    return statistics.median(runs)


def race(logits, dtype, generator):
    """The reference code's sampler (eq. 4 of minimal/masked_fhs.py) on logits, in ``dtype``."""
    p = torch.softmax(logits.to(dtype), dim=-1)
    u = torch.rand(p.shape, dtype=dtype, device=p.device, generator=generator)
    return (p / (EPS - torch.log(u + EPS))).argmax(dim=-1)


def sampling_table(device, shapes, repeats):
    g = torch.Generator(device=device).manual_seed(0)
    kernel_name = "kernel (Triton)" if device.type == "cuda" and triton_available() else "sample() (float64 ref.)"
    print(f"\n1. One exact draw per row from bf16 logits, {device} ({_device_name(device)})")
    head = f"{'shape':>16} {'MB':>7} | {'floor':>8} | {'float64 race':>14} | {'float32 race':>14} | " \
           f"{'multinomial':>14} | {kernel_name:>22}"
    print(head)
    print("-" * len(head))
    for n, v in shapes:
        x = torch.randn(n, v, device=device, generator=g).to(torch.bfloat16)
        mb = x.numel() * x.element_size() / 1e6
        floor = time_ms(lambda: x.amax(dim=-1), device, repeats)
        cells = []
        for fn in (lambda: race(x, torch.float64, g), lambda: race(x, torch.float32, g),
                   lambda: torch.multinomial(torch.softmax(x.float(), dim=-1), 1, generator=g),
                   lambda: sample(logits=x, generator=g)):
            ms = time_ms(fn, device, repeats)
            cells.append(f"{ms:8.2f} ({ms / floor:4.1f}x)")
        print(f"{f'{n} x {v}':>16} {mb:7.1f} | {floor:8.3f} | " + " | ".join(f"{c:>14}" for c in cells[:3])
              + f" | {cells[3]:>22}")
        print(f"{'':>16} {'':>7} | {mb / floor:6.1f} GB/s read")


def _device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{torch.get_num_threads()} CPU threads"


class FixedNetwork:
    """A stand-in denoiser of fixed cost: logits = embed(x) @ head, no time input."""

    def __init__(self, vocab, width, device, dtype):
        g = torch.Generator(device=device).manual_seed(1)
        self.embed = torch.randn(vocab + 1, width, device=device, generator=g, dtype=dtype)
        self.head = torch.randn(width, vocab, device=device, generator=g, dtype=dtype) / width ** 0.5
        self.calls = 0

    def logits(self, x):
        self.calls += 1
        return self.embed[x] @ self.head  # [B, L, V]

    def probs(self, x):
        return torch.softmax(self.logits(x).float(), dim=-1)


def end_to_end_table(device, length, vocab, batch, steps, width, repeats):
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    net = FixedNetwork(vocab, width, device, dtype)
    start = torch.full((batch, length), vocab, dtype=torch.int64, device=device)
    print(f"\n2. End to end, batch {batch}, L = {length}, V = {vocab}, fixed network (width {width}), {device}")
    head = f"{'sampler':<34} {'NFE':>6} {'ms':>10} {'ms / NFE':>9}"
    print(head)
    print("-" * len(head))
    runs = [("FHS, exact kernel/sample()", lambda: fhs_sample(net.logits, start, vocab, output="logits", seed=0))]
    for n in steps:
        runs.append((f"MDLM N={n}, exact kernel/sample()",
                     lambda n=n: mdlm_sample(net.logits, start, vocab, n, output="logits", seed=0)))
        runs.append((f"MDLM N={n}, float64 reference",
                     lambda n=n: ref.mdlm_sample(net.probs, (batch, length), vocab, n, dtype=torch.float64,
                                                 generator=torch.Generator(device=device).manual_seed(0),
                                                 device=device)))
    for name, fn in runs:
        net.calls = 0
        ms = time_ms(fn, device, repeats)
        nfe = net.calls // (repeats + 1)
        print(f"{name:<34} {nfe:>6} {ms:>10.1f} {ms / max(nfe, 1):>9.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized: N/32 rows, L=64, V=2048")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    shapes = [(8192, 50257), (1024, 50257), (49152, 256)]
    if args.small:
        shapes = [(n // 32, v) for n, v in shapes]
    repeats = args.repeats or (3 if args.small else 10)
    print(f"torch {torch.__version__}, triton {'yes' if triton_available() else 'no'}")
    sampling_table(device, shapes, repeats)
    if not args.skip_end_to_end:
        if args.small:
            end_to_end_table(device, length=64, vocab=2048, batch=1, steps=(64, 1024), width=32, repeats=1)
        else:
            end_to_end_table(device, length=1024, vocab=50257, batch=1, steps=(1024, 10_000), width=64,
                             repeats=1)


if __name__ == "__main__":
    main()
