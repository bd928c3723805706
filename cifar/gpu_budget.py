"""How long each CIFAR notebook's full mode should take on one H100 and on Colab's free T4.

    python -m cifar.gpu_budget        # the table: work per notebook, estimated H100 and T4 seconds

The sizing behind the GPU recipes, before any GPU has run them (the GPU runbook,
``scripts/gpu_run.py``, measures the real times and prints them beside these). A notebook's GPU
work is a list of network passes of known batch size; each pass costs

    max(FLOPs / R, ops x c)          the compute-bound time, or the dispatch-bound time

* FLOPs and ops (aten calls, about one GPU kernel each) are *counted* here, on the CPU, on the very
  networks the notebooks build (``torch.utils.flop_counter`` and a dispatch counter);
* R = 42 TFLOP/s, what an H100 reaches in bf16 eager on a small U-Net. Assumed from the reference
  point in ``cifar/bench.py`` (a 5.8M-parameter U-Net trains at about 5,800 images/s at batch 256)
  with this course's FLOPs per parameter (0.42 GFLOP per image per million parameters, forward; a
  training step is 3 forwards);
* c = 8 microseconds per op: eager PyTorch's dispatch plus a kernel launch on the GPU machine's host
  (assumed; small U-Nets at batch 128 sit on this side of the max on an H100).

The T4 (Colab's free GPU, compute capability 7.5, fp16 with a gradient scaler) is estimated as
12x the compute-bound time plus 1.5x the dispatch-bound time. 12 lies between the H100/T4 ratios of
memory bandwidth (3.35 / 0.32 TB/s = 10.5) and of dense half-precision matrix rate (989 / 65
TFLOP/s = 15); 1.5 for Colab's slower 2-vCPU host. Measured CPU throughput says nothing about either
GPU (our CPU runs are bound by one core's arithmetic), so it is not used. The work on the CPU
(counting shapes, sliced W2, plotting) is left out: a few seconds per notebook.
"""
from __future__ import annotations

import dataclasses

import torch

R_H100_FLOPS = 42e12        # bf16 eager, small U-Nets (see the module docstring)
SECONDS_PER_OP = 8e-6       # eager dispatch + launch per aten op on the GPU machine (assumed)
T4_COMPUTE, T4_DISPATCH = 12.0, 1.5
NOTEBOOK_START_S = 15.0     # a fresh kernel: imports, CUDA start-up, data generation (assumed)


@dataclasses.dataclass
class Pass:
    """``calls`` passes of one network at one batch size: a training step, or a forward without grad."""
    what: str
    flops: float      # per call
    ops: int          # aten calls per call
    calls: int

    def seconds(self) -> tuple[float, float]:
        """(compute-bound, dispatch-bound) seconds on an H100 for all calls."""
        return self.calls * self.flops / R_H100_FLOPS, self.calls * self.ops * SECONDS_PER_OP


class _CountOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def unet_pass(preset: str, channels: int, batch: int, calls: int, train: bool, cost_factor: float = 1.0) -> Pass:
    """A U-Net pass counted at batch 2 and scaled to ``batch`` (FLOPs grow with the batch, ops do not).
    ``cost_factor`` scales both, for a step that costs several plain ones (the Fokker-Planck penalty)."""
    from torch.utils.flop_counter import FlopCounterMode

    from .unet import make_unet

    torch.manual_seed(0)
    net = make_unet(preset, in_channels=channels)
    x, t = torch.randn(2, channels, 32, 32), torch.rand(2)
    opt = torch.optim.AdamW(net.parameters(), foreach=True)
    with FlopCounterMode(display=False) as flops, _CountOps() as count:
        if train:
            (net(x, t) - x).pow(2).mean().backward()
            opt.step()
        else:
            with torch.no_grad():
                net(x, t)
    what = f"U-Net {preset} {'train' if train else 'forward'}, batch {batch}" + (
        f", x{cost_factor:g}" if cost_factor != 1 else "")
    return Pass(what, cost_factor * flops.get_total_flops() / 2 * batch, int(cost_factor * count.ops), calls)


