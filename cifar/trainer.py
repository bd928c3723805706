"""One trainer for every lesson: the lesson brings the loss, the trainer does the rest.

    def loss_fn(model, batch, generator):          # batch: the tensors of `data`, indexed, on the device
        x0 = to_model_space(batch[0])
        ...                                        # draw noise with `generator`, return a scalar
    result = train(model, (images, labels), loss_fn, steps=2000, batch_size=128, lr=2e-4,
                   checkpoint="runs/shapes.pt")
    result.ema                                     # the EMA weights, ready to sample from

What it does at each step: picks a batch (uniformly with replacement), calls ``loss_fn`` under
autocast on CUDA (bf16 where the GPU has it natively, fp16 with a gradient scaler on older GPUs such
as the T4: :func:`choose_precision`), clips the gradient norm, takes an AdamW step at a learning rate warmed up
linearly over ``warmup`` steps, and updates the EMA weights.

Randomness is a function of (seed, step, rank): the batch indices and the generator handed to
``loss_fn`` are re-seeded from it at every step. So a run resumed from a checkpoint draws exactly
what the uninterrupted run drew, and every rank of a multi-GPU run picks the same global batch and
keeps its own slice. The global torch RNG (dropout) is saved in checkpoints too (rank 0's), and
the caller's global RNG state is put back on return, so a cell after training draws the same
numbers whether the run was trained or loaded from the cache.

Checkpoints hold model, EMA, optimizer, step, loss history and RNG state. They are written every
``checkpoint_every`` steps and at the end, to a temporary file then renamed over the old one (a
crash mid-write leaves the previous checkpoint intact; the next run removes the temporary file a
killed writer left), and read with ``weights_only=True`` after their CRC-32s are checked. The
checkpoint folder is checked for writing before the first step, not at the first checkpoint. With
``resume=True`` (the default) an existing checkpoint is continued; a finished one is returned at
once, which is how :func:`train_recipe` caches whole runs by recipe.

A checkpoint only ever continues or returns *the same run*. Each one stores a fingerprint: the
recipe, a sha256 of the training tensors' bytes (:func:`data_fingerprint`), the loss's identity
(:func:`loss_identity`: its qualified name, source and the plain values it reads, or a ``loss_id``
the caller gives) and the settings that change the result (batch size, learning rate, warm-up,
weight decay, clipping, EMA decay, seed, augmentation). Resuming or returning a checkpoint whose
fingerprint differs is refused with :class:`CheckpointError`, which names the parts that differ.
How a run is computed (device, precision, compile, number of processes) is not part of it.

Several GPUs: launch the same script with ``torchrun --nproc_per_node=K script.py``; the trainer
sees the environment, joins the process group (NCCL on CUDA, gloo on CPU), wraps the model in
DistributedDataParallel and splits each global batch of ``batch_size`` into K slices. Rank 0 alone
writes checkpoints and shows progress. Nothing changes in the calling code::

    # train_shapes.py, run as: torchrun --nproc_per_node=4 train_shapes.py
    from cifar.recipes import get_recipe
    from cifar.trainer import train_recipe
    from my_lesson import ddpm_loss
    run = train_recipe(get_recipe("01-hallucination", "full"), ddpm_loss)

``compile=True`` runs the model through ``torch.compile``; when compilation or a compiled step
raises (inductor has crashed on some GPU/torch pairs when a graph recompiled), the trainer warns,
drops back to the eager model and redoes the step, so a compiler failure never ends a lesson.
The batch size never changes during training, so the compiled graph is never recompiled, and the
models returned are the eager ones. (An error that corrupts the CUDA context itself cannot be
recovered from inside the process.)
"""
from __future__ import annotations

import atexit
import copy
import functools
import glob
import hashlib
import inspect
import json
import math
import numbers
import os
import pathlib
import random
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

