"""The GPU runbook: every check that needs a GPU, in one prepared, time-boxed command.

    make gpu-wheels                                     # once, on a machine with pip and a network
    python scripts/gpu_run.py --out DIR --wheels .whl   # on the GPU machine: the whole run, under 9 minutes
    python scripts/gpu_run.py --out DIR --rehearse      # the same code paths at tiny size on a CPU

A GPU is lent to this project now and then, for a few minutes and one command, on a machine with
CUDA torch, Triton and pytest but no Jupyter and no network. So everything a GPU should check
runs from here, each part in its own process with its own time box, in this order:

1. environment: the GPU, its compute capability, the precision the trainer picks for it
   (``cifar.trainer.choose_precision``), whether the Triton kernel supports it, and the two
   ceilings every timing is read against: a device-to-device copy (GB/s) and a bf16 matrix product
   (TFLOP/s);
2. kernel tests: ``tests/test_kernels_*.py`` on CUDA, the brute-force exactness test and the bad
   input of every dtype (bf16 NaN included) among them;
3. ``python -m kernels.bench``, sampling: the read floor, the float64 and float32 races,
   ``torch.multinomial`` and the kernel, each as a multiple of the floor;
4. the four CIFAR notebooks in full mode (``DFM_MODE=full``), each in a fresh kernel; the executed
   copies go into one archive, with each notebook's time and peak GPU memory in the summary;
5. ``python -m kernels.bench``, the FHS-vs-MDLM study at L = 1024, V = 50257 over N and batch size;
6. ``python -m cifar.bench``: U-Net images/s and transformer tokens/s, eager vs compiled, fp32 vs bf16.

A part that overruns its box is stopped (its process group killed, an executing notebook saved as
far as it ran) and the next part runs; a part that would start after the whole run's deadline is
skipped. DIR receives at most four files, rewritten after every part so that an interrupted run
still leaves them: ``summary.md`` (every table), ``results.json`` (the same, for programs),
``log.txt`` (everything the parts printed) and ``notebooks.zip`` (the executed notebooks, under
their paths in the repository). The last lines printed say how to copy the notebooks back.

``--rehearse`` runs every part on the CPU at tiny size: the notebooks in quick mode, the benchmarks
with ``--small`` / ``--quick``, the kernel tests through Triton's interpreter. The test command runs
it (``tests/test_gpu_run.py``), so the runbook cannot rot between GPU loans.

Jupyter travels as wheels: ``make gpu-wheels`` downloads nbclient, ipykernel and everything they
need, built for the GPU machine's Python (CPython 3.12, x86-64 Linux), into the git-ignored folder
``.whl/``; ``--wheels .whl`` installs them into a temporary folder on the GPU machine (pip, no
index, no network) and puts it on the path of every part.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/gpu_run.py` from a plain checkout (nothing installed)
    sys.path.insert(0, str(ROOT))
NOTEBOOKS = [f"lessons/{lesson}/cifar.ipynb" for lesson in
             ("01-hallucination", "02-fpe-gap", "03-momentum", "04-masked-fhs")]
KERNEL_TESTS = ["tests/test_kernels_categorical.py", "tests/test_kernels_exactness.py", "tests/test_kernels_fhs.py"]
OUT_FILES = ("summary.md", "results.json", "log.txt", "notebooks.zip")
MAX_OUT_FILES = 8          # what the GPU machine sends back
DEADLINE_S = {"gpu": 540, "rehearse": 1500}   # the whole run: 9 minutes of a 10-minute command on a GPU
RESULT_MARK = "GPU_RUN_RESULT "  # the line a notebook's executor prints its result on


@dataclasses.dataclass
class Part:
    """One step of the run: a command (``python ARGV``, run in the repository root) and its time box."""
    name: str
    argv: list[str]
    box_s: float
    notebook: str | None = None      # set for a notebook part: its path in the repository


def plan(rehearse: bool, staging: pathlib.Path, commit: str | None) -> list[Part]:
    """The parts of a run, in order, with their commands and time boxes (seconds).

    The GPU boxes hold each part's estimate on one H100 with a margin (lesson 05 gives the estimates);
    the rehearsal's are generous, for a busy 2-core CPU.
    """
    small = ["--small"] if rehearse else []
    box = (lambda gpu, cpu: cpu) if rehearse else (lambda gpu, cpu: gpu)
    parts = [
        Part("environment", [__file__, "--probe", *(["--rehearse"] if rehearse else [])], box(60, 120)),
        # On the GPU machine four workers share the many Triton compilations (16 cores there); the
        # rehearsal already runs beside other tests on 2 cores, so it stays in one process.
        Part("kernel tests", ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                              *([] if rehearse else ["-n", "4"]), *KERNEL_TESTS], box(150, 600)),
        Part("kernels.bench: sampling", ["-m", "kernels.bench", *small, "--parts", "sampling", "--markdown"],
             box(60, 300)),
    ]
    mode = "quick" if rehearse else "full"
    for path in NOTEBOOKS:
        argv = [__file__, "--execute", path, "--mode", mode, "--to", str(staging / path)]
        parts.append(Part(f"notebook {path}", argv + (["--commit", commit] if commit else []), box(150, 900),
                          notebook=path))
    parts += [
        Part("kernels.bench: FHS vs MDLM", ["-m", "kernels.bench", *small, "--parts", "study", "--markdown"],
             box(75, 300)),
        Part("cifar.bench", ["-m", "cifar.bench", *(["--quick"] if rehearse else []), "--markdown",
                             "--budget-s", str(box(75, 240))], box(150, 300)),
    ]
    return parts


# ------------------------------------------------------------------------------------------------
# running the parts
# ------------------------------------------------------------------------------------------------
def run_part(part: Part, timeout_s: float, env: dict, log) -> dict:
    """Run one part in its own process group, at most ``timeout_s`` seconds; its result as a dict.

    On timeout the group gets SIGUSR1 (a notebook's executor then saves what ran; anything else just
    ends: SIGUSR1's default action), then SIGKILL after 10 s. Not SIGTERM: nbclient takes that one
    over while it runs, to shut its kernel down. Status: "ok", "failed" (non-zero exit) or "timed out".
    """
    log.write(f"\n===== {part.name} (box {timeout_s:.0f} s) =====\n$ python {' '.join(part.argv)}\n")
    log.flush()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *part.argv], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        output, _ = proc.communicate()
        status = "timed out"
    seconds = time.perf_counter() - start
    log.write(output)
    log.write(f"\n----- {part.name}: {status} in {seconds:.1f} s (exit code {proc.returncode})\n")
    log.flush()
    return {"name": part.name, "status": status, "seconds": round(seconds, 1), "box_s": round(timeout_s),
            "returncode": proc.returncode, "output": output}


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGUSR1, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def notebook_result(output: str) -> dict:
    """The executor's result line (seconds, peak memory, cells run, error) from a notebook part's output."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    return {}


def run_all(parts: list[Part], out: pathlib.Path, staging: pathlib.Path, deadline_s: float, env: dict,
            header: dict) -> list[dict]:
    """Run ``parts`` in order within ``deadline_s`` seconds, rewriting DIR's files after each one."""
    out.mkdir(parents=True, exist_ok=True)
    start, results = time.perf_counter(), []
    with open(out / "log.txt", "w") as log:
        for part in parts:
            left = deadline_s - (time.perf_counter() - start)
            if left < min(30.0, part.box_s):  # too little time for a useful run: say so and go on
                result = {"name": part.name, "status": "skipped (out of time)", "seconds": 0.0, "box_s": 0,
                          "returncode": None, "output": ""}
            else:
                result = run_part(part, min(part.box_s, left), env, log)
            if part.notebook:
                result["notebook"] = {"path": part.notebook, **notebook_result(result["output"])}
            results.append(result)
            write_outputs(out, staging, header, results)
            print(f"{part.name:<44} {result['status']:<22} {result['seconds']:7.1f} s", flush=True)
    return results


# ------------------------------------------------------------------------------------------------
# the files in DIR
# ------------------------------------------------------------------------------------------------
def write_outputs(out: pathlib.Path, staging: pathlib.Path, header: dict, results: list[dict]) -> None:
    """summary.md, results.json and notebooks.zip from the results so far (log.txt is written as it goes)."""
    (out / "results.json").write_text(json.dumps({"header": header, "parts": results}, indent=1))
    (out / "summary.md").write_text(summary_markdown(header, results))
    executed = [p for p in NOTEBOOKS if (staging / p).exists()]
    with zipfile.ZipFile(out / "notebooks.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in executed:
            archive.write(staging / path, path)
    extra = sorted(p.name for p in out.iterdir() if p.name not in OUT_FILES)
    if len(OUT_FILES) + len(extra) > MAX_OUT_FILES:
        raise RuntimeError(f"{out} holds more than {MAX_OUT_FILES} files ({extra} beside {OUT_FILES}); "
                           "the GPU machine sends back only the first ones")


def summary_markdown(header: dict, results: list[dict]) -> str:
    lines = [f"# GPU run, {header['started']}", "",
             f"{header['mode']} | commit {header.get('commit') or 'unknown'} | deadline {header['deadline_s']} s", "",
             "| part | status | seconds | box (s) |", "|---|---|---:|---:|"]
    lines += [f"| {r['name']} | {r['status']} | {r['seconds']:.1f} | {r['box_s']} |" for r in results]
    lines += [f"\nTotal: {sum(r['seconds'] for r in results):.0f} s", ""]
    notebooks = [r for r in results if "notebook" in r]
    if notebooks:
        estimates = header.get("estimates", {})
        lines += ["## The notebooks", "",
                  "Estimated: `python scripts/gpu_budget.py` (H100). On a T4 (Colab) expect about "
                  f"{header.get('t4_factor', '?')}x the measured H100 time or less: lesson 05 says why.", "",
                  "| notebook | status | seconds | estimated (s) | cells reached | peak GPU memory (GiB, reserved) | error |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for r in notebooks:
            nb = r["notebook"]
            peak = nb.get("peak_reserved_bytes")
            estimate = estimates.get(nb["path"].split("/")[1])
            lines.append(f"| {nb['path']} | {r['status']} | {nb.get('seconds', r['seconds']):.1f} | "
                         f"{'-' if estimate is None else f'{estimate:.0f}'} | "
                         f"{nb.get('cells_reached', '-')}/{nb.get('cells', '-')} | "
                         f"{'-' if peak is None else f'{peak / 2**30:.2f}'} | {nb.get('error') or ''} |")
        lines.append("")
    for r in results:
        if "notebook" in r:
            continue
        lines += [f"## {r['name']}", "", _tables_or_tail(r["output"]), ""]
    lines += ["## Copying the executed notebooks back", "", "```", *copy_back_instructions("DIR"), "```", ""]
    return "\n".join(lines)


def _tables_or_tail(output: str, tail: int = 40) -> str:
    """The markdown tables and headings a part printed (a blank line wherever a table starts or ends,
    so that no text line is read as a table row); otherwise the end of its output, fenced."""
    kept = [line for line in output.splitlines() if line.startswith(("|", "#", "**", "device:", "torch "))]
    if sum(line.startswith("|") for line in kept) < 2:
        return "```\n" + "\n".join(output.splitlines()[-tail:]) + "\n```"
    lines = []
    for line in kept:
        if lines and lines[-1].startswith("|") != line.startswith("|"):
            lines.append("")
        lines.append(line)
    return "\n".join(lines)


def copy_back_instructions(out: str) -> list[str]:
    return [f"cd <this repository> && python -m zipfile -e {out}/notebooks.zip .",
            "python scripts/notebooks.py check lessons/*/cifar.ipynb   # the cells' shape, the pinned commit",
            "git diff --stat lessons/   # then commit the notebooks with the numbers in the summary"]


# ------------------------------------------------------------------------------------------------
# the parts that run inside this script: the environment probe and a notebook's executor
# ------------------------------------------------------------------------------------------------
def probe(rehearse: bool) -> None:
    """Print the machine, the precision and kernel support it gets, and its copy and matmul ceilings."""
    import torch

    from cifar.trainer import choose_precision
    from kernels import categorical

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    capability = torch.cuda.get_device_capability() if cuda else None
    oldest = ".".join(map(str, categorical.MIN_CAPABILITY))
    if not cuda:
        kernel = "not used on a CPU"
    elif not categorical.triton_available():
        kernel = "triton is not installed: the torch backend runs"
    elif categorical.kernel_supported(capability):
        kernel = f"runs (it needs compute capability {oldest} or newer)"
    else:
        kernel = f"not below compute capability {oldest}: the torch backend runs"
    rows = [("python", sys.version.split()[0]), ("torch", torch.__version__),
            ("triton", _version("triton")), ("device", torch.cuda.get_device_name() if cuda else "CPU"),
            ("compute capability", capability), ("precision (amp='auto')", choose_precision("auto", device.type, capability)),
            ("Triton kernel", kernel)]
    if cuda:
        rows.append(("memory (GiB)", f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.1f}"))
    n, size = (2**20, 256) if rehearse else (2**30, 8192)  # bytes copied; matrix size
    src = torch.randn(n // 4, device=device)
    dst = torch.empty_like(src)
    copy_s = _time(lambda: dst.copy_(src), device)
    rows.append(("device copy (GB/s, read + write)", f"{2 * n / copy_s / 1e9:.0f}"))
    dtype = torch.bfloat16 if cuda else torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    mm_s = _time(lambda: a @ b, device)
    rows.append((f"{size}^3 {str(dtype)[6:]} matmul (TFLOP/s)", f"{2 * size**3 / mm_s / 1e12:.1f}"))
    print("| what | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def _time(fn, device, repeats: int = 10) -> float:
    """Median seconds of ``fn`` after three warm-ups; device time with CUDA events on a GPU."""
    import statistics

    import torch

    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1e3)
        else:
            tic = time.perf_counter()
            fn()
            times.append(time.perf_counter() - tic)
    return statistics.median(times)


PEAK_CELL = ("import json as _json, torch as _torch\n"
             f"print({RESULT_MARK!r} + _json.dumps(dict(peak_reserved_bytes=_torch.cuda.max_memory_reserved()\n"
             "      if _torch.cuda.is_available() else None)))")


def execute(path: str, mode: str, to: pathlib.Path, commit: str | None) -> int:
    """Execute one notebook on a fresh kernel (``DFM_MODE=mode``) and write it to ``to``, as far as it ran.

    Prints one result line (seconds, cells run, peak GPU memory, error). A SIGUSR1 (the part's time
    box) still writes what ran. The Colab cell is pinned to ``commit`` when one is
    given (else it is left as it is).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from scripts import notebooks

    source = ROOT / path
    nb = nbformat.read(source, as_version=4)
    if commit:
        notebooks._stamp(nb, source, commit)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))  # read the kernel's peak memory, then removed
    os.environ["DFM_MODE"] = mode
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    start = time.perf_counter()

    def finish(error: str | None) -> int:
        """Write the notebook as far as it ran (without the probe cell) and print the result line."""
        peak = {}
        if nb.cells and nb.cells[-1].source == PEAK_CELL:
            for output in nb.cells.pop().get("outputs", []):
                text = output.get("text", "")
                if RESULT_MARK in text:
                    peak = json.loads(text.split(RESULT_MARK, 1)[1])
        code = [c for c in nb.cells if c.cell_type == "code"]
        result = {"seconds": round(time.perf_counter() - start, 1), "cells": len(code), "error": error,
                  "cells_reached": sum(c.get("execution_count") is not None for c in code), **peak}
        to.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, to)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0 if error is None else 1

    def time_box(*_):  # the kernel exits on its own once this process is gone (it polls its parent)
        os._exit(finish("stopped by the time box") or 1)

    signal.signal(signal.SIGUSR1, time_box)
    # No limit per cell (nbclient's default is 30 s): the part's time box limits the whole notebook.
    client = NotebookClient(nb, timeout=None, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}})
    try:
        client.execute()
    except CellExecutionError as err:
        return finish(str(err).strip().splitlines()[-1][:200])
    except Exception as err:  # a dead kernel (out of memory, say) is a result to report, like a failing cell
        return finish(f"{type(err).__name__}: {err}"[:200])
    return finish(None)


# ------------------------------------------------------------------------------------------------
# wheels and the command line
# ------------------------------------------------------------------------------------------------
def install_wheels(folder: pathlib.Path, target: pathlib.Path) -> None:
    """Install every wheel in ``folder`` into ``target`` with pip, offline (no index, no dependencies)."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"--wheels {folder}: no .whl files there (fill it with `make gpu-wheels`)")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--disable-pip-version-check", "--target", str(target), *map(str, wheels)], check=True)


def notebook_estimates() -> dict:
    """Estimated H100 seconds of each notebook's full mode, by lesson (scripts/gpu_budget.py), where it has one."""
    from scripts import gpu_budget

    estimates = {}
    for path in NOTEBOOKS:
        lesson = path.split("/")[1]
        try:
            estimates[lesson] = round(gpu_budget.estimate(lesson)["h100_s"])
        except ValueError:  # a lesson the budget does not model
            continue
    return estimates


def git_commit() -> str | None:
    """HEAD of this checkout, or None where there is no git repository (the GPU machine gets a copy)."""
    try:
        return subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv=None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring (scripts/gpu_run.py) for the parts.")
    parser.add_argument("--out", type=pathlib.Path, help="the folder for summary.md, results.json, log.txt, notebooks.zip")
    parser.add_argument("--rehearse", action="store_true", help="every part at tiny size on a CPU")
    parser.add_argument("--wheels", type=pathlib.Path, help="a folder of wheels to install first (make gpu-wheels)")
    parser.add_argument("--commit", help="the commit this checkout holds (40 hex digits; default: git HEAD)")
    parser.add_argument("--parts", help="run only the parts whose names contain one of these comma-separated words")
    parser.add_argument("--deadline-s", type=float, help="seconds for the whole run (default: 540 on a GPU)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--execute", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("quick", "full"), help=argparse.SUPPRESS)
    parser.add_argument("--to", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(args.rehearse)
        return 0
    if args.execute:
        return execute(args.execute, args.mode, args.to, args.commit)
    if args.out is None:
        parser.error("--out DIR is required")
    if args.commit is not None and not (len(args.commit) == 40 and all(c in "0123456789abcdef" for c in args.commit)):
        parser.error(f"--commit must be 40 lower-case hex digits, got {args.commit!r}")
    if args.deadline_s is not None and not args.deadline_s > 0:
        parser.error(f"--deadline-s must be a positive number of seconds, got {args.deadline_s}")
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} must be empty or new (its files would be mixed with this run's)")
    if not args.rehearse:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device here: run with --rehearse on a CPU")
    return run(args, started)


def select_parts(parts: list[Part], spec: str | None) -> list[Part]:
    """The parts whose names contain one of the comma-separated words of ``spec`` (all for None)."""
    if spec is None:
        return parts
    words = [w.strip() for w in spec.split(",") if w.strip()]
    chosen = [p for p in parts if any(w in p.name for w in words)]
    if not chosen:
        raise SystemExit(f"--parts {spec!r} matches none of the parts: {', '.join(p.name for p in parts)}")
    return chosen


def run(args, started: float) -> int:
    """The whole run; ``started`` (``time.perf_counter()`` at start-up) anchors the deadline, so that
    installing the wheels and the estimates count against it too."""
    commit = args.commit or git_commit()
    deadline = args.deadline_s or DEADLINE_S["rehearse" if args.rehearse else "gpu"]
    with tempfile.TemporaryDirectory(prefix="gpu_run_") as tmp:
        tmp = pathlib.Path(tmp)
        staging = tmp / "notebooks"
        parts = select_parts(plan(args.rehearse, staging, commit), args.parts)
        path = [str(ROOT)]
        if args.wheels:
            install_wheels(args.wheels, tmp / "site")
            path.append(str(tmp / "site"))
        # Trained runs are cached in a fresh folder, so every notebook's time includes its training
        # (lesson 02 reuses lesson 01's run, as on Colab when both run in one session).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, *filter(None, [os.environ.get("PYTHONPATH")])]),
               "DFM_DATA": str(tmp / "cache"), "PYTHONUNBUFFERED": "1"}
        if args.rehearse:
            env["OMP_NUM_THREADS"] = "1"
        header = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit, "deadline_s": deadline,
                  "mode": "rehearsal (CPU, tiny sizes, quick notebooks)" if args.rehearse else "GPU run (full mode)"}
        try:  # the estimates are context for the measurements: never a reason to lose the run
            from scripts.gpu_budget import T4_COMPUTE

            header["estimates"], header["t4_factor"] = notebook_estimates(), T4_COMPUTE
        except Exception as error:
            header["estimates_error"] = f"{type(error).__name__}: {error}"
            print(f"warning: no estimates ({header['estimates_error']})", file=sys.stderr)
        results = run_all(parts, args.out, staging, deadline - (time.perf_counter() - started), env, header)
    print("\nsummary:", args.out / "summary.md")
    print("copy the executed notebooks back into lessons/:")
    for line in copy_back_instructions(str(args.out)):
        print("   ", line)
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
