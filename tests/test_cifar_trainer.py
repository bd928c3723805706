"""cifar trainer: exact resume, checkpoint safety, the compile fallback, the recipe cache, and DDP over gloo."""
import math
import os
import pathlib
import time

import pytest
import torch
import torch.multiprocessing as mp

from cifar import trainer as trainer_module
from cifar.data import load_dataset, to_model_space
from cifar.recipes import LESSONS, build_model, check_recipe, get_recipe
from cifar.shapes import make_shapes
from cifar.trainer import CheckpointError, load_checkpoint, save_checkpoint, train, train_recipe
from cifar.unet import make_unet


def _data(n=16):
    images, present = make_shapes(n, seed=0)
    return images[:, :, ::2, ::2].contiguous(), present.long().sum(1) - 1  # 16x16 keeps the tests fast


def _net(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return make_unet("tiny", channels=8, num_classes=3, dropout=dropout)


def noisy_loss(model, batch, generator):
    """A DDPM-like loss: its noise, its times and the net's dropout all draw random numbers."""
    x0, y = to_model_space(batch[0]), batch[1]
    t = torch.rand(len(x0), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    a = torch.cos(t * torch.pi / 2).view(-1, 1, 1, 1)
    return (model(a * x0 + (1 - a * a).sqrt() * eps, t, y) - eps).pow(2).mean()


def deterministic_loss(model, batch, generator):
    x0 = to_model_space(batch[0])
    return (model(0.5 * x0, torch.full((len(x0),), 0.3)) - x0).pow(2).mean()


ARGS = dict(batch_size=8, lr=1e-3, warmup=3, ema_decay=0.9, seed=7, progress=False)


def _assert_same_state(a: dict, b: dict):
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"
    for (ka, sa), (kb, sb) in zip(a["optimizer"]["state"].items(), b["optimizer"]["state"].items()):
        assert ka == kb and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["step"] == b["step"] and a["losses"] == b["losses"]


def test_resume_gives_identical_weights(tmp_path):
    data = _data()
    full = train(_net(), data, noisy_loss, steps=8, checkpoint=tmp_path / "full.pt", checkpoint_every=100, **ARGS)
    first = train(_net(), data, noisy_loss, steps=4, checkpoint=tmp_path / "split.pt", checkpoint_every=100, **ARGS)
    assert first.step == 4 and len(first.losses) == 4
    torch.manual_seed(123)  # a new session: other global RNG, other initial weights
    resumed = train(_net(seed=99), data, noisy_loss, steps=8, checkpoint=tmp_path / "split.pt", **ARGS)
    assert resumed.step == 8 and not resumed.from_cache
    _assert_same_state(load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "split.pt"))
    assert full.losses == resumed.losses
    # a finished checkpoint is returned without training
    again = train(_net(seed=5), data, noisy_loss, steps=8, checkpoint=tmp_path / "full.pt", **ARGS)
    assert again.from_cache and all(torch.equal(p, q) for p, q in zip(again.ema.parameters(), full.ema.parameters()))
    # without resume the two halves would differ: the check above can fail
    fresh = train(_net(seed=99), data, noisy_loss, steps=4, **ARGS)
    assert not all(torch.equal(p, q) for p, q in zip(fresh.model.parameters(), first.model.parameters()))


def test_corrupt_checkpoint_raises_and_previous_survives(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    train(_net(), _data(), noisy_loss, steps=2, checkpoint=path, **ARGS)
    good = path.read_bytes()
    before = load_checkpoint(path)

    def crash_mid_write(obj, f, *args, **kwargs):
        f.write(good[: len(good) // 3])
        raise OSError("disk full")

    monkeypatch.setattr(trainer_module.torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, before)
    monkeypatch.undo()
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["run.pt"]  # old one intact, no temp file

    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        train(_net(), _data(), noisy_loss, steps=4, checkpoint=path, **ARGS)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    torch.save({"format": "something else"}, path)
    with pytest.raises(CheckpointError, match="not a checkpoint of this trainer"):
        load_checkpoint(path)
    path.write_bytes(good)
    with pytest.raises(CheckpointError, match="does not fit"):
        train(make_unet("tiny", channels=16), _data(), noisy_loss, steps=4, checkpoint=path, **ARGS)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    class Broken(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            raise RuntimeError("CUDA error: misaligned address")

    monkeypatch.setattr(trainer_module.torch, "compile", lambda module, **kw: Broken(module))
    with pytest.warns(UserWarning, match="falling back to the eager model"):
        compiled = train(_net(), _data(), noisy_loss, steps=3, compile=True, **ARGS)
    eager = train(_net(), _data(), noisy_loss, steps=3, **ARGS)
    assert compiled.losses == eager.losses


def test_train_recipe_caches_by_recipe(tmp_path):
    recipe = get_recipe("03-momentum", "quick")
    recipe["data"]["n"] = 16
    recipe["train"].update(steps=3, batch_size=4)
    recipe["model"]["channels"] = 8
    calls = []

    def loss(model, batch, generator):
        calls.append(1)
        return noisy_loss(model, batch, generator)

    torch.manual_seed(11)
    first = train_recipe(recipe, loss, cache_dir=tmp_path, progress=False)
    after_training = torch.rand(3)
    assert not first.from_cache and len(calls) == 3 and first.path.parent == tmp_path
    torch.manual_seed(11)
    second = train_recipe(recipe, loss, cache_dir=tmp_path, progress=False)
    assert second.from_cache and len(calls) == 3
    assert torch.equal(torch.rand(3), after_training)  # the caller's RNG stream is the same either way
    assert all(torch.equal(p, q) for p, q in zip(first.ema.parameters(), second.ema.parameters()))
    torch.manual_seed(12345)  # another session: same recipe, same weights
    elsewhere = train_recipe(recipe, loss, cache_dir=tmp_path / "elsewhere", progress=False)
    assert all(torch.equal(p, q) for p, q in zip(first.ema.parameters(), elsewhere.ema.parameters()))
    recipe["train"]["lr"] = 1e-4  # another recipe, another run
    third = train_recipe(recipe, loss, cache_dir=tmp_path, progress=False)
    assert not third.from_cache and third.path != first.path


def test_every_recipe_is_consistent():
    for lesson in LESSONS:
        for mode in ("quick", "full"):
            recipe = get_recipe(lesson, mode)
            check_recipe(recipe)
            assert recipe["lesson"] == lesson and recipe["mode"] == mode
            if mode == "quick":
                assert recipe["data"]["name"] == "shapes"  # no download in quick mode
                assert build_model(recipe["model"]) is not None
    with pytest.raises(ValueError, match="lesson"):
        get_recipe("05-nothing", "quick")
    bad = get_recipe("04-masked-fhs", "quick")
    bad["model"]["length"] = 1024
    with pytest.raises(ValueError, match="length"):
        check_recipe(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        train(_net(), _data(), noisy_loss, steps=0, batch_size=4)
    with pytest.raises(TypeError, match="data"):
        train(_net(), [1, 2], noisy_loss, steps=1, batch_size=4)
    with pytest.raises(ValueError, match="amp"):
        train(_net(), _data(), noisy_loss, steps=1, batch_size=4, amp="fp8")
    with pytest.raises(TypeError, match="scalar"):
        train(_net(), _data(), lambda m, b, g: m(to_model_space(b[0]), 0.1, b[1]), steps=1, batch_size=4,
              progress=False)


@pytest.mark.parametrize("bad, error", [
    (dict(grad_clip=0.0), ValueError), (dict(grad_clip=-1.0), ValueError), (dict(grad_clip=float("nan")), ValueError),
    (dict(lr=float("inf")), ValueError), (dict(lr=float("nan")), ValueError), (dict(lr=0.0), ValueError),
    (dict(lr="1e-3"), TypeError), (dict(lr=True), TypeError), (dict(weight_decay=float("inf")), ValueError),
    (dict(ema_decay=float("nan")), ValueError), (dict(seed=-1), ValueError),
])
def test_bad_hyper_parameters_fail_before_any_work(bad, error, tmp_path):
    calls = []

    def loss(model, batch, generator):
        calls.append(1)
        return noisy_loss(model, batch, generator)

    name = next(iter(bad))
    with pytest.raises(error, match=name):
        train(_net(), _data(), loss, steps=2, **{**ARGS, **bad}, checkpoint=tmp_path / "run.pt")
    assert calls == [] and not (tmp_path / "run.pt").exists()


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def test_a_flipped_bit_is_refused_or_harmless(tmp_path):
    path = tmp_path / "run.pt"
    train(make_unet("tiny", channels=4, num_classes=3), _data(4), noisy_loss,
          steps=1, checkpoint=path, **{**ARGS, "batch_size": 2})
    good = path.read_bytes()
    original = load_checkpoint(path)
    rng = torch.Generator().manual_seed(0)
    positions = torch.randint(len(good) * 8, (100,), generator=rng).tolist()
    loaded_changed = []
    for bit in positions:
        flipped = bytearray(good)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(flipped))
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            continue
        if not _same(state, original):
            loaded_changed.append(bit // 8)
    assert loaded_changed == [], f"{len(loaded_changed)} flipped bits loaded as changed checkpoints"
    path.write_bytes(good)
    flipped = bytearray(good)
    data_start = good.index(b"archive/data/0") + 200  # inside the first tensor's bytes
    flipped[data_start] ^= 0x10
    path.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="CRC|corrupt"):
        load_checkpoint(path)


# ------------------------------------------------------------------------------------ distributed
def _ddp_worker(rank: int, world: int, folder: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                                         world_size=world)
    try:
        net = _net(dropout=0.0)
        result = train(net, _data(), deterministic_loss, steps=4, batch_size=8, lr=1e-3, warmup=2, seed=3,
                       progress=False)
        torch.save({k: v.clone() for k, v in result.model.state_dict().items()}, f"{folder}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = train(_net(dropout=0.0), _data(), deterministic_loss, steps=4, batch_size=8, lr=1e-3, warmup=2, seed=3,
                   progress=False).model.state_dict()
    moved = False
    for k in single:
        assert torch.equal(ranks[0][k], ranks[1][k]), f"ranks disagree on {k}"
        assert torch.allclose(ranks[0][k], single[k], atol=1e-6, rtol=1e-5), f"DDP differs from one process on {k}"
        moved |= not torch.equal(single[k], _net(dropout=0.0).state_dict()[k])
    assert moved


# ------------------------------------------------------------------------------- the run's fingerprint
def _small_recipe():
    recipe = get_recipe("03-momentum", "quick")
    recipe["data"]["n"] = 16
    recipe["train"].update(steps=2, batch_size=4)
    recipe["model"]["channels"] = 8
    return recipe


def test_cache_never_serves_a_run_on_other_data(tmp_path):
    recipe = _small_recipe()
    shapes = train_recipe(recipe, noisy_loss, cache_dir=tmp_path, progress=False)
    images, labels = load_dataset(recipe["data"])
    black = (torch.zeros_like(images), labels)
    on_black = train_recipe(recipe, noisy_loss, cache_dir=tmp_path, progress=False, data=black)
    assert not on_black.from_cache and on_black.path != shapes.path  # other data, another run
    again = train_recipe(recipe, noisy_loss, cache_dir=tmp_path, progress=False, data=black)
    assert again.from_cache and again.path == on_black.path


def test_cache_refuses_a_run_of_another_recipe_copied_under_the_key(tmp_path):
    recipe, other = _small_recipe(), _small_recipe()
    other["train"]["lr"] = 1e-4
    first = train_recipe(recipe, noisy_loss, cache_dir=tmp_path, progress=False)
    second = train_recipe(other, noisy_loss, cache_dir=tmp_path, progress=False)
    first.path.write_bytes(second.path.read_bytes())  # someone copies the other run under this key
    with pytest.raises(CheckpointError, match="holds another run.*recipe"):
        train_recipe(recipe, noisy_loss, cache_dir=tmp_path, progress=False)
    redone = train_recipe(recipe, noisy_loss, cache_dir=tmp_path, progress=False, retrain=True)
    assert not redone.from_cache
    assert all(torch.equal(p, q) for p, q in zip(redone.ema.parameters(), first.ema.parameters()))


def test_resume_refuses_other_batch_size_data_or_loss(tmp_path):
    path, data = tmp_path / "run.pt", _data()
    args = {**ARGS, "batch_size": 8}
    train(_net(), data, noisy_loss, steps=2, checkpoint=path, **args)
    good = path.read_bytes()
    with pytest.raises(CheckpointError, match="batch_size"):
        train(_net(), data, noisy_loss, steps=4, checkpoint=path, **{**args, "batch_size": 4})
    with pytest.raises(CheckpointError, match="training data"):
        train(_net(), (torch.zeros_like(data[0]), data[1]), noisy_loss, steps=4, checkpoint=path, **args)
    with pytest.raises(CheckpointError, match="loss"):
        train(_net(), data, deterministic_loss, steps=4, checkpoint=path, **args)
    assert path.read_bytes() == good  # nothing was overwritten
    assert train(_net(), data, noisy_loss, steps=4, checkpoint=path, **args).step == 4  # the same run goes on


def _scaled_loss(scale):
    def loss(model, batch, generator):
        return scale * noisy_loss(model, batch, generator)
    return loss


def test_loss_identity_sees_closure_values_and_an_explicit_id(tmp_path):
    recipe = _small_recipe()
    one = train_recipe(recipe, _scaled_loss(1.0), cache_dir=tmp_path, progress=False)
    two = train_recipe(recipe, _scaled_loss(2.0), cache_dir=tmp_path, progress=False)  # same source, other value
    assert not two.from_cache and two.path != one.path
    assert train_recipe(recipe, _scaled_loss(1.0), cache_dir=tmp_path, progress=False).from_cache
    named = train_recipe(recipe, _scaled_loss(3.0), cache_dir=tmp_path, progress=False, loss_id="ddpm-eps-v1")
    assert train_recipe(recipe, _scaled_loss(4.0), cache_dir=tmp_path, progress=False, loss_id="ddpm-eps-v1").from_cache
    assert named.path not in (one.path, two.path)


# ------------------------------------------------------------------------------ leftovers, bad folders
_KILLED_WRITER = """
import sys, time, torch
from cifar import trainer
def slow_save(obj, f, *args, **kwargs):
    f.write(b"PK partial checkpoint"); f.flush(); print("writing", flush=True); time.sleep(60)
trainer.torch.save = slow_save
trainer.save_checkpoint(sys.argv[1], {"step": 0})
"""


def test_a_killed_checkpoint_write_is_cleaned_up_by_the_next_run(tmp_path):
    import signal
    import subprocess
    import sys

    path = tmp_path / "run.pt"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parents[1])})
    assert child.stdout.readline().strip() == "writing"
    os.kill(child.pid, signal.SIGKILL)  # kill -9 in the middle of the write
    child.wait()
    left = list(tmp_path.glob("run.pt.*.tmp"))
    assert len(left) == 1 and not path.exists()
    live = tmp_path / "run.pt.abcd1234.tmp"  # a write in progress elsewhere: locked, must survive
    live.write_bytes(b"PK")
    old = time.time() - 3600
    for f in (left[0], live):
        os.utime(f, (old, old))
    import fcntl

    with open(live, "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        train(_net(), _data(), noisy_loss, steps=1, checkpoint=path, **ARGS)
    assert not left[0].exists() and live.exists() and path.exists()


def test_an_unwritable_checkpoint_folder_fails_before_any_work(tmp_path):
    calls = []

    def loss(model, batch, generator):
        calls.append(1)
        return noisy_loss(model, batch, generator)

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")  # as unwritable as a read-only folder, even for root
    with pytest.raises(OSError, match="not writable"):
        train(_net(), _data(), loss, steps=3, checkpoint=blocker / "runs" / "run.pt", checkpoint_every=2, **ARGS)
    assert calls == []


# ----------------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("amp, device, capability, expected", [
    ("auto", "cuda", (7, 5), "fp16"),  # T4: no native bf16
    ("auto", "cuda", (7, 0), "fp16"),  # V100
    ("auto", "cuda", (6, 1), "fp16"),
    ("auto", "cuda", (8, 0), "bf16"),  # A100
    ("auto", "cuda", (8, 6), "bf16"),
    ("auto", "cuda", (9, 0), "bf16"),  # H100 / H200
    ("auto", "cpu", None, "fp32"),
    ("auto", "mps", None, "fp32"),
    ("bf16", "cuda", (7, 5), "bf16"),  # explicit choices stand
    ("fp16", "cpu", None, "fp16"),
    ("fp32", "cuda", (9, 0), "fp32"),
])
def test_choose_precision(amp, device, capability, expected):
    assert trainer_module.choose_precision(amp, device, capability) == expected


def test_choose_precision_bad_input():
    with pytest.raises(ValueError, match="amp"):
        trainer_module.choose_precision("fp8", "cuda", (9, 0))
    with pytest.raises(ValueError, match="capability"):
        trainer_module.choose_precision("auto", "cuda", None)


def test_fp16_trains_with_a_gradient_scaler_and_resumes_exactly(tmp_path):
    args = {**ARGS, "amp": "fp16"}
    full = train(_net(), _data(), noisy_loss, steps=4, checkpoint=tmp_path / "full.pt", **args)
    assert all(math.isfinite(v) for v in full.losses)
    state = load_checkpoint(tmp_path / "full.pt")
    assert state["precision"] == "fp16" and state["scaler"]["scale"] > 0  # the scaler's state is saved
    train(_net(), _data(), noisy_loss, steps=2, checkpoint=tmp_path / "split.pt", **args)
    resumed = train(_net(seed=3), _data(), noisy_loss, steps=4, checkpoint=tmp_path / "split.pt", **args)
    assert resumed.losses == full.losses
    _assert_same_state(state, load_checkpoint(tmp_path / "split.pt"))
    fp32 = train(_net(), _data(), noisy_loss, steps=4, **{**ARGS, "amp": "fp32"})
    assert fp32.losses != full.losses  # fp16 autocast really ran


def test_the_grey_shapes_variant_of_lesson_01():
    from cifar.data import num_channels

    for mode in ("quick", "full"):
        recipe = get_recipe("01-hallucination", mode, variant="grey")
        check_recipe(recipe)
        assert recipe["variant"] == "grey" and recipe["data"]["style"] == "grey" and num_channels(recipe["data"]) == 1
        assert get_recipe("01-hallucination", mode)["data"].get("style", "rgb") == "rgb"  # the default is unchanged
    recipe["data"]["n"] = 8
    images, _ = load_dataset(recipe["data"])
    net = build_model({**get_recipe("01-hallucination", "quick", variant="grey")["model"]})
    assert net(to_model_space(images), torch.rand(8)).shape == images.shape
    with pytest.raises(ValueError, match="variant"):
        get_recipe("02-fpe-gap", "quick", variant="grey")
    bad = get_recipe("01-hallucination", "quick", variant="grey")
    bad["model"]["in_channels"] = 3
    with pytest.raises(ValueError, match="channel"):
        check_recipe(bad)


_EMPTY, _SCALE = torch.zeros(0), torch.tensor(2.0)


def _reads_tensors(model, batch, generator):
    return _SCALE * noisy_loss(model, batch, generator) + _EMPTY.sum()


def test_loss_identity_hashes_the_tensors_a_loss_reads():
    global _SCALE
    first = trainer_module.loss_identity(_reads_tensors)  # an empty tensor among them is fine
    _SCALE = torch.tensor(3.0)
    try:
        assert trainer_module.loss_identity(_reads_tensors) != first
    finally:
        _SCALE = torch.tensor(2.0)
    assert trainer_module.loss_identity(_reads_tensors) == first