CHECKPOINT_FORMAT = "dfm-cifar-checkpoint/1"
AMP_MODES = ("auto", "bf16", "fp16", "fp32")
_MASK64 = (1 << 63) - 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read (corrupt, truncated, of another format or another model)."""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``model``: the trained weights (unwrapped, eval mode); ``ema``: their exponential moving
    average (eval mode, what lessons sample from); ``losses``: the loss at every step since step 0;
    ``step``: steps done; ``seconds``: training time in this call (0 when loaded); ``from_cache``:
    True when nothing was trained; ``path``: the checkpoint file, if any.
    """

    model: nn.Module
    ema: nn.Module
    losses: list[float]
    step: int
    seconds: float = 0.0
    from_cache: bool = False
    path: pathlib.Path | None = None
    recipe: dict | None = None
    items_per_second: float = field(default=float("nan"))


# ----------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, rename.

    The file is torch's zip format with a CRC-32 over every member (:func:`load_checkpoint` checks them).
    The temporary file is locked while written; the next run removes one a killed writer left.
    """
    from .cifar10 import lock_for_writing

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    lock_for_writing(fd)  # a later run removes the file only once this process is gone
    try:
        with os.fdopen(fd, "wb") as f:
            _save_with_crc(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _save_with_crc(state: dict, f) -> None:
    get = getattr(torch.serialization, "get_crc32_options", None)
    if get is None or get():
        torch.save(state, f)
        return
    torch.serialization.set_crc32_options(True)  # someone turned CRCs off globally: on for this write only
    try:
        torch.save(state, f)
    finally:
        torch.serialization.set_crc32_options(False)


def _check_crcs(path: pathlib.Path) -> None:
    """Raise :class:`CheckpointError` unless every member of the zip at ``path`` matches its CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every member, compares its CRC-32 and its local header
    except Exception as error:  # not a zip, truncated, inconsistent headers, ...
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error}); "
                              "delete it to start over") from error
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: member {bad!r} fails its CRC-32 check (a changed "
                              "byte on disk); delete it to start over")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`train` (``weights_only=True``); :class:`CheckpointError` if unreadable.

    Every byte of the payload is checked first against the CRC-32 the zip stores with it, so a file
    with a flipped bit is refused instead of loading changed weights.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    _check_crcs(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, bad pickle, unsafe global, ...
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); delete it to start over") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this trainer (format {CHECKPOINT_FORMAT!r})")
    return state


def _prepare_folder(path: pathlib.Path) -> None:
    """Fail now if checkpoints cannot be written beside ``path``; remove its killed writes' temporary files."""
    from .cifar10 import remove_stale_partials

    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OSError(f"the checkpoint folder {folder} is not writable ({type(error).__name__}: {error}); nothing "
                      "was trained. Choose another checkpoint path or cache_dir (or set DFM_DATA)") from error
    remove_stale_partials(folder, glob.escape(path.name) + ".*.tmp")


# ---------------------------------------------------------------------------------------- precision
def choose_precision(amp: str, device_type: str, capability: tuple[int, int] | None = None) -> str:
    """The autocast precision of a run: "bf16", "fp16" (with a gradient scaler) or "fp32".

    ``amp`` "auto" picks by the device: on CUDA, bf16 when the GPU computes it natively (compute
    capability 8.0 and up: A100, H100, RTX 30xx on), else fp16 with a gradient scaler (the T4 is
    7.5, the V100 7.0: they would emulate bf16, slowly); fp32 on any other device. An explicit
    "bf16", "fp16" or "fp32" is returned as it is. ``capability`` is ``(major, minor)``, required for
    "auto" on CUDA (``torch.cuda.get_device_capability(device)``). A pure function: no GPU needed.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp != "auto":
        return amp
    if device_type != "cuda":
        return "fp32"
    if not (isinstance(capability, tuple) and len(capability) == 2 and all(isinstance(c, int) for c in capability)):
        raise ValueError(f"capability must be a (major, minor) tuple of ints on CUDA, got {capability!r}")
    return "bf16" if capability >= (8, 0) else "fp16"


# ------------------------------------------------------------------------------------------ helpers
def _stream_seed(seed: int, step: int, rank: int, stream: int) -> int:
    """A 63-bit seed from (seed, step, rank, stream), well mixed (splitmix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + rank * 0x94D049BB133111EB + stream) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK64


