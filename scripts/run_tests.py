"""The test command (`make test`): package tests, then every notebook in quick mode.

Prints the slowest tests and the slowest notebooks at the end. Extra arguments go to both
pytest runs, e.g. `python scripts/run_tests.py -x`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

STAGES = [
    ("package tests", ["tests", "--durations=10"], {}),
    ("notebooks, quick mode", ["--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=300",
                               "-p", "scripts.notebook_timing", "lessons"], {"DFM_MODE": "quick"}),
]


def main() -> int:
    failed, times = [], []
    for name, args, env in STAGES:
        print(f"\n===== {name} =====", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "pytest", *args, *sys.argv[1:]],
                               env={**os.environ, **env, "PYTHONPATH": os.getcwd()})
        times.append((name, time.perf_counter() - start))
        if code != 0:
            failed.append(name)
    print("\n===== summary =====")
    for name, seconds in times:
        print(f"{name:<24} {seconds:7.1f} s  {'FAILED' if name in failed else 'passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
