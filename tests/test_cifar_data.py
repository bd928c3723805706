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
from scipy import ndimage

from cifar import cifar10
from cifar.cifar10 import DatasetError, load_cifar10, read_class_names
from cifar.data import load_dataset, to_model_space, to_uint8
from cifar import shapes as shapes_module
from cifar.shapes import (COLOURS, GREY_TEMPLATES, SHAPE_TYPES, STYLES, THIRDS, class_ids, count_shapes,
                          make_shapes, presence, templates)
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
@pytest.mark.parametrize("style", STYLES)
def test_shapes_are_seeded_and_follow_the_generative_rule(style):
    x, p = make_shapes(7000, seed=1, style=style)
    x2, p2 = make_shapes(7000, seed=1, style=style)
    assert torch.equal(x, x2) and torch.equal(p, p2)
    assert not torch.equal(make_shapes(50, seed=2, style=style)[0], x[:50])
    channels = 3 if style == "rgb" else 1
    assert x.dtype == torch.uint8 and x.shape == (7000, channels, 32, 32) and p.shape == (7000, 3)
    assert p.any(1).all(), "an empty image was generated"
    k = p.sum(1).bincount(minlength=4)[1:].double() / len(p)
    assert torch.allclose(k, torch.tensor([3 / 7, 3 / 7, 1 / 7], dtype=torch.float64), atol=0.02), k
    assert torch.allclose(p.double().mean(0), torch.full((3,), 4 / 7, dtype=torch.float64), atol=0.02)
    for j, (lo, hi) in enumerate(THIRDS):  # each third is painted with one value only (its type's colour, or white)
        third = x[:, :, :, lo:hi].long()
        packed = (third[:, 0] << 16 | third[:, 1] << 8 | third[:, 2]) if style == "rgb" else third[:, 0]
        r, g, b = COLOURS[j].tolist()
        assert sorted(packed.unique().tolist()) == [0, r << 16 | g << 8 | b if style == "rgb" else 255]
    painted = (x.amax(1) > 0).sum((1, 2))
    areas = torch.tensor([int(t.sum()) for t in templates(style)])
    assert torch.equal(painted, (p.long() * areas).sum(1))
    ids = class_ids(p)
    assert ids.min() == 0 and ids.max() == 6 and torch.equal(presence(ids), p)
    if style == "grey":  # the official sizes in pixels: side-11 triangle, 8x8 square, radius-5 pentagon
        assert [t.shape for t in GREY_TEMPLATES] == [(9, 10), (8, 8), (9, 10)] and areas.tolist() == [52, 64, 58]
        rgb, _ = make_shapes(7000, seed=1)
        assert torch.equal(make_shapes(20, seed=1, style="grey", channels=3)[0],
                           make_shapes(20, seed=1, style="grey")[0].expand(-1, 3, -1, -1))
        assert not torch.equal(rgb.amax(1, keepdim=True) > 0, x > 0)


@pytest.mark.parametrize("style", STYLES)
def test_count_shapes_is_exact_on_generated_images(style):
    x, p = make_shapes(3000, seed=3, style=style)
    c = count_shapes(x)
    assert c.in_support.all()  # every generated image, including shapes touching across a third's edge
    assert np.array_equal(c.present, p.numpy()) and c.unknown.sum() == 0
    expected = np.zeros((3000, 3, 3), dtype=np.int64)
    expected[:, [0, 1, 2], [0, 1, 2]] = p.numpy()
    assert np.array_equal(c.counts, expected)
    assert np.array_equal(count_shapes(to_model_space(x)).counts, c.counts)  # model space gives the same answer
    if style == "grey":
        assert np.array_equal(count_shapes(x.expand(-1, 3, -1, -1)).counts, c.counts)  # grey in three channels


def test_count_shapes_reads_float_images_right_or_refuses_them():
    x, p = make_shapes(400, seed=8, style="grey")
    right = count_shapes(x).counts
    unit, full = x.float() / 255, x.float()
    with pytest.raises(ValueError, match="0..1"):
        count_shapes(unit)  # 0..1 floats read as model space would lose every shape's bottom half
    with pytest.raises(ValueError, match="0..255"):
        count_shapes(full)
    assert np.array_equal(count_shapes(unit, value_range=(0, 1)).counts, right)
    assert np.array_equal(count_shapes(full, value_range=(0, 255)).counts, right)
    assert np.array_equal(count_shapes(to_model_space(x), value_range=(-1, 1)).counts, right)
    bad = to_model_space(x)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        count_shapes(bad)
    with pytest.raises(ValueError, match="value_range"):
        count_shapes(unit, value_range=(1, 0))


def _put(image, mask, top, left, value):
    """Paint a bool mask into image [C, 32, 32] at (top, left) with a per-channel value [C]."""
    h, w = mask.shape
    region = image[:, top:top + h, left:left + w]
    image[:, top:top + h, left:left + w] = torch.where(torch.from_numpy(mask), torch.as_tensor(value).view(-1, 1, 1), region)