def _distributed(device):
    """(rank, world, device): joins the process group a launcher (torchrun) describes in the environment."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        atexit.register(dist.destroy_process_group)  # we joined it, we leave it
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1, device
    rank, world = dist.get_rank(), dist.get_world_size()
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
        torch.cuda.set_device(device)
    return rank, world, device


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    e_params, m_params = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(e_params, m_params, 1.0 - decay)  # e <- decay * e + (1 - decay) * m
    for e, m in zip(ema.buffers(), model.buffers()):
        e.copy_(m)


def _check_data(data) -> tuple[torch.Tensor, ...]:
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data) if isinstance(data, (tuple, list)) else None
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError("data must be a tensor or a tuple of tensors sharing their first dimension")
    if len({len(t) for t in tensors}) != 1 or len(tensors[0]) == 0:
        raise ValueError(f"data tensors must be non-empty with equal lengths, got {[len(t) for t in tensors]}")
    return tensors


# -------------------------------------------------------------------------------------- fingerprints
def data_fingerprint(data: torch.Tensor | Sequence[torch.Tensor]) -> str:
    """sha256 (64 hex digits) of the training tensors: their dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for t in _check_data(data):
        _update_with_tensor(digest, t)
    return digest.hexdigest()


def _update_with_tensor(digest, t: torch.Tensor) -> None:
    digest.update(f"{t.dtype}{tuple(t.shape)};".encode())
    flat = t.detach().reshape(-1).cpu().contiguous()
    digest.update(memoryview(flat.view(torch.uint8).numpy()))


def _plain_value(value, depth: int = 0) -> str | None:
    """A stable text for a value a loss may read (number, string, tensor, array, tuple); None for others.

    Lists and dicts are left out: a loss that appends to a list (a call counter) stays the same loss.
    """
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if isinstance(value, torch.Tensor):
        digest = hashlib.sha256()
        _update_with_tensor(digest, value)
        return f"tensor:{digest.hexdigest()}"
    if type(value).__module__ == "numpy" and hasattr(value, "tobytes"):
        return f"array:{value.dtype}{getattr(value, 'shape', ())}:{hashlib.sha256(value.tobytes()).hexdigest()}"
    if isinstance(value, tuple) and depth < 2:
        items = [_plain_value(v, depth + 1) for v in value]
        return None if None in items else f"tuple({','.join(items)})"
    return None


