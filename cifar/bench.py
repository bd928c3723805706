"""Training and sampling throughput of the lab's nets, eager vs compiled, fp32 vs bf16.

    python -m cifar.bench            # default nets at GPU batch sizes (on a CPU: tiny-ish, still slow)
    python -m cifar.bench --quick    # small nets and batches, a few steps: a smoke run on any machine
    python -m cifar.bench --markdown --budget-s 110   # as the GPU runbook calls it

Prints one table row per (net, precision, compiled): images/s (U-Net) or tokens/s (transformer)
for a training step (forward, backward, AdamW, EMA update; what :func:`cifar.trainer.train` does)
and for one sampling step (a forward pass under ``torch.no_grad``, the unit of a sampler's NFE).
Compiled runs are skipped on the CPU unless ``--compile`` is given (inductor takes minutes there);
a compile that fails is reported as such and the benchmark goes on. The rows run in the order
eager fp32, eager bf16, compiled bf16, compiled fp32 (each for every net), so that ``--budget-s``
(the seconds the whole benchmark may take; rows that would start later are listed as skipped) drops
the least telling rows first: compiling costs tens of seconds per configuration.

Reference points (plain PyTorch, one H100): a 5.8M-parameter U-Net at batch 256, bf16, eager, about
5,800 images/s to train; a 15M-parameter 8-layer d=384 transformer on 1024-token sequences,
compiled, about 1.9M tokens/s.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from .trainer import _update_ema
from .transformer import make_transformer
from .unet import count_parameters, make_unet


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, steps: int, warmup: int, device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def bench_net(kind: str, preset: str, batch: int, bf16: bool, compiled: bool, device, steps: int, warmup: int):
    """(parameters, train items/s, sample items/s) for one configuration; items are images or tokens."""
    torch.manual_seed(0)
    if kind == "unet":
        net = make_unet(preset).to(device)
        x = torch.randn(batch, 3, 32, 32, device=device)
        if device.type == "cuda":
            net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        t = torch.rand(batch, device=device)
        items = batch

        def loss_of(model):
            return F.mse_loss(model(x, t).float(), x)

        def sample(model):
            return model(x, t)
    else:
        length = 1024 if preset == "default" else 256
        net = make_transformer(preset, vocab_size=256, length=length).to(device)
        tokens = torch.randint(0, 257, (batch, length), device=device)
        target = torch.randint(0, 256, (batch, length), device=device)
        items = batch * length

        def loss_of(model):
            return F.cross_entropy(model(tokens).float().flatten(0, 1), target.flatten())

        def sample(model):
            return model(tokens)
    params = count_parameters(net)
    ema = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, **({"fused": True} if device.type == "cuda" else {}))
    model = torch.compile(net) if compiled else net
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def train_step():
        with autocast():
            loss = loss_of(model)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch._foreach_lerp_(ema, [p.detach() for p in net.parameters()], 0.001)

    @torch.no_grad()
    def sample_step():
        with autocast():
            sample(model)

    train_s = _timed(train_step, steps, warmup, device)
    sample_s = _timed(sample_step, steps, warmup, device)
    return params, items / train_s, items / sample_s


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small nets and batches, few steps")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--compile", action="store_true", help="also run torch.compile on a CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    parser.add_argument("--markdown", action="store_true", help="print the table as GitHub markdown")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds the whole benchmark may take; later rows are listed as skipped")
    args = parser.parse_args(argv)
    if args.budget_s is not None and not args.budget_s > 0:
        parser.error(f"--budget-s must be a positive number of seconds, got {args.budget_s}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be a positive int, got {args.steps}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if args.quick:
        configs = [("unet", "tiny", 16), ("transformer", "tiny", 8)]
        steps, warmup = args.steps or 3, 1
    elif cuda:
        configs = [("unet", "default", 256), ("transformer", "default", 32)]
        steps, warmup = args.steps or 20, 5
    else:
        configs = [("unet", "small", 64), ("transformer", "small", 16)]
        steps, warmup = args.steps or 5, 2
    precisions = [False, True] if cuda or not args.quick else [False]
    compiles = [False, True] if cuda or args.compile else [False]
    rows = [(False, bf16) for bf16 in precisions]                     # (compiled, bf16), in running order
    if True in compiles:
        rows += [(True, bf16) for bf16 in reversed(precisions)]
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name} | torch {torch.__version__} | {steps} timed steps after {warmup} warm-up")
    cells = ["net", "params", "batch", "precision", "mode", "train /s", "sample /s", "unit"]
    print(_row(cells, args.markdown, header=True))
    start = time.perf_counter()
    for compiled, bf16 in rows:          # every net's eager rows before any compiled one
        for kind, preset, batch in configs:
            unit = "images" if kind == "unet" else "tokens"
            head = [f"{kind} {preset}", "", f"{batch}", "bf16" if bf16 else "fp32", "compiled" if compiled else "eager"]
            if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                print(_row(head + ["skipped (budget)", "", unit], args.markdown), flush=True)
                continue
            try:
                params, train_rate, sample_rate = bench_net(kind, preset, batch, bf16, compiled, device, steps, warmup)
                head[1] = f"{params / 1e6:.1f}M"
                cells = head + [f"{train_rate:,.0f}", f"{sample_rate:,.0f}", unit]
            except Exception as error:  # a compiler crash is a result to report, not a reason to stop
                message = str(error).splitlines()[0][:60] if str(error) else ""
                cells = head + [f"failed: {type(error).__name__}: {message}", "", unit]
            print(_row(cells, args.markdown), flush=True)
    if cuda:
        print("reference points (plain PyTorch, one H100): a 5.8M U-Net at batch 256, bf16, eager, about 5,800 "
              "images/s to train; a 15M transformer on 1024-token sequences, compiled, about 1.9M tokens/s")


WIDTHS = (22, 8, 7, 10, 10, 14, 14, 7)


def _row(cells, markdown: bool, header: bool = False) -> str:
    """One table row: GitHub markdown (pipes), or fixed-width text; a header gets its rule below."""
    if markdown:
        line = "| " + " | ".join(cells) + " |"
        return line + ("\n|" + "---|" * len(cells) if header else "")
    line = "".join(f"{c:<{w}}" if i in (0, 3, 4) else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, WIDTHS)))
    return line + ("\n" + "-" * len(line) if header else "")


if __name__ == "__main__":
    main()
