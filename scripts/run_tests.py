"""The test command (`make test`): package tests, every notebook in quick mode, the site in a browser.

1. pytest on tests/ (the packages, the papers' claims at small scale, the site build);
2. nbval on every notebook in lessons/ with DFM_MODE=quick;
3. the course site built with --strict and checked page by page in headless Chromium
   (scripts/browser_check.py); Debian's chromium is installed first when it is missing.
Prints the slowest tests and notebooks, and a summary. Extra arguments go to both pytest runs,
e.g. `python scripts/run_tests.py -x`.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time

# Two workers, one thread each: the models here are small, and two single-threaded processes keep
# a 2-core machine busier than one process with two threads. loadfile keeps a notebook's cells in order.
PARALLEL = ["-n", "2", "--dist", "loadfile"]
# Timeouts keep a margin of at least 5x over an unloaded run, so that a busy shared machine never
# fails the test command (at a load of ~10 on 2 cores a cell ran 3-4x slower than unloaded):
# - a notebook cell: 600 s. Unloaded, the slowest quick-mode cell takes ~37 s (lesson 04's CIFAR
#   training cell: 36.8 s of CPU time on one thread, measured 2026-11-29), and a whole notebook is
#   budgeted at 90 s, so 600 s is 16x the slowest cell and 6.7x any cell within the budget;
# - a kernel start: 60 s (nbval's default, written out). Unloaded a kernel starts in ~1-2 s.
# pytest itself sets no timeout; the browser check's page timeouts are in scripts/browser_check.py.
CELL_TIMEOUT_S = 600
KERNEL_STARTUP_TIMEOUT_S = 60
STAGES = [
    ("package tests", [*PARALLEL, "tests", "--durations=10"], {}),
    ("notebooks, quick mode", [*PARALLEL, "--nbval-lax", "--nbval-current-env",
                               f"--nbval-cell-timeout={CELL_TIMEOUT_S}",
                               f"--nbval-kernel-startup-timeout={KERNEL_STARTUP_TIMEOUT_S}",
                               "-p", "scripts.notebook_timing", "lessons"], {"DFM_MODE": "quick"}),
]


PORT = 8765  # the site is built for this address, since its download links are absolute
CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> None:
    """Install Debian's chromium (no recommends) when it is missing and we may."""
    if pathlib.Path(CHROMIUM).exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SystemExit(f"{CHROMIUM} is missing: install it with `apt-get install --no-install-recommends chromium`")
    print("installing Debian's chromium for the browser check", flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    subprocess.run(["apt-get", "update", "-qq"], check=True, **quiet)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], check=True, **quiet)


def browser_stage() -> int:
    site = pathlib.Path("site")
    env = {**os.environ, "SITE_URL": f"http://127.0.0.1:{PORT}/", "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.call([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], env=env)
    if build != 0:
        return build
    return subprocess.call([sys.executable, "scripts/browser_check.py", str(site), "--port", str(PORT)])


def main() -> int:
    ensure_chromium()  # first, so that the browser check's own tests run in the package stage
    failed, times = [], []
    for name, args, env in STAGES:
        print(f"\n===== {name} =====", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "pytest", *args, *sys.argv[1:]],
                               env={"OMP_NUM_THREADS": "1", **os.environ, **env, "PYTHONPATH": os.getcwd()})
        times.append((name, time.perf_counter() - start))
        if code != 0:
            failed.append(name)
    print("\n===== the site in a browser =====", flush=True)
    start = time.perf_counter()
    if browser_stage() != 0:
        failed.append("site in a browser")
    times.append(("site in a browser", time.perf_counter() - start))
    print("\n===== summary =====")
    for name, seconds in times:
        print(f"{name:<24} {seconds:7.1f} s  {'FAILED' if name in failed else 'passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
