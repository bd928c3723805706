"""Benchmark: exact categorical sampling against the memory floor, then FHS against MDLM end to end.

    python -m kernels.bench                       # full sizes (meant for a GPU)
    python -m kernels.bench --small               # CPU-sized: N / 32 rows, a short end-to-end run
    python -m kernels.bench --count-instructions  # compile for an H100 and count (no GPU needed)

Prints (nothing is asserted; the tests check correctness):

1. For bf16 logits [8192 x 50257], [1024 x 50257] and [49152 x 256]: the read-only floor (one pass
   over the logits: a row max), the float64 and float32 exponential races of the reference code
   (softmax, a uniform per element, ``argmax p / E``), ``torch.multinomial``, and
   ``kernels.categorical.sample`` (the Triton kernel on CUDA; on CPU its float64 reference path),
   in milliseconds and as multiples of the floor.
   On CUDA also two variants of the kernel: the accurate (library) log2, and 7 Philox rounds.
2. FHS against MDLM at L = 1024, V = 50257 with a fixed stand-in network (an embedding and a linear
   head): wall time and network calls.
3. With ``--count-instructions``: machine instructions per element in the kernel's main loop, for
   the variant ``sample()`` runs and the two others.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

import minimal.masked_fhs as ref
from kernels.categorical import sample, triton_available
from kernels.fhs import fhs_sample, mdlm_sample

EPS = 1e-10


def _timer(device):
    """Wall time on a GPU; on a CPU the process's own CPU time, which other jobs on a shared machine
    disturb far less than wall time (the CPU runs use one thread)."""
    if device.type == "cuda":
        def now():
            torch.cuda.synchronize()
            return time.perf_counter()
    else:
        now = time.process_time
    return now


def time_ms(fn, device, repeats):
    """Best wall time of ``fn()`` over ``repeats`` runs in ms, after one warm-up call (the minimum is
    the least disturbed by other work on a shared machine)."""
    now = _timer(device)
    fn()
    runs = []
    for _ in range(repeats):
        start = now()
        fn()
        runs.append((now() - start) * 1e3)
    return min(runs)


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
        if device.type == "cuda" and triton_available():  # variants, for the roofline
            from kernels import categorical

            for label, kw in [("accurate log2", {"fast_log2": False}), ("Philox-4x32-7", {"n_rounds": 7})]:
                ms = time_ms(lambda kw=kw: categorical._launch(x, None, None, is_probs=False, scale=math.log2(math.e),
                                                               seed=0, **kw), device, repeats)
                print(f"{'':>16} {'':>7} | kernel variant, {label}: {ms:.3f} ms ({ms / floor:.1f}x)")


def _device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU time, {torch.get_num_threads()} thread(s)"


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
    head = f"{'sampler':<38} {'NFE':>6} {'ms':>10} {'ms / NFE':>9}"
    print(head)
    print("-" * len(head))
    path = "kernel" if device.type == "cuda" and triton_available() else "float64 ref."
    runs = [(f"FHS, kernels.fhs ({path})", lambda: fhs_sample(net.logits, start, vocab, output="logits", seed=0))]
    for n in steps:
        runs.append((f"MDLM N={n}, kernels.fhs ({path})",
                     lambda n=n: mdlm_sample(net.logits, start, vocab, n, output="logits", seed=0)))
        runs.append((f"MDLM N={n}, minimal (float64)",
                     lambda n=n: ref.mdlm_sample(net.probs, (batch, length), vocab, n, dtype=torch.float64,
                                                 generator=torch.Generator(device=device).manual_seed(0),
                                                 device=device)))
    for name, fn in runs:
        net.calls = 0
        ms = time_ms(fn, device, repeats)
        nfe = net.calls // (repeats + 1)
        print(f"{name:<38} {nfe:>6} {ms:>10.1f} {ms / max(nfe, 1):>9.2f}")


def _main_loop_counts(sass):
    """(loop, branch) instruction counts of the main loop in nvdisasm output: the loop is the longest
    backward branch; the branch, the longest region inside it skipped by a forward conditional branch
    (the refinement, taken by few tiles)."""
    import re

    lines = sass.splitlines()
    is_instr = [bool(re.search(r"/\*[0-9a-f]{4,}\*/", line)) for line in lines]
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"^(\.L_x_\d+):", line))}
    start, end = 0, -1
    for i, line in enumerate(lines):
        m = re.search(r"BRA `\((\.L_x_\d+)\)", line)
        if m and labels.get(m.group(1), i) < i and i - labels[m.group(1)] > end - start:
            start, end = labels[m.group(1)], i
    branch = 0
    for i in range(start, end):
        m = re.search(r"@!?U?P\d BRA `\((\.L_x_\d+)\)", lines[i])
        if m and start < labels[m.group(1)] <= end:
            branch = max(branch, sum(is_instr[i + 1:labels[m.group(1)]]))
    return sum(is_instr[start:end + 1]), branch


def instruction_counts(vocab=50257):
    """Compile the kernel for an H100 (sm_90, no GPU needed) and count the machine instructions of its
    main loop per element, for bf16 logits: the compute side of the roofline. The refinement branch
    (32 more random bits, for a tile holding an element within 2^-16 of 0 or 1) is counted apart and
    weighted by the chance that a tile takes it."""
    import os
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels import categorical

    if categorical.interpreter_active():
        print("\n(instruction counts need the compiled kernel: unset TRITON_INTERPRET)")
        return
    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    rows, block, warps = categorical._tile(vocab, 8192, torch.device("cuda"))
    per_thread = rows * block // (32 * warps)  # elements each thread handles per loop iteration
    p_tile = 1 - (1 - categorical.FINE_CELLS * 2.0 ** -31) ** (rows * block)  # P(some k < 2^16)
    sig = {"x_ptr": "*bf16", "row_index_ptr": "*i64", "extra_ptr": "*fp32", "bits_ptr": "*i32",
           "out_ptr": "*i64", "n_rows": "i32", "V": "i32", "stride_x": "i32", "stride_bits": "i32",
           "key0": "i32", "key1": "i32", "scale": "fp32", "IS_PROBS": "constexpr", "HAS_ROW_INDEX": "constexpr",
           "HAS_EXTRA": "constexpr", "BITS_FROM_MEMORY": "constexpr", "ROWS": "constexpr", "BLOCK": "constexpr",
           "N_ROUNDS": "constexpr", "FAST_LOG2": "constexpr", "KEY_F64": "constexpr"}
    print(f"\n3. Machine instructions per element in the main loop (bf16 logits, V = {vocab}, sm_90, "
          f"{warps} warps, {per_thread} elements per thread per iteration; the refinement branch is taken by "
          f"{100 * p_tile:.1f}% of tiles)")
    print(f"  {'variant':<58} {'expected':>8} {'common':>7} {'branch':>7}")
    for name, rounds, fast in [("as used by sample(): Philox-4x32-10, hardware log2", 10, True),
                               ("Philox-4x32-10, accurate log2 (libdevice)", 10, False),
                               ("Philox-4x32-7, hardware log2", 7, True)]:
        consts = {"IS_PROBS": False, "HAS_ROW_INDEX": False, "HAS_EXTRA": False, "BITS_FROM_MEMORY": False,
                  "ROWS": rows, "BLOCK": block, "N_ROUNDS": rounds, "FAST_LOG2": fast, "KEY_F64": False}
        src = ASTSource(fn=categorical._race_kernel, signature=sig, constexprs=consts)
        kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(kernel.asm["cubin"])
            f.flush()
            sass = subprocess.run([nvdisasm, "-c", f.name], capture_output=True, text=True, check=True).stdout
        loop, branch = _main_loop_counts(sass)
        common = (loop - branch) / per_thread
        print(f"  {name:<58} {common + p_tile * branch / per_thread:8.1f} {common:7.1f} {branch / per_thread:7.1f}")
    print("  (expected = common path + branch x its chance; all per element)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized: N/32 rows, L=64, V=2048")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--count-instructions", action="store_true",
                        help="only compile the kernel for an H100 and count its instructions (no GPU needed)")
    args = parser.parse_args(argv)
    if args.count_instructions:
        instruction_counts()
        return
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # CPU time of one thread: comparable between runs on a shared machine
    shapes = [(8192, 50257), (1024, 50257), (49152, 256)]
    if args.small:
        shapes = [(n // 32, v) for n, v in shapes]
    repeats = args.repeats or (3 if args.small else 10)
    print(f"torch {torch.__version__}, triton {'yes' if triton_available() else 'no'}")
    sampling_table(device, shapes, repeats)
    if not args.skip_end_to_end:
        if args.small:
            end_to_end_table(device, length=64, vocab=2048, batch=1, steps=(64, 256), width=32, repeats=1)
        else:
            end_to_end_table(device, length=1024, vocab=50257, batch=1, steps=(1024, 10_000), width=64,
                             repeats=1)


if __name__ == "__main__":
    main()
