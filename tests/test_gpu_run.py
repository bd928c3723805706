"""The GPU runbook (scripts/gpu_run.py): its rehearsal on this CPU, its time boxes, wheels and arguments.

The rehearsal runs every part of the GPU run at tiny size (the notebooks in quick mode), so that the
runbook works the first time a GPU is lent, however long ago it was last run on one.
"""
import base64
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import nbformat
import pytest

from scripts import gpu_run

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_rehearsal_runs_every_part_and_leaves_the_files(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as on the GPU machine: a plain checkout
    proc = subprocess.run([sys.executable, "scripts/gpu_run.py", "--rehearse", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(gpu_run.OUT_FILES)
    results = json.loads((out / "results.json").read_text())
    planned = [p.name for p in gpu_run.plan(True, tmp_path, None)]
    assert [r["name"] for r in results["parts"]] == planned
    assert all(r["status"] == "ok" for r in results["parts"])
    summary = (out / "summary.md").read_text()
    for part in planned:
        assert f"| {part} | ok |" in summary
    for bench in ("## kernels.bench: sampling", "## kernels.bench: FHS vs MDLM", "## cifar.bench"):
        section = summary.split(bench, 1)[1].split("\n## ", 1)[0]
        assert section.count("\n|") >= 3, f"{bench} should hold a markdown table:\n{section}"
    with zipfile.ZipFile(out / "notebooks.zip") as archive:
        assert sorted(archive.namelist()) == sorted(gpu_run.NOTEBOOKS)
        for name in archive.namelist():
            nb = nbformat.reads(archive.read(name).decode(), as_version=4)
            code = [c for c in nb.cells if c.cell_type == "code"]
            assert all(c.execution_count is not None for c in code), f"{name}: every cell ran"
            assert not any(o.output_type == "error" for c in code for o in c.outputs)
            assert gpu_run.PEAK_CELL not in [c.source for c in code], "the memory probe cell is removed"
    assert "python -m zipfile -e" in proc.stdout


def test_a_part_past_its_box_is_stopped_and_the_next_one_runs(tmp_path):
    parts = [gpu_run.Part("sleeper", ["-c", "import time; print('started', flush=True); time.sleep(120)"], box_s=3),
             gpu_run.Part("quick", ["-c", "print('| a | b |')"], box_s=30),
             gpu_run.Part("late", ["-c", "print('never')"], box_s=30)]
    results = gpu_run.run_all(parts[:2], tmp_path / "out", tmp_path / "staging", 60, dict(os.environ), _header())
    assert [r["status"] for r in results] == ["timed out", "ok"]
    assert results[0]["seconds"] < 30 and "started" in results[0]["output"]
    late = gpu_run.run_all(parts[2:], tmp_path / "out2", tmp_path / "staging", 1, dict(os.environ), _header())
    assert late[0]["status"] == "skipped (out of time)"


def test_a_notebook_past_its_box_is_saved_as_far_as_it_ran(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A slow notebook"),
                                         nbformat.v4.new_code_cell("print('first cell ran')"),
                                         nbformat.v4.new_code_cell("import time; time.sleep(300)")])
    source, executed = tmp_path / "slow.ipynb", tmp_path / "executed" / "slow.ipynb"
    nbformat.write(nb, source)
    part = gpu_run.Part("notebook slow", [gpu_run.__file__, "--execute", str(source), "--mode", "quick",
                                          "--to", str(executed)], box_s=25, notebook=str(source))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(tmp_path / "log.txt", "w") as log:
        result = gpu_run.run_part(part, 25, env, log)
    assert result["status"] == "timed out"
    assert gpu_run.notebook_result(result["output"])["error"] == "stopped by the time box"
    saved = nbformat.read(executed, as_version=4)
    assert saved.cells[1].outputs[0]["text"] == "first cell ran\n"
    assert saved.cells[2].execution_count is None or not saved.cells[2].outputs


def _header():
    return {"started": "now", "commit": None, "deadline_s": 60, "mode": "test"}


def test_the_out_folder_never_holds_more_files_than_come_back(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(gpu_run.MAX_OUT_FILES - len(gpu_run.OUT_FILES) + 1):
        (out / f"extra{i}.txt").write_text("x")
    with pytest.raises(RuntimeError, match="more than 8 files"):
        gpu_run.write_outputs(out, tmp_path / "staging", _header(), [])


def _wheel(folder: pathlib.Path, name: str, source: str) -> pathlib.Path:
    """A minimal pure-Python wheel holding one module, in the format pip installs."""
    dist = f"{name}-1.0.dist-info"
    files = {f"{name}.py": source,
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_wheels_install_offline_into_a_folder_the_parts_can_import(tmp_path):
    (tmp_path / "wheels").mkdir()
    _wheel(tmp_path / "wheels", "dfm_wheel_probe", "ANSWER = 42\n")
    gpu_run.install_wheels(tmp_path / "wheels", tmp_path / "site")
    found = subprocess.run([sys.executable, "-c", "import dfm_wheel_probe; print(dfm_wheel_probe.ANSWER)"],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert found.stdout.strip() == "42", found.stderr


def test_an_empty_wheel_folder_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="make gpu-wheels"):
        gpu_run.install_wheels(tmp_path, tmp_path / "site")


@pytest.mark.parametrize("argv, message", [
    ([], "--out DIR is required"),
    (["--out", "{tmp}/o", "--commit", "abc"], "--commit must be 40"),
    (["--out", "{tmp}/o", "--deadline-s", "-1"], "--deadline-s must be"),
    (["--out", "{tmp}/full"], "must be empty or new"),
])
def test_bad_arguments_are_refused_before_any_work(argv, message, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("x")
    with pytest.raises(SystemExit):
        gpu_run.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert message in capsys.readouterr().err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_the_gpu_run_needs_a_gpu(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpu_run.main(["--out", str(tmp_path / "o")])
    assert "--rehearse" in capsys.readouterr().err


def test_parts_are_chosen_by_words_of_their_names(tmp_path):
    parts = gpu_run.plan(True, tmp_path, None)
    chosen = gpu_run.select_parts(parts, "environment, lessons/03")
    assert [p.name for p in chosen] == ["environment", "notebook lessons/03-momentum/cifar.ipynb"]
    with pytest.raises(SystemExit, match="matches none of the parts: environment, kernel tests"):
        gpu_run.select_parts(parts, "nothing")
