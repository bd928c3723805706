"""Benchmark: exact categorical sampling against the memory floor, then FHS against MDLM end to end.

    python -m kernels.bench                            # every part at full size (meant for a GPU)
    python -m kernels.bench --small                    # every part at CPU size (seconds on one thread)
    python -m kernels.bench --parts study --markdown   # one part, its tables as GitHub markdown
    python -m kernels.bench --count-instructions       # compile for an H100 and count (no GPU needed)
    python -m kernels.bench --compile-for 7.5,7.0      # compile every launched variant (no GPU needed)

The GPU runbook (``scripts/gpu_run.py``) runs each part in its own time-boxed process:
``--parts sampling --markdown`` and ``--parts study --markdown``, with ``--small`` in its CPU rehearsal.
Tables print row by row as they are measured, so a run stopped by its time box keeps what it finished.
Nothing is asserted; the tests check correctness.

Parts (``--parts``, comma-separated; all three by default):

1. ``sampling``: for bf16 logits [8192 x 50257], [1024 x 50257] and [49152 x 256] (``--small``: 32
   times fewer rows; ``--shapes`` picks others): the read-only floor (one pass over the logits: a row
   max), the float64 and float32 exponential races of the reference code (softmax, a uniform per
   element, ``argmax p / E``), ``torch.multinomial``, and ``kernels.categorical.sample`` (the Triton
   kernel on a supported GPU; elsewhere its float64 reference path), in ms and as multiples of the
   floor. Where the kernel runs, also two variants of it: the accurate (library) log2, and 7 Philox
   rounds. Then the two targets with their measured values, PASS or MISS: the kernel within 2x of the
   floor, and at least 25x faster than the float64 race (the worst shape of each).
2. ``end-to-end``: FHS against MDLM (``kernels.fhs``, and minimal's float64 MDLM) at batch 1,
   L = 1024, V = 50257 with a fixed stand-in network (an embedding and a linear head,
   ``FixedNetwork``): wall time and network calls.
3. ``study``: FHS against MDLM, both ``kernels.fhs`` (the kernel with bf16 logits on a GPU, the float64
   reference at float32 logits on CPU), at L = 1024, V = 50257, width 64, over MDLM's number of steps
   N in (128, 1024, 10000) and the batch in (1, 8, 32): per (batch, sampler) the network calls (NFE),
   ms, ms per sequence, and FHS's speed-up over MDLM (MDLM's ms over FHS's, same batch). FHS makes L
   events, one network call each, whatever N; MDLM calls the network only after a step that changed
   some token (its cache), so at most N times and fewer when steps change nothing, but every step
   reads the masked rows' probabilities. ``--small``: L = 64, V = 2048, width 32, N in (64, 256),
   batch in (1, 4); ``--steps`` and ``--batches`` pick others.

   Sizes. A network call writes B x 1024 x 50257 bf16 logits (103 MB per sequence; the matrix
   product, 6.6 GFLOP per sequence, is nothing next to that), which MDLM turns into float32
   probabilities (about 0.7 GB moved per sequence) and whose masked rows each of its steps reads
   (up to 206 MB per sequence). At ~3 TB/s plus ~0.5 ms of launches and synchronisations per event
   or step, one H100 should need about 0.5, 1 and 2 s for FHS at batch 1, 8 and 32, 6 s for MDLM at
   batch 1 and N = 10000, and 13 s at batch 32 and N = 1024: about 30 s in all (estimates, not
   measurements). MDLM at N = 10000 with batch 8 or 32 (10000 steps and thousands of network calls:
   an estimated 25 s and 2 minutes) is dropped: runs with batch x N > 32 L (32768 at L = 1024) are
   listed as skipped. ``--budget-s`` (default 45) caps the rest: an MDLM run that would
   start after that many seconds of the study is listed as skipped.

Two more modes, which need no GPU and print only their own table:

* ``--count-instructions``: machine instructions per element in the kernel's main loop, compiled for
  an H100, for the variant ``sample()`` runs and the two others.
* ``--compile-for 7.5[,7.0,...]``: compile every variant of the kernel that ``sample()`` launches
  (``kernels.categorical.kernel_variants``) for these compute capabilities; exits with status 1 if
  any fails. This is how ``kernels.categorical.MIN_CAPABILITY`` was chosen.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import time

import torch

import minimal.masked_fhs as ref
from kernels.categorical import kernel_supported, sample, triton_available
from kernels.fhs import fhs_sample, mdlm_sample

EPS = 1e-10
PARTS = ("sampling", "end-to-end", "study")
FLOOR_TARGET = 2.0  # the kernel within 2x of the read floor ...
RACE_TARGET = 25.0  # ... and at least 25x faster than the float64 race
STUDY_CAP = 32  # the study skips MDLM runs with batch x N > STUDY_CAP x L


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


class Table:
    """A table printed row by row as its rows are measured: fixed-width text, or GitHub markdown
    (pipes) that the GPU runbook pastes into its summary.

    Args:
        columns: ``[(name, width)]``; a negative width left-aligns the column (text) instead of right.
        markdown: print markdown instead of fixed-width text.
    """

    def __init__(self, columns, markdown: bool):
        self.columns = columns
        self.markdown = markdown

    def _line(self, cells) -> str:
        cells = [str(c) for c in cells]
        if self.markdown:
            return "| " + " | ".join(cells) + " |"
        return "  ".join(f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for c, (_, w) in zip(cells, self.columns))

    def header(self) -> None:
        names = [name for name, _ in self.columns]
        print(self._line(names))
        if self.markdown:
            print("|" + "|".join(":---" if w < 0 else "---:" for _, w in self.columns) + "|")
        else:
            print("-" * len(self._line(names)))

    def row(self, *cells) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row needs {len(self.columns)} cells, got {len(cells)}: {cells}")
        print(self._line(cells), flush=True)


def _title(text: str, markdown: bool, level: int = 3) -> None:
    """A table's title: a markdown heading (which also ends the table before it) or a plain line."""
    print(f"\n{'#' * level} {text}\n" if markdown else f"\n{text}")