def mixture_pass(batch: int, n_images: int, dim: int, calls: int, chunk: int = 256) -> Pass:
    """The exact denoiser of ``n_images`` training images (cifar.empirical_mixture): distances and the
    weighted sum, 2 x 2 x batch x n x dim FLOPs (float32); about 15 ops per chunk of training images."""
    return Pass(f"exact denoiser, {n_images} images, batch {batch}", 4.0 * batch * n_images * dim,
                15 * -(-n_images // chunk), calls)


def lesson_passes(lesson: str) -> list[Pass]:
    """The GPU work of one notebook's full mode on CUDA (the sizes its "gpu-full" branch uses)."""
    from .recipes import get_recipe

    if lesson in ("01-hallucination", "02-fpe-gap"):
        recipe = get_recipe("01-hallucination", "full", variant="grey", device="cuda")
        model, train = recipe["model"], recipe["train"]
        training = unet_pass(model["preset"], 1, train["batch_size"], train["steps"], train=True)
    if lesson == "01-hallucination":  # 2,048 learned samples, 512 exact ones, 100 steps, batches of 512
        return [training, unet_pass(model["preset"], 1, 512, 4 * 100, train=False),
                mixture_pass(512, recipe["data"]["n"], 1024, 100)]
    if lesson == "02-fpe-gap":  # lesson 01's run from the cache; 512 samples, ~112 steps, ODE and SDE
        from minimal.fpe_gap import VP, time_grid

        steps = len(time_grid(VP(), nfe=100, refine_last=3, refine_factor=5)) - 1
        return [unet_pass(model["preset"], 1, 512, 4 * 2 * steps, train=False),          # 4 learned scores
                mixture_pass(512, recipe["data"]["n"], 1024, 2 * steps),                  # the exact score
                unet_pass(model["preset"], 1, 64, 150, train=True),                      # DSM fine-tune
                unet_pass(model["preset"], 1, 64, 2 * 150, train=True, cost_factor=9.0),  # DSM + FP, 2 weights
                unet_pass(model["preset"], 1, 16, 4 * 16, train=True, cost_factor=9.0)]   # residuals, 4 nets
    if lesson == "03-momentum":  # the exact class-conditional denoiser; guided calls count twice
        grid_calls = 7 * sum((6, 8, 10, 15, 20)) * 4          # 7 samplers x the step grid x 4 guidance scales
        return [mixture_pass(24, 3000, 3072, 2 * (grid_calls + 4 * 200))]
    raise ValueError(f"lesson must be one of 01-hallucination, 02-fpe-gap, 03-momentum, got {lesson!r}")


def estimate(lesson: str) -> dict:
    """Estimated seconds of one notebook's full mode: on an H100 and on a T4 (see the module docstring)."""
    passes = lesson_passes(lesson)
    compute = sum(p.seconds()[0] for p in passes)
    dispatch = sum(p.seconds()[1] for p in passes)
    h100 = NOTEBOOK_START_S + sum(max(p.seconds()) for p in passes)
    t4 = NOTEBOOK_START_S + sum(max(T4_COMPUTE * p.seconds()[0], T4_DISPATCH * p.seconds()[1]) for p in passes)
    return {"lesson": lesson, "passes": passes, "compute_s": compute, "dispatch_s": dispatch, "h100_s": h100, "t4_s": t4}


def main() -> None:
    print("| notebook | network passes | TFLOP | compute-bound s | dispatch-bound s | H100 s | T4 s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for lesson in ("01-hallucination", "02-fpe-gap", "03-momentum"):
        e = estimate(lesson)
        work = "; ".join(f"{p.what} x {p.calls:,}" for p in e["passes"])
        tflop = sum(p.flops * p.calls for p in e["passes"]) / 1e12
        print(f"| {lesson} | {work} | {tflop:.0f} | {e['compute_s']:.0f} | {e['dispatch_s']:.0f} | "
              f"{e['h100_s']:.0f} | {e['t4_s']:.0f} |")


if __name__ == "__main__":
    main()
