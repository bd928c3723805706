"""How long each CIFAR notebook's full mode should take on one H100 and on Colab's free T4.

    python scripts/gpu_budget.py     # the table: work per notebook, estimated H100 and T4 seconds

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
GPU (our CPU runs are bound by one core's arithmetic), so it is not used. Work that stays on the
CPU is counted as measured on this course's CPU where it is more than a few seconds (:data:`CPU_S`),
and the same on Colab's 2 vCPUs; elsewhere (counting shapes, sliced W2, plotting) it is left out.
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/gpu_budget.py` from a plain checkout (nothing installed)
    sys.path.insert(0, str(ROOT))

R_H100_FLOPS = 42e12        # bf16 eager, small U-Nets (see the module docstring)
SECONDS_PER_OP = 8e-6       # eager dispatch + launch per aten op on the GPU machine (assumed)
T4_COMPUTE, T4_DISPATCH = 12.0, 1.5
NOTEBOOK_START_S = 15.0     # a fresh kernel: imports, CUDA start-up, data generation (assumed)
LESSONS = ("01-hallucination", "02-fpe-gap", "03-momentum", "04-masked-fhs")
# CPU-side seconds, measured in the notebook's CPU full run: lesson 04 builds its tables (1.7 s),
# fits 13 temperatures (0.3 s each) and evaluates closed forms (3.8 s) on the CPU.
CPU_S = {"04-masked-fhs": 10.0}


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

    from cifar.unet import make_unet

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


def sampler_ops(run, calls_of) -> float:
    """Ops per step of a sampler: ``run()`` once under the dispatch counter, divided by its steps."""
    with _CountOps() as count:
        steps = calls_of(run())
    return count.ops / steps


def masked_passes() -> list[Pass]:
    """Lesson 04: FHS and MDLM on the exact Markov chain and on its independent-pixel twin, then the
    speed section (kernels.fhs). At V = 256 every step is a few small tensor ops, so the time is the
    op count: counted here on one short run of each sampler at V = 16, L = 64 (ops per step do not
    depend on the sizes), times the steps of the full mode."""
    import minimal.masked_fhs as mf
    from kernels import fhs as kfhs

    from cifar.token_oracle import MarkovTokenOracle

    V, L, B = 16, 64, 2
    oracle = MarkovTokenOracle(MarkovTokenOracle.ar1(V, length=2).transition, length=L)
    pi = oracle.stationary()
    twin = lambda x: pi.expand(x.shape[0], x.shape[1], V)          # noqa: E731 (the notebook's twin model)
    g = lambda: torch.Generator().manual_seed(0)                     # noqa: E731
    per_step = {}
    for name, probs in (("twin", twin), ("chain", oracle.probs_fn)):
        trace = []
        per_step[name, "mdlm"] = sampler_ops(lambda: mf.mdlm_sample(probs, (B, L), V, 50, generator=g(),
                                                                     trajectory=trace), lambda _: 50)
        per_step[name, "fhs"] = sampler_ops(lambda: mf.fhs_sample(probs, (B, L), V, generator=g()), lambda _: L)
    logits = lambda x: oracle.probs_fn(x).log()                      # noqa: E731
    start = torch.full((1, L), V)
    per_step["speed", "mdlm"] = sampler_ops(lambda: kfhs.mdlm_sample(logits, start, V, 50, output="logits", seed=0, backend="torch"),
                                            lambda _: 50)
    per_step["speed", "fhs"] = sampler_ops(lambda: kfhs.fhs_sample(logits, start, V, output="logits", seed=0, backend="torch"),
                                           lambda _: L)
    L_full = 1024  # the notebook's sizes: twin N = 100, 1000, 10000 in float32 and the last two in float64;
    steps = {("twin", "mdlm"): 100 + 2 * (1000 + 10000), ("twin", "fhs"): L_full,          # chain N = 100,
             ("chain", "mdlm"): 2 * (100 + 1000), ("chain", "fhs"): L_full,               # 1000 in both;
             ("speed", "mdlm"): 100 + 300 + 1000 + 2 * 3000, ("speed", "fhs"): 2 * L_full}  # an untimed pass
    return [Pass(f"{name} {sampler.upper()}, {per_step[name, sampler]:.0f} ops per step", 0.0,
                 round(per_step[name, sampler]), n) for (name, sampler), n in steps.items()]


def lesson_passes(lesson: str) -> list[Pass]:
    """The GPU work of one notebook's full mode on CUDA (the sizes its "gpu-full" branch uses)."""
    from cifar.recipes import get_recipe

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
    if lesson == "04-masked-fhs":
        return masked_passes()
    raise ValueError(f"lesson must be one of {LESSONS}, got {lesson!r}")


def estimate(lesson: str) -> dict:
    """Estimated seconds of one notebook's full mode: on an H100 and on a T4 (see the module docstring)."""
    passes = lesson_passes(lesson)
    compute = sum(p.seconds()[0] for p in passes)
    dispatch = sum(p.seconds()[1] for p in passes)
    fixed = NOTEBOOK_START_S + CPU_S.get(lesson, 0.0)
    h100 = fixed + sum(max(p.seconds()) for p in passes)
    t4 = fixed + sum(max(T4_COMPUTE * p.seconds()[0], T4_DISPATCH * p.seconds()[1]) for p in passes)
    return {"lesson": lesson, "passes": passes, "compute_s": compute, "dispatch_s": dispatch, "h100_s": h100, "t4_s": t4}


def main() -> None:
    print("| notebook | network passes | TFLOP | compute-bound s | dispatch-bound s | H100 s | T4 s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for lesson in LESSONS:
        e = estimate(lesson)
        work = "; ".join(f"{p.what} x {p.calls:,}" for p in e["passes"])
        tflop = sum(p.flops * p.calls for p in e["passes"]) / 1e12
        print(f"| {lesson} | {work} | {tflop:.0f} | {e['compute_s']:.0f} | {e['dispatch_s']:.0f} | "
              f"{e['h100_s']:.0f} | {e['t4_s']:.0f} |")


if __name__ == "__main__":
    main()
