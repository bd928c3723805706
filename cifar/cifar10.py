"""CIFAR-10 from its official source: download, verify, parse.

    images, labels = load_cifar10("train")     # uint8 [50000, 3, 32, 32], int64 [50000]
    images, labels = load_cifar10("test")      # uint8 [10000, 3, 32, 32], int64 [10000]

The archive is the "python version" published by its authors at :data:`CIFAR10_URL`. It is
downloaded once into :func:`data_dir` (``~/.cache/diffusion-failure-modes`` unless the environment
variable ``DFM_DATA`` names another folder), checked against :data:`CIFAR10_MD5`, and read straight
from the ``.tar.gz`` on every load, so a cached copy works offline.

Why not ``torchvision.datasets.CIFAR10``: torchvision is built against one exact torch release,
and the torchvision wheel that pip resolves fails to import beside the CPU-only torch wheel used
in CI. Reading the archive ourselves needs only the standard library and numpy.

Safety: the batches are Python pickles. They are unpickled only after the archive's MD5 matched,
and with an unpickler that accepts nothing but the numpy array machinery, so even a tampered file
cannot run code.
"""
from __future__ import annotations

import glob
import hashlib
import http.client
import io
import os
import pathlib
import pickle
import tarfile
import tempfile
import time
import urllib.request

import numpy as np
import torch

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DATA_VARIABLE = "DFM_DATA"
# A temporary file nobody holds a lock on is a leftover once it has not changed for this long (seconds).
STALE_AFTER_S = 10.0
# Where locks are unavailable, a temporary file is a leftover only after this long.
STALE_AFTER_UNLOCKED_S = 6 * 3600.0

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class DatasetError(RuntimeError):
    """A download or an archive that cannot be trusted (wrong checksum, truncated, malformed)."""


def data_dir() -> pathlib.Path:
    """The cache folder: ``$DFM_DATA`` if set, else ``~/.cache/diffusion-failure-modes``."""
    value = os.environ.get(DATA_VARIABLE, "").strip()
    return pathlib.Path(value).expanduser() if value else pathlib.Path.home() / ".cache" / "diffusion-failure-modes"


