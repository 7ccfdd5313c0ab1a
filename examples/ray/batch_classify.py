#!/usr/bin/env python3
"""Classify a folder of images with QARep on Ray Data: read -> map_batches (one qarep.Session per actor) ->
write_parquet.

    python batch_classify.py IMAGES_DIR --model M.qarep --output OUT_DIR [--actors N] [--batch B]

Runs on a local Ray that the script starts, or on the cluster named by RAY_ADDRESS (README.md, "Ray Data").
Each actor holds one Session with `threads` OpenMP threads, and actors x threads = the cluster's CPUs.
The parquet files have one row per image: path, top1, top1_label, top5 (class indices, most probable
first), probabilities (the library's softmax over all classes), and error (null, or why the file could not
be decoded: such a row has null results and the job goes on).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet
import ray

import qarep

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def list_images(images_dir: str) -> tuple[pyarrow.fs.FileSystem, str, list[str]]:
    """The image files under images_dir (a local folder or a URI pyarrow knows: s3://, gs://, hdfs://),
    sorted, as the user would name them (with the URI's scheme), the filesystem to open them with and the
    scheme to take off first.
    Listing here and reading in the actors keeps Ray's per-row cost to one short string: read_binary_files
    builds a block row per file and, measured on 10,000 CIFAR JPEGs, took about as long as classifying them
    (docs/performance.md)."""
    scheme = images_dir.split("://", 1)[0] + "://" if "://" in images_dir else ""
    filesystem, root = pyarrow.fs.FileSystem.from_uri(images_dir if scheme else os.path.abspath(images_dir))
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
    paths = sorted(scheme + i.path for i in infos
                   if i.type == pyarrow.fs.FileType.File and i.path.lower().endswith(IMAGE_EXTENSIONS))
    return filesystem, scheme, paths


class Classifier:
    """One Ray actor: the model (loaded from the bytes Ray ships), one Session with this actor's threads.
    Ray calls it with batches of paths; reading and decoding happen here, so the actors' CPUs are the job's
    CPUs."""

    def __init__(self, model_ref: ray.ObjectRef, filesystem: pyarrow.fs.FileSystem, scheme: str, threads: int,
                 batch: int):
        self.filesystem, self.scheme_length = filesystem, len(scheme)
        self.model = qarep.Model(ray.get(model_ref))
        self.session = qarep.Session(self.model, threads=threads, max_batch=batch)
        self.labels = np.array(self.model.labels, dtype=object)
        self.inputs = np.empty((batch, *self.model.input_shape), dtype=np.uint8)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        paths = [str(p) for p in batch["path"]]
        classes = self.model.info.num_classes
        top5 = np.full((len(paths), min(5, classes)), -1, dtype=np.int32)
        probabilities = np.zeros((len(paths), classes), dtype=np.float32)
        errors: list[str | None] = [None] * len(paths)
        filled: list[int] = []  # rows whose image is in self.inputs

        def run() -> None:
            logits = self.session.run(self.inputs[: len(filled)])
            # Most probable first, ties to the lower class index: the library's top_k order.
            top5[filled] = np.argsort(-logits, axis=1, kind="stable")[:, : top5.shape[1]]
            probabilities[filled] = self.session.probabilities()
            filled.clear()

        for row, path in enumerate(paths):
            try:
                with self.filesystem.open_input_file(path[self.scheme_length :]) as file:
                    data = file.readall()
                rgb = qarep.decode_image(data, self.model)
            except Exception as error:  # the filesystem and Pillow raise OSError, ValueError, DecompressionBombError, ...
                errors[row] = f"{type(error).__name__}: {error}"
                continue
            self.inputs[len(filled)] = self.model.preprocess(rgb)
            filled.append(row)
            if len(filled) == self.session.max_batch:
                run()
        if filled:
            run()
        ok = np.array([e is None for e in errors])
        return pa.table({
            "path": pa.array(paths, pa.string()),
            "top1": pa.array(top5[:, 0], mask=~ok),
            "top1_label": pa.array([self.labels[c] if good else None for c, good in zip(top5[:, 0], ok)], pa.string()),
            "top5": pa.FixedSizeListArray.from_arrays(pa.array(top5.ravel()), top5.shape[1], mask=pa.array(~ok)),
            "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(probabilities.ravel()), classes, mask=pa.array(~ok)),
            "error": pa.array(errors, pa.string()),
        })


def classify(images_dir: str, model_path: str, output: str, actors: int = 0, batch: int = 64,
             threads: int = 0) -> dict:
    """Classifies the images under images_dir into parquet files in output, on the Ray this process is
    connected to. Returns what was chosen and how long the dataset took."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    if actors <= 0:
        actors = cpus  # one single-threaded session per CPU: no OpenMP barriers, decoding in parallel too
    if threads <= 0:
        threads = max(1, cpus // actors)
    if actors * threads > cpus:
        raise SystemExit(f"batch_classify: {actors} actors x {threads} threads need {actors * threads} CPUs; "
                         f"the cluster has {cpus}")
    if batch < 1:
        raise SystemExit(f"batch_classify: --batch is {batch}, expected at least 1")
    out_fs, out_path = pyarrow.fs.FileSystem.from_uri(output if "://" in output else os.path.abspath(output))
    if out_fs.get_file_info(out_path).type != pyarrow.fs.FileType.NotFound and \
            out_fs.get_file_info(pyarrow.fs.FileSelector(out_path, allow_not_found=True)):
        # write_parquet would add files beside the old ones, and a reader would see both runs' rows.
        raise SystemExit(f"batch_classify: {output} already has files; remove it or choose another --output")
    if __name__ != "__main__" and __name__ in sys.modules:
        # Imported as a module (a test, another script): the workers cannot import it by name, so Ray
        # ships the Classifier class by value, as it does for a script's own classes.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with open(model_path, "rb") as file:
        model_ref = ray.put(file.read())  # so that workers on other machines need not see model_path
    started = time.perf_counter()
    filesystem, scheme, paths = list_images(images_dir)
    if not paths:
        raise SystemExit(f"batch_classify: no images ({', '.join(IMAGE_EXTENSIONS)}) under {images_dir}")
    dataset = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=max(1, min(len(paths) // batch, actors * 8)))
    # With several threads per actor, libomp's would spin for 200 ms after each run while the actor decodes
    # the next batch on one of them (as in qarep classify, docs/performance.md "Photo pipeline"): let them sleep.
    runtime_env = {"env_vars": {"KMP_BLOCKTIME": "0"}} if threads > 1 else None
    dataset = dataset.map_batches(Classifier, fn_constructor_args=(model_ref, filesystem, scheme, threads, batch),
                                  batch_size=batch, compute=ray.data.ActorPoolStrategy(size=actors),
                                  num_cpus=threads, batch_format="numpy", runtime_env=runtime_env)
    # Writing costs little CPU; num_cpus=0 lets it run beside the actors that hold every CPU instead of
    # waiting for them to finish. But a task that needs no CPU is never held back, so Ray would start a
    # worker process (Python, ray, pyarrow: about a second of CPU each) for every block at once: one write
    # at a time per node instead.
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    dataset.write_parquet(output, ray_remote_args={"num_cpus": 0}, concurrency=max(1, nodes))
    return {"actors": actors, "threads": threads, "cpus": cpus, "images": len(paths),
            "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images_dir", help="folder of images, read recursively (a local path, or a URI such as s3://... on a cluster)")
    parser.add_argument("--model", required=True, help=".qarep model file (read here and shipped to the actors)")
    parser.add_argument("--output", required=True, help="folder (or URI) for the parquet files")
    parser.add_argument("--actors", type=int, default=0, help="model actors (default: one per CPU)")
    parser.add_argument("--batch", type=int, default=64, help="images per batch and per run (default 64)")
    parser.add_argument("--threads", type=int, default=0, help="threads per actor (default: CPUs / actors)")
    parser.add_argument("--num-cpus", type=int, default=0,
                        help="CPUs of the local Ray started here (default: all); not used with RAY_ADDRESS")
    args = parser.parse_args(argv)

    if os.environ.get("RAY_ADDRESS"):
        ray.init()  # connects to that cluster
    else:
        # address="local": a new Ray of this machine even when one is already running here (which a plain
        # ray.init() would join, and then refuse num_cpus).
        ray.init(address="local", num_cpus=args.num_cpus or None, include_dashboard=False)
    figures = classify(args.images_dir, args.model, args.output, args.actors, args.batch, args.threads)
    errors = pyarrow.parquet.read_table(args.output, columns=["error"]).column("error")
    rows, failed = len(errors), len(errors) - errors.null_count
    print(f"batch_classify: {rows} images ({failed} could not be decoded) in {figures['seconds']:.2f} s: "
          f"{figures['images'] / figures['seconds']:.1f} images/s ({figures['actors']} actors x {figures['threads']} threads "
          f"on {figures['cpus']} CPUs) -> {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
