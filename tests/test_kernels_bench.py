"""kernels.bench at CPU size: each part the GPU runbook calls prints its tables with the expected rows and
columns, as markdown or as fixed-width text. (The timings themselves are not checked.)"""
import os
import re

import pytest
import torch

# Set before anything imports triton: the kernel test files of this run (collected after this one)
# need Triton's interpreter on a CPU, and it can only be chosen before the first import.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from kernels import bench  # noqa: E402

SMALL = ["--small", "--device", "cpu", "--markdown"]
TIMING = re.compile(r"\d+\.\d+ \(\d+\.\dx\)")  # "12.34 (5.6x)": ms and its multiple of the floor


def _tables(out):
    """The markdown tables printed: each a list of rows of cells, the header first (the rule dropped)."""
    tables, current = [], None
    for line in out.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current is None:
            current = []
            tables.append(current)
        if not all(re.fullmatch(r":?-+:?", c) for c in cells):
            current.append(cells)
    return tables


def test_sampling_prints_every_sampler_as_a_multiple_of_the_floor_and_the_targets(capsys):
    bench.main(SMALL + ["--parts", "sampling", "--repeats", "1", "--shapes", "4x300,16x64"])
    out = capsys.readouterr().out
    assert out.startswith("torch ") and "### 1. One exact draw per row" in out
    table, targets = _tables(out)
    assert table[0] == ["shape", "MB", "floor", "read GB/s", "float64 race", "float32 race", "multinomial",
                        "sample() (float64 ref.)"]
    assert [row[0] for row in table[1:]] == ["4 x 300", "16 x 64"]
    assert all(TIMING.fullmatch(cell) for row in table[1:] for cell in row[4:])
    assert targets == [["target", "measured", "result"],
                       ["kernel <= 2x floor", "not measured on CPU", "-"],
                       ["kernel >= 25x faster than the float64 race", "not measured on CPU", "-"]]


def test_targets_pass_or_miss_on_the_worst_shape(capsys):
    bench.targets_table(None, [("a", 1.5, 40.0), ("b", 2.5, 30.0)], markdown=True)
    bench.targets_table(None, [("a", 1.9, 25.0), ("b", 1.2, 60.0)], markdown=True)
    miss, ok = _tables(capsys.readouterr().out)
    assert miss[1:] == [["kernel <= 2x floor", "2.50x (b)", "MISS"],
                        ["kernel >= 25x faster than the float64 race", "30.0x (b)", "PASS"]]
    assert ok[1:] == [["kernel <= 2x floor", "1.90x (a)", "PASS"],
                      ["kernel >= 25x faster than the float64 race", "25.0x (a)", "PASS"]]


def test_end_to_end_prints_fhs_and_both_mdlm_at_each_n(capsys):
    bench.main(SMALL + ["--parts", "end-to-end"])
    (table,) = _tables(capsys.readouterr().out)
    assert table[0] == ["sampler", "NFE", "ms", "ms / NFE"]
    assert [row[0] for row in table[1:]] == [
        "FHS, kernels.fhs (float64 ref.)", "MDLM N=64, kernels.fhs (float64 ref.)", "MDLM N=64, minimal (float64)",
        "MDLM N=256, kernels.fhs (float64 ref.)", "MDLM N=256, minimal (float64)"]
    assert table[1][1] == "64"  # FHS: one network call per position, L = 64
    assert all(1 <= int(row[1]) <= 64 for row in table[2:])  # MDLM's cache: at most one call per change


def test_study_rows_per_batch_and_sampler_with_the_speed_up_and_the_cap(capsys):
    # --small: L = 64, so MDLM runs of batch x N > 32 L = 2048 are skipped (here N = 1500)
    bench.main(SMALL + ["--study", "--batches", "2,4", "--steps", "8,1500"])
    out = capsys.readouterr().out
    assert "### 3. FHS vs MDLM over N and batch, L = 64, V = 2048" in out
    (table,) = _tables(out)
    assert table[0] == ["batch", "sampler", "NFE", "ms", "ms / sequence", "FHS speed-up"]
    assert [row[:2] for row in table[1:]] == [[b, s] for b in ("2", "4") for s in ("FHS", "MDLM N=8", "MDLM N=1500")]
    for b, fhs, mdlm, skipped in [(2, *table[1:4]), (4, *table[4:7])]:
        assert fhs[2] == "64" and fhs[5] == "(baseline)"  # FHS: L events whatever N
        assert 1 <= int(mdlm[2]) <= 8
        assert float(fhs[4]) == pytest.approx(float(fhs[3]) / b, abs=0.05)  # ms printed to 0.1
        assert float(mdlm[5].rstrip("x")) == pytest.approx(float(mdlm[3]) / float(fhs[3]), rel=0.02, abs=0.01)
        assert skipped[2:] == ["-", "-", "-", "skipped (B x N > 2048)"]


def test_study_over_its_budget_lists_the_rest_as_skipped_in_plain_text(capsys):
    bench.main(["--small", "--device", "cpu", "--study", "--batches", "1", "--steps", "8", "--budget-s", "1e-9"])
    out = capsys.readouterr().out
    assert "|" not in out  # fixed-width text without --markdown
    rows = out.splitlines()[-2:]
    assert rows[0].split() == ["1", "FHS", "64", *rows[0].split()[3:5], "(baseline)"]
    assert rows[1].split() == ["1", "MDLM", "N=8", "-", "-", "-", "skipped", "(budget", "1e-09", "s)"]


@pytest.mark.parametrize("args,message", [
    (["--parts", "sampling,plots"], "--parts: expected a comma-separated list of parts"),
    (["--steps", "0"], "--steps: expected a comma-separated list of numbers of MDLM steps"),
    (["--shapes", "8x"], "--shapes: expected a comma-separated list of shapes NxV"),
    (["--compile-for", "sm75"], "--compile-for: expected a comma-separated list of compute capabilities"),
    (["--budget-s", "0"], "--budget-s must be a positive number of seconds"),
])
def test_bad_arguments_are_named(capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        bench.main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