def _kernel_runs(device) -> bool:
    """True when ``sample()`` runs the Triton kernel for tensors on ``device`` (backend "auto")."""
    return (device.type == "cuda" and triton_available()
            and kernel_supported(tuple(torch.cuda.get_device_capability(device))))


def _device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU time, {torch.get_num_threads()} thread(s)"


# ------------------------------------------------------------------------------------------------
# 1. sampling
# ------------------------------------------------------------------------------------------------
def sampling_table(device, shapes, repeats, markdown=False):
    """Part 1: one draw per row from bf16 logits of each shape, every sampler against the read floor,
    then the two targets.

    Args:
        device: where the logits live.
        shapes: ``[(rows, vocabulary)]``.
        repeats: timed runs per cell (the best is shown), after one warm-up run.
        markdown: print GitHub markdown tables.
    """
    g = torch.Generator(device=device).manual_seed(0)
    kernel = _kernel_runs(device)
    _title(f"1. One exact draw per row from bf16 logits, {device} ({_device_name(device)}): best of {repeats}, "
           f"ms (multiple of the read floor)", markdown)
    columns = [("shape", -15), ("MB", 7), ("floor", 8), ("read GB/s", 9), ("float64 race", 16), ("float32 race", 16),
               ("multinomial", 16), ("kernel (Triton)" if kernel else "sample() (float64 ref.)", 23)]
    if kernel:  # variants, for the roofline
        columns += [("kernel, accurate log2", 21), ("kernel, Philox-4x32-7", 21)]
    table = Table(columns, markdown)
    table.header()
    measured = []  # (shape, kernel / floor, float64 race / kernel)
    for n, v in shapes:
        x = torch.randn(n, v, device=device, generator=g).to(torch.bfloat16)
        mb = x.numel() * x.element_size() / 1e6
        floor = time_ms(lambda: x.amax(dim=-1), device, repeats)
        fns = [lambda: race(x, torch.float64, g), lambda: race(x, torch.float32, g),
               lambda: torch.multinomial(torch.softmax(x.float(), dim=-1), 1, generator=g),
               lambda: sample(logits=x, generator=g)]
        if kernel:
            from kernels import categorical

            for kw in ({"fast_log2": False}, {"n_rounds": 7}):
                fns.append(lambda kw=kw: categorical._launch(x, None, None, is_probs=False, scale=math.log2(math.e),
                                                             seed=0, **kw))
        ms = [time_ms(fn, device, repeats) for fn in fns]
        table.row(f"{n} x {v}", f"{mb:.1f}", f"{floor:.3f}", f"{mb / floor:.1f}",
                  *(f"{t:.2f} ({t / floor:.1f}x)" for t in ms))
        measured.append((f"{n} x {v}", ms[3] / floor, ms[0] / ms[3]))
    targets_table(device, measured if kernel else None, markdown)