def _disc(radius):
    c = np.arange(2 * int(radius) + 3) - (int(radius) + 1)
    return (c[:, None] ** 2 + c[None, :] ** 2) <= radius ** 2


@pytest.mark.parametrize("style", STYLES)
def test_count_shapes_flags_repeated_shapes_merged_or_not(style):
    blank = torch.zeros(1 if style == "grey" else 3, 32, 32, dtype=torch.uint8)
    white = [torch.full((len(blank),), 255, dtype=torch.uint8)] * 3 if style == "grey" else \
        [torch.from_numpy(c) for c in COLOURS]
    cases = []
    for k, t in enumerate(templates(style)):
        lo, hi = THIRDS[k]
        h = t.shape[0]
        for gap in [h + 6, h, h - 1, h - 3, 3]:  # apart, touching (one blob), overlapping (one blob)
            img = blank.clone()
            _put(img, t, 4, lo, white[k])
            _put(img, t, 4 + gap, hi - t.shape[1], white[k])
            cases.append((img, k, gap))
    c = count_shapes(torch.stack([img for img, _, _ in cases]), style=style)
    for i, (_, k, gap) in enumerate(cases):
        assert c.counts[i, k, k] == 2 and not c.in_support[i] and c.repeated[i], (SHAPE_TYPES[k], gap, c.counts[i])


