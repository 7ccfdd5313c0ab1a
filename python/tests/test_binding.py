"""The binding against the C example on the same model and library, and the API's own promises."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import qarep
from conftest import random_images


def c_logits(c_classify: Path, model_path: Path, files: list[Path], batch: int, threads: int) -> np.ndarray:
    """The C example's --logits lines, as uint32 bit patterns [images, classes]."""
    out = subprocess.run([str(c_classify), str(model_path), "--logits", "--batch", str(batch), "--threads", str(threads),
                          *map(str, files)], check=True, capture_output=True, text=True).stdout
    rows = [line.split()[1:] for line in out.splitlines() if line.startswith("  logits:")]
    assert len(rows) == len(files), out
    return np.array([[int(word, 16) for word in row] for row in rows], dtype=np.uint32)


def python_logits(model: qarep.Model, files: list[Path], batch: int, threads: int) -> np.ndarray:
    session = qarep.Session(model, threads=threads, max_batch=batch)
    rows = []
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        # decode_image without a model decodes at full size, as the C example does.
        images = np.stack([model.preprocess(qarep.decode_image(f)) for f in chunk])
        rows.append(session.run(images))
    return np.concatenate(rows).view(np.uint32)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_logits_are_bitwise_those_of_the_c_example(tmp_path, model, model_path, c_classify, fmt):
    files = []
    for i, image in enumerate(random_images(5, seed=7)):
        path = tmp_path / f"image{i}.{fmt}"
        Image.fromarray(image).save(path, quality=90) if fmt == "jpeg" else Image.fromarray(image).save(path)
        files.append(path)
    expected = c_logits(c_classify, model_path, files, batch=2, threads=2)
    got = python_logits(model, files, batch=2, threads=2)
    assert got.shape == (5, model.info.num_classes)
    np.testing.assert_array_equal(got, expected)


def test_info_labels_and_model_from_bytes(model, model_path):
    info = model.info
    assert info.input_channels == 3 and info.input_height >= 1 and info.input_width >= 1
    assert info.num_classes == len(model.labels) and info.num_classes >= 1
    assert info.layers >= 1 and info.format_version == 1 and info.macs_per_image > 0
    assert model.input_shape == (info.input_height, info.input_width, 3)
    assert len(model.mean) == 3 and len(model.std) == 3 and 0 < model.crop_ratio <= 1
    again = qarep.Model(model_path.read_bytes())
    assert again.info == info and again.labels == model.labels
    image = np.stack([model.preprocess(random_images(1, seed=3)[0])])
    np.testing.assert_array_equal(qarep.Session(again, threads=1).run(image), qarep.Session(model, threads=1).run(image))


def test_preprocess_accepts_a_row_strided_crop(model):
    big = random_images(1, seed=11, min_side=200, max_side=200)[0]
    crop = big[10:150, 20:180]  # rows 600 bytes apart, pixels contiguous
    assert not crop.flags.c_contiguous
    np.testing.assert_array_equal(model.preprocess(crop), model.preprocess(np.ascontiguousarray(crop)))


ALL_KERNELS = [qarep._capi.lib.qarep_kernel_name(v).decode() for v in range(1, qarep._capi.lib.qarep_kernel_count() + 1)]


@pytest.mark.parametrize("kernel", ALL_KERNELS)
@pytest.mark.parametrize("threads", [1, 2])
def test_every_kernel_and_thread_count_gives_the_same_bytes(model, kernel, threads):
    if kernel not in qarep.kernels():
        pytest.skip(f"kernel path {kernel}: not run, this CPU cannot run it")
    images = np.stack([model.preprocess(im) for im in random_images(3, seed=5)])
    reference = qarep.Session(model, threads=1, max_batch=3, kernel="scalar").run(images)
    session = qarep.Session(model, threads=threads, max_batch=3, kernel=kernel)
    assert session.kernel == kernel
    np.testing.assert_array_equal(session.run(images).view(np.uint32), reference.view(np.uint32))