def targets_table(device, measured, markdown=False):
    """The two targets of the kernel, each with its worst measured value over the shapes, PASS or MISS.

    Args:
        device: the device measured on (says why nothing was measured).
        measured: ``[(shape, kernel ms / floor ms, float64 race ms / kernel ms)]``, or None where
            ``sample()`` did not run the kernel (CPU, no Triton, or a GPU below MIN_CAPABILITY).
        markdown: print a GitHub markdown table.
    """
    _title("Targets (the worst shape of each)", markdown, level=4)
    table = Table([("target", -42), ("measured", 26), ("result", -6)], markdown)
    table.header()
    floor_target = f"kernel <= {FLOOR_TARGET:g}x floor"
    race_target = f"kernel >= {RACE_TARGET:g}x faster than the float64 race"
    if not measured:
        why = "not measured on CPU" if device.type != "cuda" else "not measured: no Triton kernel on this GPU"
        table.row(floor_target, why, "-")
        table.row(race_target, why, "-")
        return
    shape, worst = max(((s, r) for s, r, _ in measured), key=lambda t: t[1])
    table.row(floor_target, f"{worst:.2f}x ({shape})", "PASS" if worst <= FLOOR_TARGET else "MISS")
    shape, worst = min(((s, r) for s, _, r in measured), key=lambda t: t[1])
    table.row(race_target, f"{worst:.1f}x ({shape})", "PASS" if worst >= RACE_TARGET else "MISS")


# ------------------------------------------------------------------------------------------------
# 2. end to end, and 3. the study over N and batch
# ------------------------------------------------------------------------------------------------
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


def _path(device):
    return "kernel" if _kernel_runs(device) else "float64 ref."


def end_to_end_table(device, length, vocab, batch, steps, width, repeats, markdown=False):
    """Part 2: FHS and MDLM (kernels.fhs, and minimal's float64 MDLM) on one batch, ms and NFE.

    Args:
        device: where the network and the tokens live.
        length, vocab, batch: L, V and B.
        steps: MDLM's numbers of steps N.
        width: the stand-in network's width.
        repeats: timed runs per row (the best is shown), after one warm-up run.
        markdown: print a GitHub markdown table.
    """
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    net = FixedNetwork(vocab, width, device, dtype)
    start = torch.full((batch, length), vocab, dtype=torch.int64, device=device)
    _title(f"2. End to end, batch {batch}, L = {length}, V = {vocab}, fixed network (width {width}), {device} "
           f"({_device_name(device)})", markdown)
    table = Table([("sampler", -38), ("NFE", 6), ("ms", 10), ("ms / NFE", 9)], markdown)
    table.header()
    path = _path(device)
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
        table.row(name, nfe, f"{ms:.1f}", f"{ms / max(nfe, 1):.2f}")


def _warm_up(net, masked, vocab):
    """Run both samplers briefly on a batch of this size, outside the clock: the kernel's variants for
    its shapes are compiled and the matrix-product library is set up before anything is timed."""
    x = masked.clone()
    x[:, 2:] = 0  # two masks per row: two FHS events, an MDLM run of two steps
    fhs_sample(net.logits, x, vocab, output="logits", seed=0)
    mdlm_sample(net.logits, x, vocab, 2, output="logits", seed=0)