@pytest.mark.parametrize("style", STYLES)
def test_count_shapes_reads_geometry_not_colour(style):
    tri, square, pent = templates(style)
    grey = style == "grey"
    blank = torch.zeros(1 if grey else 3, 32, 32, dtype=torch.uint8)
    colour = (lambda k: torch.tensor([255], dtype=torch.uint8)) if grey else (lambda k: torch.from_numpy(COLOURS[k]))
    images, expect = [], []

    def case(paint, in_support, check):
        img = blank.clone()
        paint(img)
        images.append(img)
        expect.append((in_support, check))

    case(lambda im: None, False, lambda c, i: c.total[i] == 0)  # nothing at all
    case(lambda im: (_put(im, tri, 3, 0, colour(0)), _put(im, pent, 20, 22, colour(2))), True,
         lambda c, i: c.present[i].tolist() == [True, False, True])
    case(lambda im: _put(im, tri, 10, 11, colour(1)), False,  # a triangle painted the square's colour, middle third
         lambda c, i: c.counts[i, 1, 0] == 1 and c.counts[i, 1, 1] == 0 and c.misplaced[i])
    case(lambda im: _put(im, square, 5, 2, colour(1)), False, lambda c, i: c.counts[i, 0, 1] == 1)  # square, left
    for radius in (3.5, 4.0):  # a disc in the middle third is no square
        case(lambda im, r=radius: _put(im, _disc(r), 12, 11, colour(1)), False, lambda c, i: c.counts[i, 1, 1] == 0)
    speck = np.zeros((3, 3), dtype=bool)
    speck.flat[[0, 1, 2, 3, 4, 5, 6, 8]] = True  # an 8-pixel speck in the pentagon's third is no pentagon
    case(lambda im: (_put(im, speck, 20, 25, colour(2)), _put(im, tri, 3, 0, colour(0))), False,
         lambda c, i: c.counts[i, 2].sum() == 0 and c.unknown[i, 2] == 1)
    small = np.ones((2, 3), dtype=bool)  # a 6-pixel speck is below min_area: ignored
    case(lambda im: (_put(im, small, 20, 25, colour(2)), _put(im, tri, 3, 0, colour(0))), True,
         lambda c, i: c.total[i] == 1)
    side = templates(style)[1].shape[0]
    rectangle = np.ones((side + side // 2, side), dtype=bool)  # reads as two overlapping squares
    case(lambda im: _put(im, rectangle, 10, 12, colour(1)), False, lambda c, i: c.counts[i, 1, 1] == 2)
    bar = np.ones((12, 3), dtype=bool)  # no shape of the data, nor several: unknown
    case(lambda im: _put(im, bar, 10, 14, colour(1)), False, lambda c, i: c.unknown[i, 1] == 1 and c.total[i] == 0)
    c = count_shapes(torch.stack(images), style=style)
    for i, (in_support, check) in enumerate(expect):
        assert c.in_support[i] == in_support, (i, c.counts[i], c.unknown[i])
        assert check(c, i), (i, c.counts[i], c.unknown[i])


def _soft_image(style, placed, rng, blur=0.5, noise=0.08, up=4):
    """A model-space image like a good sample: anti-aliased shapes (k, centre x, centre y, scale), blurred, noisy."""
    makers = (shapes_module._triangle, shapes_module._square, shapes_module._pentagon)
    pad = 16 * up
    big = np.zeros((32 * up + 2 * pad, 32 * up + 2 * pad))
    for k, cx, cy, scale in placed:
        m = makers[k](style, scale * up)
        top, left = int(round(cy * up - m.shape[0] / 2)) + pad, int(round(cx * up - m.shape[1] / 2)) + pad
        big[top:top + m.shape[0], left:left + m.shape[1]] = np.maximum(big[top:top + m.shape[0], left:left + m.shape[1]], m)
    img = big[pad:-pad, pad:-pad].reshape(32, up, 32, up).mean((1, 3))
    img = ndimage.gaussian_filter(img, blur) + noise * rng.standard_normal(img.shape)
    return np.clip(2 * img - 1, -1, 1)


def _random_placement(style, k, rng):
    (h, w), (lo, hi) = templates(style)[k].shape, THIRDS[k]
    return (k, rng.uniform(lo + w / 2 + 0.3, hi - w / 2 - 0.3), rng.uniform(h / 2 + 0.5, 32 - h / 2 - 0.5),
            rng.uniform(0.93, 1.07))


def test_count_shapes_accepts_good_samples_and_flags_noisy_merged_ones():
    rng = np.random.default_rng(0)
    _, present = make_shapes(300, seed=9)
    soft = [_soft_image("grey", [_random_placement("grey", k, rng) for k in np.nonzero(p)[0]], rng)
            for p in present.numpy()]
    c = count_shapes(torch.tensor(np.stack(soft), dtype=torch.float32)[:, None])
    assert c.in_support.mean() >= 0.97 and (c.present == present.numpy()).all(1).mean() >= 0.97  # measured: 0.99
    merged = []  # the same rendering, two copies of one shape 3 to 12 rows apart in its own third
    for k, t in enumerate(GREY_TEMPLATES):
        for gap in range(3, 13):
            _, cx, _, scale = _random_placement("grey", k, rng)
            top = t.shape[0] / 2 + 1 + rng.uniform(0, 1)
            merged.append(_soft_image("grey", [(k, cx, top, scale), (k, cx + rng.uniform(-1, 1), top + gap, scale)], rng))
    c = count_shapes(torch.tensor(np.stack(merged), dtype=torch.float32)[:, None])
    assert (~c.in_support).all() and c.repeated.mean() >= 0.9, c.counts[c.in_support | ~c.repeated]


def test_count_shapes_under_perturbations():
    x, p = make_shapes(300, seed=4)
    g = torch.Generator().manual_seed(0)
    noisy = (x.float() + 25 * torch.randn(x.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
    c = count_shapes(noisy)  # pixel noise of 25 grey levels (0.2 in model space) changes nothing
    assert c.in_support.all() and np.array_equal(c.present, p.numpy())
    dim = (x.float() * 0.3).round().to(torch.uint8)  # shapes fainter than the threshold are not seen
    assert count_shapes(dim).total.sum() == 0 and not count_shapes(dim).in_support.any()
    cut = x.clone()
    cut[:, :, 15:17, :] = 0  # a dark band across the middle cuts some shapes into two pieces that are no shape
    pieces = np.array([[ndimage.label(third.numpy())[1] for third in (img.amax(0)[:, lo:hi] > 0 for lo, hi in THIRDS)]
                       for img in cut])  # [N, 3] blobs per third
    split = (pieces > 1).any(1)
    c_cut = count_shapes(cut)
    assert split.any() and not c_cut.in_support[split].any()
    untouched = ~(x[:, :, 15:17, :] > 0).flatten(1).any(1).numpy()
    assert c_cut.in_support[untouched].all()
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


def test_grey_shapes_load_through_the_dataset_machinery():
    images, labels = load_dataset({"name": "shapes", "n": 50, "seed": 2, "style": "grey"})
    direct, present = make_shapes(50, seed=2, style="grey")
    assert images.shape == (50, 1, 32, 32) and torch.equal(images, direct) and torch.equal(labels, class_ids(present))
    three, _ = load_dataset({"name": "shapes", "n": 50, "seed": 2, "style": "grey", "channels": 3})
    assert three.shape == (50, 3, 32, 32) and torch.equal(three[:, 1:2], images)
    tokens, _ = load_dataset({"name": "shapes", "n": 5, "style": "grey", "tokens": {"kind": "grey", "levels": 256}})
    assert tokens.shape == (5, 1024) and set(tokens.unique().tolist()) <= {0, 255}
    assert count_shapes(images).in_support.all() and count_shapes(to_model_space(three)).in_support.all()
    with pytest.raises(ValueError, match="style"):
        load_dataset({"name": "shapes", "n": 5, "style": "colour"})
    with pytest.raises(ValueError, match="channels"):
        load_dataset({"name": "shapes", "n": 5, "style": "rgb", "channels": 1})
    with pytest.raises(ValueError, match="cifar10"):
        load_dataset({"name": "cifar10", "style": "grey"})