def lock_for_writing(fd: int) -> None:
    """Hold an exclusive lock on a temporary file while it is written (released when the process dies)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a file system without locks: the age rule alone protects the file
            pass


def remove_stale_partials(folder: str | os.PathLike, pattern: str) -> list[pathlib.Path]:
    """Delete the leftovers of killed writes: files in ``folder`` matching ``pattern`` that no one writes.

    Writers here (checkpoints, downloads) hold an exclusive ``flock`` on their temporary file until
    it is renamed into place; the kernel drops the lock when the writer dies, even by ``kill -9``.
    So a matching file is removed when its lock can be taken and it has not changed for
    :data:`STALE_AFTER_S` seconds (which covers the instant between its creation and its lock);
    where locks are unavailable, only after :data:`STALE_AFTER_UNLOCKED_S`. Never raises: a folder
    that cannot be listed or a file that cannot be removed is left as it is. Returns the removed paths.
    """
    removed = []
    for name in glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern)):
        try:
            with open(name, "rb") as f:
                age = time.time() - os.fstat(f.fileno()).st_mtime
                if fcntl is not None:
                    try:
                        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                        locked = True
                    except BlockingIOError:
                        continue  # a live writer holds it
                    except OSError:
                        locked = False
                else:
                    locked = False
                if age >= (STALE_AFTER_S if locked else STALE_AFTER_UNLOCKED_S):
                    os.unlink(name)
                    removed.append(pathlib.Path(name))
        except OSError:
            continue
    return removed


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download_cifar10(root: str | os.PathLike | None = None, *, url: str | None = None,
                     md5: str | None = None, progress: bool = True) -> pathlib.Path:
    """The path of the verified archive, downloading it first if it is not cached.

    The download goes to a temporary file beside the target and is renamed only after its MD5
    matched, so an interrupted or corrupted download never leaves a file that looks valid; the
    ``*.part`` files of downloads that were killed are removed by the next call
    (:func:`remove_stale_partials`). A cached
    archive whose checksum is wrong is deleted and reported (the next call downloads it again).
    ``url`` and ``md5`` default to the module constants (read at call time, so tests can patch them).
    """
    url = CIFAR10_URL if url is None else url
    md5 = CIFAR10_MD5 if md5 is None else md5
    if not isinstance(url, str) or not url:
        raise TypeError(f"url must be a non-empty string, got {url!r}")
    if not isinstance(md5, str) or len(md5) != 32:
        raise ValueError(f"md5 must be a 32-character hex digest, got {md5!r}")
    folder = pathlib.Path(root) if root is not None else data_dir()
    path = folder / ARCHIVE_NAME
    if path.exists():
        found = md5sum(path)
        if found != md5:
            path.unlink()
            raise DatasetError(f"cached archive {path} has MD5 {found}, expected {md5}: it was corrupt "
                               "or truncated and has been deleted; call again to download it afresh")
        return path
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(folder, glob.escape(ARCHIVE_NAME) + ".*.part")
    fd, tmp_name = tempfile.mkstemp(prefix=ARCHIVE_NAME + ".", suffix=".part", dir=folder)
    lock_for_writing(fd)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress(total, progress, f"downloading {ARCHIVE_NAME}")
            received = 0
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
            bar.close()
        if total is not None and received != total:
            raise DatasetError(f"download of {url} was truncated: {received} of {total} bytes")
        if digest.hexdigest() != md5:
            raise DatasetError(f"download of {url} has MD5 {digest.hexdigest()}, expected {md5}; nothing was kept")
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private
        os.replace(tmp_name, path)
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        _remove(tmp_name)
        raise DatasetError(f"download of {url} failed ({type(error).__name__}: {error}); nothing was kept. "
                           f"Offline? Put {ARCHIVE_NAME} in {folder} (or set {DATA_VARIABLE}).") from error
    except BaseException:
        _remove(tmp_name)
        raise
    return path


def _remove(name):
    if os.path.exists(name):
        os.unlink(name)


def _progress(total, enabled, desc):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not enabled, mininterval=1.0)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, numbers and numpy arrays; refuses every other global."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell bytes
    }

    def find_class(self, module, name):
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise DatasetError(f"refusing to unpickle {module}.{name} from the CIFAR-10 archive")


def _unpickle(raw: bytes) -> dict:
    return _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()


def _field(batch: dict, name: str):
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    raise DatasetError(f"CIFAR-10 batch has no field {name!r} (keys: {list(batch)})")


def read_archive(path: str | os.PathLike, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Parse one split from an archive in the official layout (no checksum check; see :func:`load_cifar10`).

    Returns ``images`` uint8 [N, 3, 32, 32] (channels R, G, B) and ``labels`` int64 [N] in 0..9.
    """
    names = {"train": TRAIN_BATCHES, "test": TEST_BATCHES}[_check_split(split)]
    images, labels = [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for name in names:
                member = tar.extractfile(f"{FOLDER}/{name}")
                if member is None:
                    raise DatasetError(f"{path}: {FOLDER}/{name} is not a regular file")
                batch = _unpickle(member.read())
                data = np.asarray(_field(batch, "data"), dtype=np.uint8)
                if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                    raise DatasetError(f"{path}: {name} data has shape {data.shape}, expected [N, 3072]")
                images.append(data.reshape(-1, 3, 32, 32))  # rows are R plane, G plane, B plane, each row-major
                labels.append(np.asarray(_field(batch, "labels"), dtype=np.int64))
    except (tarfile.TarError, EOFError, OSError, KeyError, pickle.UnpicklingError) as error:
        raise DatasetError(f"{path} is not a readable CIFAR-10 archive ({type(error).__name__}: {error})") from error
    x, y = np.concatenate(images), np.concatenate(labels)
    if len(x) != len(y) or (len(y) and (y.min() < 0 or y.max() > 9)):
        raise DatasetError(f"{path}: {len(x)} images but {len(y)} labels, or labels outside 0..9")
    return torch.from_numpy(x), torch.from_numpy(y)


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    """The class names stored in the archive's ``batches.meta``."""
    with tarfile.open(path, "r:gz") as tar:
        meta = _unpickle(tar.extractfile(f"{FOLDER}/batches.meta").read())
    return tuple(n.decode() if isinstance(n, bytes) else n for n in _field(meta, "label_names"))


def _check_split(split):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def load_cifar10(split: str = "train", root: str | os.PathLike | None = None, *, download: bool = True,
                 progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` as ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    Downloads (``download=True``) or expects the archive in ``root`` (default :func:`data_dir`),
    verifies its MD5 and parses it. N is 50,000 for ``"train"`` and 10,000 for ``"test"``.
    """
    _check_split(split)
    folder = pathlib.Path(root) if root is not None else data_dir()
    if not download and not (folder / ARCHIVE_NAME).exists():
        raise FileNotFoundError(f"{folder / ARCHIVE_NAME} is missing; call with download=True or set {DATA_VARIABLE}")
    path = download_cifar10(folder, progress=progress)
    return read_archive(path, split)
