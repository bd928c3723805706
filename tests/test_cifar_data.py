"""cifar data: the CIFAR-10 loader on a fake archive, Simple Shapes and its counter, token views."""
import hashlib
import io
import os
import pickle
import tarfile
import time

import numpy as np
import pytest
import torch

from cifar import cifar10
from cifar.cifar10 import DatasetError, load_cifar10, read_class_names
from cifar.data import load_dataset, to_model_space, to_uint8
from cifar.shapes import COLOURS, TEMPLATES, THIRDS, class_ids, count_shapes, make_shapes, presence
from cifar.tokens import GREY256, MASK_ID, TokenView

PER_BATCH = 6


def _write_fake_archive(path, per_batch=PER_BATCH, extra_member=None):
    """A small archive in CIFAR-10's official layout: python-2-style pickles of dicts with bytes keys."""
    rng = np.random.default_rng(0)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batches[name] = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)]}
    batches["batches.meta"] = {b"label_names": [c.encode() for c in cifar10.CLASSES], b"num_cases_per_batch": per_batch,
                               b"num_vis": 3072}
    if extra_member is not None:
        batches.update(extra_member)
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in batches.items():
            raw = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return batches


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A fake archive served from a file:// URL, its MD5 patched in, and an empty cache folder as DFM_DATA."""
    source = tmp_path / "source" / "cifar-10-python.tar.gz"
    source.parent.mkdir()
    batches = _write_fake_archive(source)
    monkeypatch.setattr(cifar10, "CIFAR10_URL", source.as_uri())
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", hashlib.md5(source.read_bytes()).hexdigest())
    cache = tmp_path / "cache"
    monkeypatch.setenv("DFM_DATA", str(cache))
    return source, cache, batches


def test_cifar10_loader_parses_the_official_layout_and_works_offline(fake_source):
    source, cache, batches = fake_source
    x, y = load_cifar10("train", progress=False)
    assert x.dtype == torch.uint8 and x.shape == (5 * PER_BATCH, 3, 32, 32)
    assert y.dtype == torch.int64 and y.shape == (5 * PER_BATCH,)
    row = batches["data_batch_2"][b"data"][1]  # rows are the R, G and B planes, each 32x32 row-major
    assert torch.equal(x[PER_BATCH + 1, 1], torch.from_numpy(row[1024:2048].reshape(32, 32)))
    assert y[PER_BATCH + 1] == batches["data_batch_2"][b"labels"][1]
    xt, yt = load_cifar10("test", progress=False)
    assert xt.shape == (PER_BATCH, 3, 32, 32) and yt.tolist() == batches["test_batch"][b"labels"]
    assert (cache / "cifar-10-python.tar.gz").exists()
    assert read_class_names(cache / "cifar-10-python.tar.gz") == cifar10.CLASSES
    source.unlink()  # offline: the cached copy is enough
    x2, _ = load_cifar10("train", progress=False)
    assert torch.equal(x, x2)
    images, labels = load_dataset({"name": "cifar10", "split": "train", "classes": [3, 5]})
    assert set(labels.tolist()) <= {3, 5} and len(images) == int(((y == 3) | (y == 5)).sum())


def test_cifar10_wrong_checksum_raises_and_leaves_nothing(fake_source, monkeypatch):
    _, cache, _ = fake_source
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(DatasetError, match="MD5"):
        load_cifar10("train", progress=False)
    assert not cache.exists() or list(cache.iterdir()) == []  # no partial or temporary file