def study_table(device, length, vocab, batches, steps, width, markdown=False, budget_s=None):
    """Part 3: FHS against MDLM (both kernels.fhs) over the batch size and MDLM's number of steps.

    Each run is timed once, after a short warm-up per batch size. Rows print as they are measured:
    per batch, FHS first (the baseline of the speed-up column), then MDLM at each N. MDLM runs with
    ``batch x N > STUDY_CAP x length``, and those that would start after ``budget_s`` seconds of the
    study, are listed as skipped.

    Args:
        device: where the network and the tokens live (bf16 logits on CUDA, float32 on CPU).
        length, vocab, width: L, V and the stand-in network's width.
        batches: batch sizes B.
        steps: MDLM's numbers of steps N.
        markdown: print a GitHub markdown table.
        budget_s: seconds after which no more MDLM runs start; None for no limit.
    """
    start = time.perf_counter()
    now = _timer(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    net = FixedNetwork(vocab, width, device, dtype)
    cap = STUDY_CAP * length
    clock = "wall ms" if device.type == "cuda" else "ms of CPU time"
    _title(f"3. FHS vs MDLM over N and batch, L = {length}, V = {vocab}, fixed network (width {width}), kernels.fhs "
           f"({_path(device)}, {str(dtype).removeprefix('torch.')} logits), {device} ({_device_name(device)}); "
           f"{clock}, one run each", markdown)
    table = Table([("batch", 5), ("sampler", -12), ("NFE", 6), ("ms", 10), ("ms / sequence", 13),
                   ("FHS speed-up", 22)], markdown)
    table.header()
    for b in batches:
        masked = torch.full((b, length), vocab, dtype=torch.int64, device=device)
        _warm_up(net, masked, vocab)
        t0 = now()
        _, _, nfe = fhs_sample(net.logits, masked, vocab, output="logits", seed=0)
        fhs_ms = (now() - t0) * 1e3
        table.row(b, "FHS", nfe, f"{fhs_ms:.1f}", f"{fhs_ms / b:.2f}", "(baseline)")
        for n in steps:
            if b * n > cap:
                table.row(b, f"MDLM N={n}", "-", "-", "-", f"skipped (B x N > {cap})")
                continue
            if budget_s is not None and time.perf_counter() - start > budget_s:
                table.row(b, f"MDLM N={n}", "-", "-", "-", f"skipped (budget {budget_s:g} s)")
                continue
            t0 = now()
            _, nfe = mdlm_sample(net.logits, masked, vocab, n, output="logits", seed=0)
            ms = (now() - t0) * 1e3
            table.row(b, f"MDLM N={n}", nfe, f"{ms:.1f}", f"{ms / b:.2f}", f"{ms / fhs_ms:.2f}x")


# ------------------------------------------------------------------------------------------------
# compiling without a GPU: instruction counts, and the oldest GPU the kernel builds for
# ------------------------------------------------------------------------------------------------
def _main_loop_counts(sass):
    """(loop, branch) instruction counts of the main loop in nvdisasm output: the loop is the longest
    backward branch; the branch, the longest region inside it skipped by a forward conditional branch
    (the refinement, taken by few tiles)."""
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


def compile_unavailable() -> str | None:
    """Why the kernel cannot be compiled for an NVIDIA GPU in this process (None when it can): Triton
    missing, its interpreter on, or its NVIDIA backend or ``ptxas`` missing. No GPU is needed."""
    if not triton_available():
        return "triton is not installed (pip install triton)"
    from kernels import categorical

    if categorical.interpreter_active():
        return "Triton's interpreter is on (TRITON_INTERPRET=1): unset it to compile the kernel"
    try:
        from triton import knobs
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401

        knobs.nvidia.ptxas.path  # raises when Triton cannot find its ptxas
    except Exception as error:  # any version or packaging problem means the same: no compiler here
        return f"Triton's NVIDIA backend or its ptxas is not available ({type(error).__name__}: {error})"
    return None


def _compile(signature, constexprs, num_warps, capability):
    """The kernel compiled for a GPU of ``capability`` = (major, minor); no GPU needed."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels import categorical

    src = ASTSource(fn=categorical._race_kernel, signature=signature, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", 10 * capability[0] + capability[1], 32),
                          options={"num_warps": num_warps})


def compile_for(capabilities, markdown=False) -> int:
    """Compile every variant of the kernel that ``sample()`` launches (``categorical.kernel_variants``)
    for each compute capability, without a GPU, and print ok or FAIL per variant and target, then the
    first error of each target that failed.

    Args:
        capabilities: ``[(major, minor)]``, e.g. ``[(7, 5), (7, 0)]``.
        markdown: print a GitHub markdown table.

    Returns:
        The number of (variant, target) pairs that failed to compile.
    """
    from kernels import categorical

    reason = compile_unavailable()
    if reason:
        raise RuntimeError(f"cannot compile the kernel here: {reason}")
    variants = categorical.kernel_variants()
    names = [f"sm_{major}{minor}" for major, minor in capabilities]
    _title(f"The kernel compiled for {', '.join(names)} (no GPU needed): every variant sample() launches", markdown)
    table = Table([("variant", -36)] + [(name, 6) for name in names], markdown)
    table.header()
    ok = [0] * len(capabilities)
    errors = {}
    for label, signature, constexprs, warps in variants:
        cells = []
        for i, capability in enumerate(capabilities):
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # Triton prints the whole PTX when ptxas fails
                    _compile(signature, constexprs, warps, capability)
                ok[i] += 1
                cells.append("ok")
            except Exception as error:  # a compiler error is the result here, not a reason to stop
                lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
                detail = next((line for line in lines[1:] if re.search(r"error|fatal", line)), lines[0])
                errors.setdefault(names[i], f"{label}: {type(error).__name__}: {detail}")
                cells.append("FAIL")
        table.row(label, *cells)
    table.row("compiled", *(f"{n}/{len(variants)}" for n in ok))
    for name, message in errors.items():
        print(f"{name}, first failure: {message}")
    return sum(len(variants) - n for n in ok)


def instruction_counts(vocab=50257, markdown=False):
    """Compile the kernel for an H100 (sm_90, no GPU needed) and count the machine instructions of its
    main loop per element, for bf16 logits: the compute side of the roofline. The refinement branch
    (32 more random bits, for a tile holding an element within 2^-16 of 0 or 1) is counted apart and
    weighted by the chance that a tile takes it."""
    import os
    import subprocess
    import tempfile

    import triton

    from kernels import categorical

    reason = compile_unavailable()
    if reason:
        print(f"\n(instruction counts need the compiled kernel: {reason})")
        return
    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "nvdisasm")
    rows, block, warps = categorical._tile(vocab, 8192, torch.device("cuda"))
    per_thread = rows * block // (32 * warps)  # elements each thread handles per loop iteration
    p_tile = 1 - (1 - categorical.FINE_CELLS * 2.0 ** -31) ** (rows * block)  # P(some k < 2^16)
    _title(f"Machine instructions per element in the main loop (bf16 logits, V = {vocab}, sm_90, {warps} warps, "
           f"{per_thread} elements per thread per iteration; the refinement branch is taken by {100 * p_tile:.1f}% "
           f"of tiles; expected = common path + branch x its chance)", markdown)
    table = Table([("variant", -52), ("expected", 8), ("common", 7), ("branch", 7)], markdown)
    table.header()
    for name, rounds, fast in [("as used by sample(): Philox-4x32-10, hardware log2", 10, True),
                               ("Philox-4x32-10, accurate log2 (libdevice)", 10, False),
                               ("Philox-4x32-7, hardware log2", 7, True)]:
        consts = categorical._constexprs(torch.bfloat16, is_probs=False, has_row_index=False, has_extra=False,
                                         bits=False, rows=rows, block=block, n_rounds=rounds, fast_log2=fast)
        kernel = _compile(categorical.kernel_signature(torch.bfloat16), consts, warps, (9, 0))
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(kernel.asm["cubin"])
            f.flush()
            sass = subprocess.run([nvdisasm, "-c", f.name], capture_output=True, text=True, check=True).stdout
        loop, branch = _main_loop_counts(sass)
        common = (loop - branch) / per_thread
        table.row(name, f"{common + p_tile * branch / per_thread:.1f}", f"{common:.1f}", f"{branch / per_thread:.1f}")


# ------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------
def _list_of(convert, what):
    """An argparse type: a comma-separated list, each item through ``convert`` (ValueError: rejected)."""
    def parse(text):
        try:
            items = [convert(item.strip()) for item in text.split(",") if item.strip()]
        except ValueError:
            items = []
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}")
        return items
    return parse


def _part(text):
    if text not in PARTS:
        raise ValueError(text)
    return text


def _positive_int(text):
    n = int(text)
    if n < 1:
        raise ValueError(text)
    return n


def _shape(text):
    n, v = (_positive_int(t) for t in text.lower().split("x"))
    return n, v


def _compute_capability(text):
    """'7.5' (or '75') -> (7, 5)."""
    major, _, minor = text.partition(".") if "." in text else (text[:-1], "", text[-1:])
    capability = (int(major), int(minor))
    if capability[0] < 1 or not 0 <= capability[1] <= 9:
        raise ValueError(text)
    return capability


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true",
                        help="CPU-sized: sampling on 32x fewer rows; end to end and study at L=64, V=2048")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", type=_list_of(_part, f"parts ({', '.join(PARTS)})"), default=list(PARTS),
                        help=f"which parts to run, comma-separated (default: {','.join(PARTS)})")
    parser.add_argument("--study", action="store_true", help="run only the study (same as --parts study)")
    parser.add_argument("--skip-end-to-end", action="store_true", help="leave out part 2")
    parser.add_argument("--markdown", action="store_true", help="print the tables as GitHub markdown")
    parser.add_argument("--repeats", type=_positive_int, default=None,
                        help="timed runs per sampling cell (default 10; 3 with --small)")
    parser.add_argument("--shapes", type=_list_of(_shape, "shapes NxV"), default=None,
                        help="sampling shapes, e.g. 8192x50257,49152x256")
    parser.add_argument("--batches", type=_list_of(_positive_int, "batch sizes"), default=None,
                        help="study batch sizes (default 1,8,32; 1,4 with --small)")
    parser.add_argument("--steps", type=_list_of(_positive_int, "numbers of MDLM steps"), default=None,
                        help="study MDLM steps N (default 128,1024,10000; 64,256 with --small)")
    parser.add_argument("--budget-s", type=float, default=45.0,
                        help="seconds of the study after which no MDLM run starts (default 45)")
    parser.add_argument("--count-instructions", action="store_true",
                        help="only compile the kernel for an H100 and count its instructions (no GPU needed)")
    parser.add_argument("--compile-for", type=_list_of(_compute_capability, "compute capabilities like 7.5"),
                        default=None, metavar="CAPS",
                        help="only compile every launched variant for these compute capabilities, e.g. 7.5,7.0 "
                             "(no GPU needed); exit status 1 if any fails")
    args = parser.parse_args(argv)
    if not args.budget_s > 0:
        parser.error(f"--budget-s must be a positive number of seconds, got {args.budget_s}")
    if args.count_instructions:
        instruction_counts(markdown=args.markdown)
        return
    if args.compile_for:
        reason = compile_unavailable()
        if reason:
            parser.exit(2, f"cannot compile the kernel here: {reason}\n")
        if compile_for(args.compile_for, markdown=args.markdown):
            raise SystemExit(1)
        return
    parts = ["study"] if args.study else [p for p in args.parts if not (args.skip_end_to_end and p == "end-to-end")]
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # CPU time of one thread: comparable between runs on a shared machine
    print(f"torch {torch.__version__}, triton {'yes' if triton_available() else 'no'}")
    if "sampling" in parts:
        shapes = args.shapes or [(n // 32, v) if args.small else (n, v)
                                 for n, v in [(8192, 50257), (1024, 50257), (49152, 256)]]
        sampling_table(device, shapes, args.repeats or (3 if args.small else 10), markdown=args.markdown)
    length, vocab, width = (64, 2048, 32) if args.small else (1024, 50257, 64)
    if "end-to-end" in parts:
        end_to_end_table(device, length, vocab, batch=1, steps=(64, 256) if args.small else (1024, 10_000),
                         width=width, repeats=1, markdown=args.markdown)
    if "study" in parts:
        study_table(device, length, vocab, batches=args.batches or ((1, 4) if args.small else (1, 8, 32)),
                    steps=args.steps or ((64, 256) if args.small else (128, 1024, 10_000)), width=width,
                    markdown=args.markdown, budget_s=args.budget_s)


if __name__ == "__main__":
    main()
