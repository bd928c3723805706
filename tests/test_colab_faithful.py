"""A notebook runs the way it does in Colab: the package installed non-editably, nothing of the checkout on the path.

Colab runs a notebook with its own preinstalled torch, numpy and matplotlib, and our set-up cell adds
only this package (`pip install git+<repository>`). Here: a fresh virtual environment outside the
repository that sees the test environment's third-party packages (standing in for Colab's
preinstalled ones), a non-editable install of this checkout into it, and a toy notebook copied into
an empty folder and run there in quick mode.
"""
import os
import pathlib
import shutil
import site
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ["lessons/00-setup/toy2d.ipynb", "lessons/03-momentum/toy2d.ipynb"]


@pytest.fixture(scope="module")
def colab_like_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("colab") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # Third-party packages only: a .pth line adds the folder but does not run its .pth files, so
    # the checkout's editable install stays invisible.
    (pathlib.Path(purelib) / "preinstalled.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # Build the wheel with the test environment's setuptools (no download), then install it plainly.
    wheels = venv.parent / "wheels"
    quiet = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, env=quiet, capture_output=True)
    wheel, = wheels.glob("diffusion_failure_modes-*.whl")
    # --ignore-installed: the editable install of the test environment is visible through the .pth
    # line above as "already installed"; install the wheel into this environment regardless.
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", str(wheel)],
                   check=True, env=quiet)
    return python


def clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "DFM_MODE": "quick"}


def test_the_package_comes_from_the_install_not_the_checkout(colab_like_python, tmp_path):
    out = subprocess.run([str(colab_like_python), "-c", "import toy2d, minimal, cifar, kernels; print(toy2d.__file__)"],
                         cwd=tmp_path, env=clean_env(), check=True, capture_output=True, text=True).stdout
    assert str(ROOT) not in out and "site-packages" in out, out


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_alone_in_an_empty_folder(colab_like_python, tmp_path, notebook):
    source = ROOT / notebook
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    result = subprocess.run([str(colab_like_python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                             "--nbval-current-env", copy.name], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