def test_cifar10_truncated_download_and_corrupt_cache(fake_source, monkeypatch):
    source, cache, _ = fake_source
    good = source.read_bytes()
    source.write_bytes(good[: len(good) // 2])  # a download cut half-way: the checksum no longer matches
    with pytest.raises(DatasetError):
        load_cifar10("train", progress=False)
    assert not cache.exists() or list(cache.iterdir()) == []
    source.write_bytes(good)
    load_cifar10("train", progress=False)
    cached = cache / "cifar-10-python.tar.gz"
    cached.write_bytes(good[:1000])  # the cached copy got truncated later
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        load_cifar10("train", progress=False)
    assert not cached.exists()
    with pytest.raises(FileNotFoundError):
        load_cifar10("train", download=False)
    monkeypatch.setattr(cifar10, "CIFAR10_URL", (source.parent / "missing.tar.gz").as_uri())  # no connection
    with pytest.raises(DatasetError, match="failed"):
        load_cifar10("train", progress=False)
    assert list(cache.iterdir()) == []
    with pytest.raises(ValueError, match="split"):
        load_cifar10("validation")


def test_a_killed_download_leaves_no_part_file_after_the_next_one(fake_source):
    _, cache, _ = fake_source
    cache.mkdir()
    stale = cache / "cifar-10-python.tar.gz.k1ll3d99.part"  # what a download killed by kill -9 leaves
    stale.write_bytes(b"half an archive")
    other = cache / "notes.part"  # not ours: never touched
    other.write_bytes(b"")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    load_cifar10("train", progress=False)
    assert not stale.exists() and other.exists()


def test_cifar10_archive_with_matching_checksum_but_bad_content(tmp_path, monkeypatch):
    evil = pickle.dumps({b"data": os.system}, protocol=2)  # a pickle that names a global other than numpy's
    source = tmp_path / "bad.tar.gz"
    _write_fake_archive(source, extra_member={"data_batch_3": evil})
    monkeypatch.setattr(cifar10, "CIFAR10_URL", source.as_uri())
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", hashlib.md5(source.read_bytes()).hexdigest())
    monkeypatch.setenv("DFM_DATA", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="refusing to unpickle"):
        load_cifar10("train", progress=False)


# ------------------------------------------------------------------------------------ Simple Shapes
def test_shapes_are_seeded_and_follow_the_generative_rule():
    x, p = make_shapes(7000, seed=1)
    x2, p2 = make_shapes(7000, seed=1)
    assert torch.equal(x, x2) and torch.equal(p, p2)
    assert not torch.equal(make_shapes(50, seed=2)[0], x[:50])
    assert x.dtype == torch.uint8 and x.shape == (7000, 3, 32, 32) and p.shape == (7000, 3)
    assert p.any(1).all(), "an empty image was generated"
    k = p.sum(1).bincount(minlength=4)[1:].double() / len(p)
    assert torch.allclose(k, torch.tensor([3 / 7, 3 / 7, 1 / 7], dtype=torch.float64), atol=0.02), k
    assert torch.allclose(p.double().mean(0), torch.full((3,), 4 / 7, dtype=torch.float64), atol=0.02)
    for j, (lo, hi) in enumerate(THIRDS):  # each third is painted with its own colour only
        third = x[:, :, :, lo:hi].long()
        packed = (third[:, 0] << 16 | third[:, 1] << 8 | third[:, 2]).unique().tolist()
        r, g, b = COLOURS[j].tolist()
        assert sorted(packed) == [0, r << 16 | g << 8 | b]
    painted = (x.amax(1) > 0).sum((1, 2))
    areas = torch.tensor([int(t.sum()) for t in TEMPLATES])
    assert torch.equal(painted, (p.long() * areas).sum(1))
    ids = class_ids(p)
    assert ids.min() == 0 and ids.max() == 6 and torch.equal(presence(ids), p)


def test_count_shapes_is_exact_on_generated_images():
    x, p = make_shapes(2000, seed=3)
    c = count_shapes(x)
    assert c.in_support.all()
    assert np.array_equal(c.present, p.numpy())
    expected = np.zeros((2000, 3, 3), dtype=np.int64)
    expected[:, [0, 1, 2], [0, 1, 2]] = p.numpy()
    assert np.array_equal(c.counts, expected)
    c_float = count_shapes(to_model_space(x))  # model space gives the same answer
    assert np.array_equal(c_float.counts, c.counts)


def _paste(image, j, top, left, colour_of=None):
    t = torch.from_numpy(TEMPLATES[j])
    h, w = t.shape
    colour = torch.from_numpy(COLOURS[j if colour_of is None else colour_of]).view(3, 1, 1)
    region = image[:, top:top + h, left:left + w]
    image[:, top:top + h, left:left + w] = torch.where(t, colour, region)


def test_count_shapes_flags_out_of_support_images():
    blank = torch.zeros(3, 32, 32, dtype=torch.uint8)
    two_squares = blank.clone()
    _paste(two_squares, 1, 2, 12)
    _paste(two_squares, 1, 20, 13)  # two squares in the middle third: the paper's typical hallucination
    square_left = blank.clone()
    _paste(square_left, 1, 5, 2)  # a square where only a triangle may be
    fine = blank.clone()
    _paste(fine, 0, 4, 1)
    _paste(fine, 2, 20, 22)
    c = count_shapes(torch.stack([blank, two_squares, square_left, fine]))
    assert c.in_support.tolist() == [False, False, False, True]
    assert c.counts[1, 1, 1] == 2 and c.counts[2, 0, 1] == 1 and c.total.tolist() == [0, 2, 1, 2]
    assert c.present[3].tolist() == [True, False, True]


def test_count_shapes_under_perturbations():
    x, p = make_shapes(300, seed=4)
    g = torch.Generator().manual_seed(0)
    noisy = (x.float() + 25 * torch.randn(x.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
    c = count_shapes(noisy)  # pixel noise of 25 grey levels (0.2 in model space) changes nothing
    assert c.in_support.all() and np.array_equal(c.present, p.numpy())
    dim = (x.float() * 0.3).round().to(torch.uint8)  # shapes fainter than the threshold are not seen
    assert count_shapes(dim).total.sum() == 0 and not count_shapes(dim).in_support.any()
    cut = x.clone()
    cut[:, :, 15:17, :] = 0  # a dark band across the middle may split a shape into two blobs
    c_cut = count_shapes(cut)
    split = (c_cut.counts > 1).any((1, 2))
    assert split.any() and not c_cut.in_support[split].any()
    speck = x.clone()
    speck[:, :, 0, 0] = torch.from_numpy(COLOURS[1]).view(1, 3)  # a one-pixel speck is below min_area
    assert np.array_equal(count_shapes(speck).counts, count_shapes(x).counts)


def test_shapes_bad_input():
    with pytest.raises(ValueError, match="n must"):
        make_shapes(0)
    with pytest.raises(ValueError, match="seed must"):
        make_shapes(5, seed=-1)
    with pytest.raises(ValueError, match="images must have shape"):
        count_shapes(torch.zeros(2, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        count_shapes(torch.zeros(2, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="all-False"):
        class_ids(torch.zeros(1, 3, dtype=torch.bool))


def test_empty_batches_give_empty_answers():
    empty = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    assert presence(torch.zeros(0, dtype=torch.long)).shape == (0, 3)
    assert class_ids(torch.zeros(0, 3, dtype=torch.bool)).shape == (0,)
    c = count_shapes(empty)
    assert c.counts.shape == (0, 3, 3) and c.in_support.shape == (0,) and c.present.shape == (0, 3)
    assert to_uint8(to_model_space(empty)).shape == (0, 3, 32, 32)
    with pytest.raises(TypeError, match="ids"):
        presence(torch.zeros(2))


# ----------------------------------------------------------------------------------- token views
def test_token_views_round_trip():
    x, _ = make_shapes(20, seed=5)
    grey = x[:, :1].expand(-1, 3, -1, -1).contiguous()  # an already grey image survives 256 levels exactly
    tokens = GREY256.encode(grey)
    assert tokens.shape == (20, 1024) and tokens.dtype == torch.int64 and MASK_ID == 256 == GREY256.vocab_size
    assert torch.equal(GREY256.decode(tokens), grey)
    rgb = TokenView("rgb", 4)
    t = rgb.encode(x)
    assert rgb.vocab_size == 64 and rgb.mask_id == 64 and int(t.max()) < 64
    back = rgb.decode(t)
    assert (back.int() - x.int()).abs().max() <= 32  # half of a 64-wide bin
    assert torch.equal(rgb.encode(back), t)
    assert len(torch.unique(rgb.encode(torch.from_numpy(COLOURS).view(3, 3, 1, 1).expand(3, 3, 32, 32).contiguous()))) == 3
    masked = t.clone()
    masked[:, :10] = rgb.mask_id
    assert (rgb.decode(masked)[:, :, 0, :10] == 128).all()
    small = TokenView("grey", 16, size=16)
    s = small.encode(x)
    assert s.shape == (20, 256) and small.decode(s).shape == (20, 3, 16, 16) and int(s.max()) < 16
    with pytest.raises(ValueError, match="kind"):
        TokenView("cmyk", 4)
    with pytest.raises(TypeError, match="uint8"):
        GREY256.encode(x.float())
    with pytest.raises(ValueError, match="tokens must lie"):
        GREY256.decode(torch.full((1, 1024), 300))


def test_model_space_conversions():
    x, _ = make_shapes(4, seed=6)
    z = to_model_space(x)
    assert z.dtype == torch.float32 and z.min() >= -1 and z.max() <= 1
    assert torch.equal(to_uint8(z), x)
    with pytest.raises(TypeError):
        to_model_space(z)
    with pytest.raises(ValueError, match="name"):
        load_dataset({"name": "mnist"})
    tokens, labels = load_dataset({"name": "shapes", "n": 10, "tokens": {"kind": "grey", "levels": 256, "size": 16}})
    assert tokens.shape == (10, 256) and labels.shape == (10,)