def test_winograd_choices_keep_the_bytes_and_not_the_memory(model, model_path):
    images = np.stack([model.preprocess(im) for im in random_images(2, seed=9)])
    reference = qarep.Session(model, threads=1, max_batch=2).run(images)
    sizes = [model.packed_weight_bytes]
    for choice in ("no-4x4", "off"):
        limited = qarep.Model(model_path, winograd=choice)
        sizes.append(limited.packed_weight_bytes)
        np.testing.assert_array_equal(qarep.Session(limited, threads=2, max_batch=2).run(images).view(np.uint32),
                                      reference.view(np.uint32))
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] > 0
    assert qarep.Model(model_path.read_bytes(), winograd="off").packed_weight_bytes == sizes[-1]
    with pytest.raises(ValueError, match="winograd"):
        qarep.Model(model_path, winograd="sometimes")


def test_run_float_is_run_on_normalized_pixels(model):
    images = np.stack([model.preprocess(im) for im in random_images(2, seed=9)])
    mean = np.array(model.mean, dtype=np.float32)[None, :, None, None]
    std = np.array(model.std, dtype=np.float32)[None, :, None, None]
    x = np.ascontiguousarray(((images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)) - mean) / std)
    session = qarep.Session(model, threads=2, max_batch=2)
    np.testing.assert_array_equal(session.run_float(x).view(np.uint32), session.run(images).view(np.uint32))


def test_top_k_and_probabilities_follow_the_logits(model):
    session = qarep.Session(model, threads=2, max_batch=4)
    images = np.stack([model.preprocess(im) for im in random_images(4, seed=13)])
    logits = session.run(images)
    top = session.top_k(5)
    probabilities = session.probabilities()
    assert len(top) == 4 and all(len(row) == 5 for row in top)
    for i, row in enumerate(top):
        order = np.argsort(-logits[i], kind="stable")[:5]
        assert [p.class_index for p in row] == order.tolist()
        assert [p.label for p in row] == [model.labels[c] for c in order]
        assert [p.probability for p in row] == [float(probabilities[i, c]) for c in order]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    everything = session.top_k(10**6)  # k above the class count: every class
    assert len(everything[0]) == model.info.num_classes


def test_classify_files_in_order_with_a_bad_file(tmp_path, model):
    files = []
    for i, image in enumerate(random_images(5, seed=17)):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(files[-1])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    paths = files[:2] + [bad] + files[2:]
    results = qarep.classify_files(model, paths, batch=2, threads=2, top_k=3, on_error="record")
    assert [r.path for r in results] == [str(p) for p in paths]
    assert results[2].predictions is None and results[2].error
    session = qarep.Session(model, threads=1, max_batch=1)
    for path, result in zip(paths, results):
        if path == bad:
            continue
        session.run(model.preprocess(qarep.decode_image(path))[None])
        assert result.predictions == session.top_k(3)[0]
    with pytest.raises(OSError, match="bad.jpg"):
        qarep.classify_files(model, paths, batch=2)


def test_decode_image_uses_the_cli_dct_scale_for_large_jpegs(tmp_path, model):
    # A 1600x1200 JPEG for a 160x160 model (crop 0.875): the resize target is about 243x182, so the CLI
    # decodes at 1/4 (400x300) rather than 1/8 (200x150, too small).
    image = random_images(1, seed=19, min_side=1200, max_side=1200)[0]
    image = np.ascontiguousarray(np.concatenate([image, image[:, :400]], axis=1))  # 1600 wide
    path = tmp_path / "large.jpg"
    Image.fromarray(image).save(path, quality=90)
    width, height = 1600, 1200
    scale = model.decode_scale(width, height)
    decoded = qarep.decode_image(path, model)
    assert decoded.shape == (-(-height // scale), -(-width // scale), 3)
    target = model.resize_size(width, height)
    assert decoded.shape[1] >= target[0] and decoded.shape[0] >= target[1]
    if scale < 8:
        assert -(-width // (scale * 2)) < target[0] or -(-height // (scale * 2)) < target[1]


def test_decode_scale_follows_the_cli_decode_margin(monkeypatch, model):
    # 1600x1200 for a 160x160 model (crop 0.875): 1/4 covers the 243x182 target once, 1/2 twice, so a margin of
    # 2 decodes at 1/2; values the CLI ignores (outside 1-8, not a number) leave the default.
    assert model.decode_scale(1600, 1200) == 4
    monkeypatch.setenv("QAREP_DECODE_MARGIN", "2")
    assert model.decode_scale(1600, 1200) == 2
    for ignored in ("0", "9", "two"):
        monkeypatch.setenv("QAREP_DECODE_MARGIN", ignored)
        assert model.decode_scale(1600, 1200) == 4
