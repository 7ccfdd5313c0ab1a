"""examples/ray/batch_classify.py end to end on a local Ray of 2 CPUs over 200 generated CIFAR-sized
images (and one corrupt file), every parquet row checked against Session.run."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import qarep
from conftest import REPO, random_images

ray = pytest.importorskip("ray")


def load_example():
    spec = importlib.util.spec_from_file_location("batch_classify", REPO / "examples/ray/batch_classify.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["batch_classify"] = module  # as `import batch_classify` would: Ray must ship it by value
    spec.loader.exec_module(module)
    return module


def test_ray_example_matches_session_run(tmp_path, model, model_path, monkeypatch):
    images_dir = tmp_path / "images"
    expected_paths = []
    for i, image in enumerate(random_images(200, seed=37, min_side=32, max_side=32)):
        folder = images_dir / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (f"{i:04d}.png" if i % 4 == 0 else f"{i:04d}.jpg")
        Image.fromarray(image).save(path)
        expected_paths.append(str(path))
    corrupt = images_dir / "class0" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    output = tmp_path / "out"

    # The writes ask for no CPU (so they run beside the actors); without a concurrency limit Ray would start a
    # worker process for every block at once (docs/performance.md, "Python binding and Ray Data").
    write_arguments = {}
    write_parquet = ray.data.Dataset.write_parquet

    def recording_write_parquet(self, path, **kwargs):
        write_arguments.update(kwargs)
        return write_parquet(self, path, **kwargs)

    monkeypatch.setattr(ray.data.Dataset, "write_parquet", recording_write_parquet)
    example = load_example()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        figures = example.classify(str(images_dir), str(model_path), str(output), batch=16)
    finally:
        ray.shutdown()
    assert figures["actors"] * figures["threads"] == 2 and figures["images"] == 201
    assert write_arguments["ray_remote_args"] == {"num_cpus": 0} and write_arguments["concurrency"] == 1  # one node

    table = pq.read_table(output)
    assert table.column_names == ["path", "top1", "top1_label", "top5", "probabilities", "error"]
    rows = {row["path"]: row for row in table.to_pylist()}
    assert sorted(rows) == sorted(expected_paths + [str(corrupt)])
    bad = rows.pop(str(corrupt))
    assert bad["error"] and bad["top1"] is None and bad["top5"] is None and bad["probabilities"] is None

    session = qarep.Session(model, threads=2, max_batch=8)
    paths = sorted(rows)
    for start in range(0, len(paths), 8):
        chunk = paths[start : start + 8]
        logits = session.run(np.stack([model.preprocess(qarep.decode_image(p, model)) for p in chunk]))
        probabilities = session.probabilities()
        for i, path in enumerate(chunk):
            row = rows[path]
            top5 = [p.class_index for p in session.top_k(5)[i]]
            assert row["error"] is None
            assert row["top5"] == top5 and row["top1"] == top5[0]
            assert row["top1_label"] == model.labels[top5[0]]
            np.testing.assert_array_equal(np.array(row["probabilities"], np.float32), probabilities[i])
            assert int(np.argmax(logits[i])) == top5[0]


def test_ray_example_main_starts_its_own_ray_or_joins_ray_address(monkeypatch):
    """Without RAY_ADDRESS, main() starts a new local Ray (address="local") even if one already runs on the
    machine (a plain ray.init() would join that one and refuse num_cpus); with it, main() joins that cluster."""
    example = load_example()
    calls = []
    monkeypatch.setattr(example.ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(example, "classify", lambda *args: {"actors": 1, "threads": 1, "cpus": 1, "images": 0, "seconds": 1.0})
    monkeypatch.setattr(example.pyarrow.parquet, "read_table", lambda *args, **kwargs: __import__("pyarrow").table({"error": [None]}))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert example.main(["images", "--model", "m.qarep", "--output", "out", "--num-cpus", "2"]) == 0
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert example.main(["images", "--model", "m.qarep", "--output", "out"]) == 0
    assert calls[0]["address"] == "local" and calls[0]["num_cpus"] == 2
    assert calls[1] == {}
