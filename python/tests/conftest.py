"""Shared fixtures: a model made by bench, the C example built against the library the binding loaded.

QAREP_TEST_MODEL names a .qarep file to use instead of making one; QAREP_BENCH the bench binary (default:
.build/release/bench of this checkout). Nothing here needs ../shared.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import qarep

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("QAREP_TEST_MODEL")
    if given:
        return Path(given)
    bench = Path(os.environ.get("QAREP_BENCH", REPO / ".build/release/bench"))
    if not bench.exists():
        raise RuntimeError(f"no test model: set QAREP_TEST_MODEL, or build bench ({bench}) with `swift build -c release`")
    path = tmp_path_factory.mktemp("model") / "a0-160.qarep"
    # A synthetic RepVGG-A0 at 160x160: real layer shapes, small enough to run 200 images in a second or two.
    subprocess.run([str(bench), "--arch", "A0", "--size", "160", "--iterations", "1", "--warmup", "0",
                    "--warmup-ms", "0", "--save", str(path)], check=True, stdout=subprocess.DEVNULL)
    return path


@pytest.fixture(scope="session")
def model(model_path: Path) -> qarep.Model:
    return qarep.Model(model_path)


@pytest.fixture(scope="session")
def c_classify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/c/classify compiled against the very libqarep.so this Python process loaded."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise RuntimeError("no C compiler (cc) to build examples/c/classify for the comparison")
    lib_dir = qarep.library_path.parent
    out = tmp_path_factory.mktemp("c") / "classify"
    subprocess.run([compiler, "-std=c99", "-O2", f"-I{REPO / 'include'}", str(REPO / "examples/c/classify.c"),
                    f"-L{lib_dir}", f"-Wl,-rpath,{lib_dir}", "-lqarep", "-lpng", "-ljpeg", "-o", str(out)], check=True)
    return out


def random_images(count: int, seed: int, min_side: int = 20, max_side: int = 300) -> list[np.ndarray]:
    """RGB images of random sizes: smooth gradients plus noise, so that resizing and the network see
    structure rather than white noise."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        h, w = rng.integers(min_side, max_side + 1, size=2)
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], axis=-1)
        noise = rng.integers(-40, 41, size=(h, w, 3))
        images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return images