def loss_identity(loss_fn: Callable) -> str:
    """What identifies a loss for the run cache: its module, qualified name and source, and the values it reads.

    The values are those of the closure cells and of the global names the function's code reads,
    when they are plain (numbers, strings, tensors, arrays, tuples of these): a schedule tensor in a
    notebook's globals is part of the loss. Functions it calls enter by name only, not by source; a
    ``functools.partial`` enters with its arguments. When that is not enough (the loss depends on
    other state), give ``train``/``train_recipe`` a ``loss_id`` string instead.
    """
    if isinstance(loss_fn, functools.partial):
        args = _plain_value(tuple(loss_fn.args)) or repr(loss_fn.args)
        keywords = _plain_value(tuple(sorted(loss_fn.keywords.items()))) or repr(sorted(loss_fn.keywords))
        return f"partial({loss_identity(loss_fn.func)}, {args}, {keywords})"
    function = getattr(loss_fn, "__func__", loss_fn)  # a bound method's function
    target = function if inspect.isfunction(function) else type(loss_fn)
    parts = [f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"]
    try:
        parts.append(inspect.getsource(target))
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if code is not None:  # no source file (exec'd code): the byte code and its constants
            parts.append(hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest())
    if inspect.isfunction(function):
        cells = zip(function.__code__.co_freevars, function.__closure__ or ())
        values = [(name, cell.cell_contents) for name, cell in cells if _has_contents(cell)]
        values += [(name, function.__globals__[name]) for name in function.__code__.co_names
                   if name in function.__globals__]
    else:
        values = sorted(vars(loss_fn).items()) if hasattr(loss_fn, "__dict__") else []
    for name, value in values:
        text = _plain_value(value)
        if text is not None:
            parts.append(f"{name}={text}")
    return "\n".join(parts)


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


def _fingerprint(recipe: dict | None, data_hash: str, loss_text: str, hparams: dict) -> dict:
    """The fingerprint stored in a checkpoint: everything that makes two runs the same run."""
    first_line = loss_text.split("\n", 1)[0]
    return {"recipe": recipe, "data": data_hash, "loss": hashlib.sha256(loss_text.encode()).hexdigest(),
            "loss_name": first_line, "hparams": hparams}


def check_fingerprint(state: dict, expected: dict, path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint ``state`` holds the run ``expected`` describes."""
    found = state.get("fingerprint")
    if not isinstance(found, dict):
        raise CheckpointError(f"{path} carries no fingerprint (written by an older trainer), so it cannot be "
                              "shown to be this run; delete it (or pass retrain=True / resume=False) to train afresh")
    differ = []
    for key, what in (("recipe", "the recipe"), ("data", "the training data (sha256 of the tensors)"),
                      ("loss", "the loss function")):
        if found.get(key) != expected[key]:
            shown = (f" ({found.get('loss_name')!r} vs {expected['loss_name']!r})" if key == "loss" else
                     f" ({str(found.get(key))[:16]}... vs {str(expected[key])[:16]}...)" if key == "data" else "")
            differ.append(what + shown)
    old, new = found.get("hparams") or {}, expected["hparams"]
    differ += [f"{k} ({old.get(k)!r} in the checkpoint, {new.get(k)!r} now)" for k in new if old.get(k) != new.get(k)]
    if differ:
        raise CheckpointError(f"{path} holds another run: it differs in {'; '.join(differ)}. Refusing to resume or "
                              "return it; delete it, use another checkpoint path, or pass retrain=True "
                              "(train_recipe) / resume=False (train) to overwrite it")


# ------------------------------------------------------------------------------------------- train
def train(model: nn.Module, data: torch.Tensor | Sequence[torch.Tensor],
          loss_fn: Callable[[nn.Module, tuple, torch.Generator], torch.Tensor], *, steps: int, batch_size: int,
          lr: float = 2e-4, warmup: int = 100, weight_decay: float = 0.0, grad_clip: float | None = 1.0,
          ema_decay: float = 0.999, seed: int = 0, checkpoint: str | os.PathLike | None = None,
          checkpoint_every: int = 500, resume: bool = True, device: str | torch.device | None = None,
          amp: str = "auto", compile: bool = False, augment: str | None = None, progress: bool = True,
          recipe: dict | None = None, log_every: int = 25, loss_id: str | None = None) -> TrainResult:
    """Train ``model`` for ``steps`` steps of ``loss_fn`` on batches of ``data``; see the module docstring.

    ``data``: a tensor or tuple of tensors [N, ...] (images uint8 [N, 3, 32, 32], labels [N], tokens
    [N, L], ...); each batch is the same tuple indexed by ``batch_size`` random rows, on the device.
    ``loss_fn(model, batch, generator) -> scalar``; ``generator`` lives on the training device.
    ``batch_size`` is global (split over ranks). ``amp``: "auto" (see :func:`choose_precision`: bf16 on
    GPUs of compute capability 8.0 and up, fp16 with a gradient scaler below, fp32 elsewhere), "bf16",
    "fp16" (always with a gradient scaler) or "fp32".
    ``augment``: None or "hflip" (random horizontal flips of the first tensor; not for Simple Shapes,
    whose thirds are typed). ``recipe`` is stored in the checkpoint and is part of its fingerprint.
    ``loss_id``: a string that identifies the loss in the fingerprint instead of :func:`loss_identity`.

    Resuming a checkpoint written by another run (other recipe, data, loss or hyper-parameters;
    ``steps`` may grow) raises :class:`CheckpointError` before any training: nothing is overwritten.
    """
    tensors = _check_data(data)
    for name, value in (("steps", steps), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every),
                        ("log_every", log_every)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable as loss_fn(model, batch, generator)")
    if loss_id is not None and not isinstance(loss_id, str):
        raise TypeError(f"loss_id must be a string or None, got {type(loss_id).__name__}")
    for name, value, ok, expected in (("lr", lr, lambda v: v > 0, "a finite number > 0"),
                                      ("weight_decay", weight_decay, lambda v: v >= 0, "a finite number >= 0"),
                                      ("grad_clip", grad_clip, lambda v: v > 0, "None or a finite number > 0"),
                                      ("ema_decay", ema_decay, lambda v: 0 <= v < 1, "a number in [0, 1)")):
        if value is None and name == "grad_clip":
            continue
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
        if not (math.isfinite(value) and ok(value)):
            raise ValueError(f"{name} must be {expected}, got {value!r}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if augment not in (None, "hflip"):
        raise ValueError(f"augment must be None or 'hflip', got {augment!r}")
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rank, world, device = _distributed(device)
    if batch_size % world:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world})")
    local = batch_size // world
    if checkpoint is not None and rank == 0:
        _prepare_folder(pathlib.Path(checkpoint))
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    precision = choose_precision(amp, device.type, capability)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    cuda = device.type == "cuda"

    caller_rng = _rng_state()  # restored on return: training leaves the caller's global RNG as it found it
    model = model.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)  # only 4-D weights change layout
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999),
                                  **({"fused": True} if cuda else {}))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    step, losses = 0, []
    path = pathlib.Path(checkpoint) if checkpoint is not None else None
    fingerprint = None
    if path is not None:
        hparams = dict(batch_size=batch_size, lr=float(lr), warmup=warmup, weight_decay=float(weight_decay),
                       grad_clip=None if grad_clip is None else float(grad_clip), ema_decay=float(ema_decay),
                       seed=seed, augment=augment)
        fingerprint = _fingerprint(recipe, data_fingerprint(tensors), loss_id or loss_identity(loss_fn), hparams)
    if path is not None and resume and path.exists():
        state = load_checkpoint(path)  # on the CPU: RNG states must stay there; load_state_dict moves the rest
        check_fingerprint(state, fingerprint, path)
        if state["step"] > steps:
            raise CheckpointError(f"{path} is at step {state['step']}, beyond the {steps} steps asked for")
        try:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(f"{path} does not fit this model or optimizer: {error}") from error
        step, losses = int(state["step"]), list(state["losses"])
        _set_rng_state(state["rng"])
    else:
        torch.manual_seed(_stream_seed(seed, 0, rank, 3))

    net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None) if world > 1 else model
    runner = net
    if compile and step < steps:
        try:
            runner = torch.compile(net)
        except Exception as error:  # e.g. no compiler toolchain
            warnings.warn(f"torch.compile failed ({type(error).__name__}: {error}); training eagerly")
    data_device = device if cuda and sum(t.numel() * t.element_size() for t in tensors) < 2 << 30 else torch.device("cpu")
    tensors = tuple(t.to(data_device) for t in tensors)
    n = len(tensors[0])

    def state_dict() -> dict:
        return {"format": CHECKPOINT_FORMAT, "step": step, "model": model.state_dict(), "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(), "losses": list(losses), "rng": _rng_state(),
                "scaler": scaler.state_dict(), "precision": precision,
                "recipe": recipe, "world_size": world, "batch_size": batch_size, "fingerprint": fingerprint}

    def one_step(fn, batch, generator):
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            loss = loss_fn(fn, batch, generator)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError(f"loss_fn must return a scalar tensor, got {type(loss).__name__} "
                            f"{tuple(getattr(loss, 'shape', ()))}")
        scaler.scale(loss).backward()  # the identity unless fp16
        return loss

    from tqdm import tqdm

    bar = tqdm(total=steps, initial=step, disable=not progress or rank != 0, mininterval=2.0, unit="step",
               dynamic_ncols=True)
    pending: list[torch.Tensor] = []
    start_step, start = step, time.perf_counter()
    model.train()
    while step < steps:
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) if warmup else lr
        g_data = torch.Generator().manual_seed(_stream_seed(seed, step, 0, 1))
        idx = torch.randint(n, (batch_size,), generator=g_data)
        flip = torch.rand(batch_size, generator=g_data) < 0.5 if augment == "hflip" else None
        mine = slice(rank * local, (rank + 1) * local)
        batch = [t[idx[mine].to(data_device)].to(device, non_blocking=True) for t in tensors]
        if flip is not None:
            batch[0] = torch.where(flip[mine].to(device).view(-1, *[1] * (batch[0].ndim - 1)),
                                   batch[0].flip(-1), batch[0])
        if cuda and batch[0].ndim == 4:
            batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
        batch = tuple(batch)
        generator = torch.Generator(device=device).manual_seed(_stream_seed(seed, step, rank, 2))
        try:
            loss = one_step(runner, batch, generator)
        except Exception as error:
            if runner is net:
                raise
            warnings.warn(f"compiled step failed ({type(error).__name__}: {str(error)[:300]}); "
                          "falling back to the eager model")
            runner = net
            optimizer.zero_grad(set_to_none=True)
            generator = torch.Generator(device=device).manual_seed(_stream_seed(seed, step, rank, 2))
            loss = one_step(runner, batch, generator)
        if grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)  # skips the step when fp16 gradients overflowed
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        _update_ema(ema, model, min(ema_decay, (1 + step) / (10 + step)))
        pending.append(loss.detach().float())
        step += 1
        if step % log_every == 0 or step == steps or (path is not None and step % checkpoint_every == 0):
            losses.extend(torch.stack(pending).tolist())
            pending.clear()
            done = step - start_step
            rate = done * batch_size / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", items_per_s=f"{rate:,.0f}", refresh=False)
        bar.update(1)
        if path is not None and rank == 0 and (step % checkpoint_every == 0 or step == steps):
            save_checkpoint(path, state_dict())
    bar.close()
    seconds = time.perf_counter() - start
    if path is not None and rank == 0 and step == start_step and not path.exists():
        save_checkpoint(path, state_dict())
    if world > 1:
        dist.barrier()
    _set_rng_state(caller_rng)
    model.eval()
    done = step - start_step
    return TrainResult(model=model, ema=ema, losses=losses, step=step, seconds=seconds if done else 0.0,
                       from_cache=done == 0, path=path, recipe=recipe,
                       items_per_second=done * batch_size / seconds if done else float("nan"))


# ------------------------------------------------------------------------------------------ recipes
def recipe_key(recipe: dict, loss_fn: Callable | None = None, *, data_hash: str | None = None,
               loss_id: str | None = None) -> str:
    """A 12-hex-digit key of a recipe, the loss (:func:`loss_identity` or ``loss_id``) and the data's sha256."""
    try:
        text = json.dumps(recipe, sort_keys=True)
    except TypeError as error:
        raise TypeError(f"recipe must hold only JSON types (dict, list, str, number, bool, None): {error}") from error
    if loss_id is not None:
        text += "\nloss:" + loss_id
    elif loss_fn is not None:
        text += "\nloss:" + loss_identity(loss_fn)
    if data_hash is not None:
        text += "\ndata:" + data_hash
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_path(recipe: dict, loss_fn: Callable | None = None, cache_dir: str | os.PathLike | None = None, *,
             data: Sequence[torch.Tensor] | None = None, loss_id: str | None = None) -> pathlib.Path:
    """Where :func:`train_recipe` keeps the run of ``recipe``: ``<cache>/runs/<lesson>-<mode>-<key>.pt``.

    The key covers the recipe, the loss and, when ``data`` is given, the data's sha256.
    """
    from .cifar10 import data_dir

    folder = pathlib.Path(cache_dir) if cache_dir is not None else data_dir() / "runs"
    data_hash = data_fingerprint(data) if data is not None else None
    key = recipe_key(recipe, loss_fn, data_hash=data_hash, loss_id=loss_id)
    return folder / f"{recipe.get('lesson', 'run')}-{recipe.get('mode', 'custom')}-{key}.pt"


def load_run(path: str | os.PathLike, model: nn.Module) -> TrainResult:
    """A finished run from its checkpoint: ``model`` gets the weights, a copy of it the EMA weights."""
    state = load_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
        ema = copy.deepcopy(model)
        ema.load_state_dict(state["ema"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"{path} does not fit this model: {error}") from error
    return TrainResult(model=model.eval(), ema=ema.eval().requires_grad_(False), losses=list(state["losses"]),
                       step=int(state["step"]), from_cache=True, path=pathlib.Path(path), recipe=state.get("recipe"))


def _initial_model(recipe: dict) -> nn.Module:
    """The recipe's untrained net; its weights depend on the recipe's seed only, the caller's RNG is untouched."""
    from .recipes import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["train"].get("seed", 0))
        return build_model(recipe["model"])


def train_recipe(recipe: dict, loss_fn: Callable, *, cache_dir: str | os.PathLike | None = None,
                 retrain: bool = False, device: str | torch.device | None = None, compile: bool | None = None,
                 progress: bool = True, data: Sequence[torch.Tensor] | None = None,
                 loss_id: str | None = None) -> TrainResult:
    """Train the model a recipe describes with ``loss_fn``, or load it if this very run already ran.

    The run lives at :func:`run_path`, keyed by the recipe, the loss (:func:`loss_identity`, or
    ``loss_id`` when given) and the sha256 of the training tensors: other data or another loss is
    another run, trained afresh. The checkpoint stores the full fingerprint, checked on load: a file
    at the key that holds another run (copied there, or of another hyper-parameter set) is refused
    with :class:`CheckpointError`, never returned; ``retrain=True`` deletes it and trains anew. An
    interrupted run resumes from its last checkpoint, a finished one loads without training.
    ``compile`` defaults to the recipe's ``train.compile`` on CUDA and to False on the CPU.
    ``data`` replaces the recipe's dataset (e.g. tensors the notebook already holds); without it the
    recipe's dataset is loaded (also for a cached run: its bytes are part of the key).
    Moves the returned models to ``device`` (default: CUDA when present).
    """
    from .recipes import check_recipe

    check_recipe(recipe)
    if data is None:
        from .data import load_dataset

        data = load_dataset(recipe["data"])
    data = _check_data(data)
    path = run_path(recipe, loss_fn, cache_dir, data=data, loss_id=loss_id)
    cfg = recipe["train"]
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if retrain and path.exists():
        path.unlink()
    compile = bool(cfg.get("compile", False)) and device.type == "cuda" if compile is None else compile
    train_args = {k: cfg[k] for k in ("lr", "warmup", "weight_decay", "grad_clip", "ema_decay", "seed",
                                      "checkpoint_every", "augment") if k in cfg}
    return train(_initial_model(recipe), data, loss_fn, steps=cfg["steps"], batch_size=cfg["batch_size"],
                 checkpoint=path, resume=True, device=device, compile=compile, progress=progress, recipe=recipe,
                 loss_id=loss_id, **train_args)
