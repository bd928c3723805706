"""A pytest plugin: add up nbval's per-cell times by notebook; print the slowest notebooks and cells.

The slowest cells are what the test command's cell timeout must stay well above (scripts/run_tests.py
keeps a margin of at least 5x over an unloaded run); the summary prints that margin for this run.
"""
from collections import defaultdict

_seconds = defaultdict(float)
_cells: list[tuple[float, str]] = []


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _seconds[path] += report.duration
        if report.when == "call":
            _cells.append((report.duration, report.nodeid))


def pytest_terminal_summary(terminalreporter, config):
    if not _seconds:
        return
    terminalreporter.section("slowest notebooks (all cells, quick mode)")
    for path, seconds in sorted(_seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}")
    terminalreporter.section("slowest cells")
    for seconds, nodeid in sorted(_cells, reverse=True)[:5]:
        terminalreporter.write_line(f"{seconds:7.1f} s  {nodeid}")
    timeout = config.getoption("nbval_cell_timeout", None)
    if timeout and _cells:
        slowest = max(_cells)[0]
        terminalreporter.write_line(f"cell timeout {timeout} s: {timeout / max(slowest, 1e-9):.0f}x the slowest cell "
                                    "of this run (keep at least 5x over an unloaded run)")
