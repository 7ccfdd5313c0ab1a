"""QARep: INT8 inference for QARepVGG / RepVGG image classifiers, from Python.

A thin layer over the C API (include/qarep.h) of the bundled libqarep.so, numpy in and out::

    import qarep
    model = qarep.Model("model.qarep")
    session = qarep.Session(model, threads=0, max_batch=8)
    session.run(model.preprocess(qarep.decode_image("photo.jpg", model))[None])
    print(session.top_k(5)[0])

A ``Model`` is immutable and may be shared by any number of threads. A ``Session`` is one thread's
workspace (its buffers and the logits of its last run): give each thread its own. Every call into the
library releases the GIL, so threads with their own sessions run in parallel.
"""

from __future__ import annotations

import ctypes
import io
import json
import math
import operator
import os
import struct
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Sequence, TypeVar, Union

import numpy as np

from . import _capi
from ._capi import library_path
from ._errors import (
    BufferSizeError,
    InternalError,
    InvalidArgumentError,
    InvalidModelError,
    NoResultError,
    QARepError,
    QARepIOError,
    QARepMemoryError,
    UnsupportedKernelError,
    UnsupportedVersionError,
    check as _check,
)

__all__ = [
    "Model",
    "ModelInfo",
    "Session",
    "Prediction",
    "FileResult",
    "classify_files",
    "decode_image",
    "kernels",
    "library_path",
    "__version__",
    "QARepError",
    "InvalidArgumentError",
    "BufferSizeError",
    "QARepIOError",
    "InvalidModelError",
    "UnsupportedVersionError",
    "UnsupportedKernelError",
    "QARepMemoryError",
    "NoResultError",
    "InternalError",
]

_lib = _capi.lib
#: The library's version, "major.minor.patch"; the package has the same version.
__version__: str = _lib.qarep_version_string().decode()

_INT32_MAX = 2**31 - 1
_PREDICTION_DTYPE = np.dtype([("class_index", "<i4"), ("probability", "<f4"), ("label", "<u8")])
assert _PREDICTION_DTYPE.itemsize == ctypes.sizeof(_capi.PredictionStruct)


def kernels() -> list[str]:
    """Names of the kernel paths this CPU runs (besides "auto"), in the library's numbering."""
    names = []
    for value in range(1, _lib.qarep_kernel_count() + 1):
        if _lib.qarep_kernel_supported(value):
            names.append(_lib.qarep_kernel_name(value).decode())
    return names


def _int32(name: str, value: object) -> int:
    """An int that fits the C int32 the library takes; the library itself checks the range it accepts."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an int, got bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None
    if not -(2**31) <= number <= _INT32_MAX:
        raise ValueError(f"{name} is {number}, expected a value that fits in int32")
    return number


def _shape_text(shape: Sequence[object]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


def _checked_array(name: str, value: object, dtype: np.dtype, shape: Sequence[int | None]) -> np.ndarray:
    """``value`` as it is if it is a C-contiguous ndarray of ``dtype`` and ``shape`` (None: any size), else a
    ValueError (TypeError for a non-array) naming what was expected. Nothing is converted or copied: a
    silent copy or cast would hide a mistake and cost time on every call."""
    is_array = isinstance(value, np.ndarray)
    shape_ok = is_array and value.ndim == len(shape) and all(e is None or e == d for e, d in zip(shape, value.shape))
    if shape_ok and value.dtype == dtype and value.flags.c_contiguous:
        return value
    # Only a failure pays for the message.
    expected = f"a C-contiguous numpy.{np.dtype(dtype).name} array of shape {_shape_text(shape)}"
    if not is_array:
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")
    if value.dtype != dtype:
        raise ValueError(f"{name}: expected {expected}, got dtype {value.dtype}")
    if not shape_ok:
        raise ValueError(f"{name}: expected {expected}, got shape {list(value.shape)}")
    raise ValueError(f"{name}: expected {expected}, got a non-contiguous array (use numpy.ascontiguousarray)")


def _decode_margin() -> int:
    """QAREP_DECODE_MARGIN if it is an integer in 1...8, else 1: the CLI's rule, so that both decode alike."""
    try:
        value = int(os.environ.get("QAREP_DECODE_MARGIN", ""))
    except ValueError:
        return 1
    return value if 1 <= value <= 8 else 1


@dataclass(frozen=True)
class ModelInfo:
    """What a model takes and computes (qarep_model_info)."""

    input_height: int
    input_width: int
    input_channels: int
    num_classes: int
    layers: int
    """number of 3x3 conv layers"""
    format_version: int
    macs_per_image: float


class Prediction(NamedTuple):
    class_index: int
    label: str
    probability: float
    """softmax over all classes"""


def _read_metadata(header_source: Union[memoryview, str]) -> dict[str, str]:
    """The safetensors header's metadata (docs/model-format.md), for what the C API does not report: mean,
    std, crop_ratio. Called only after the library has accepted the file, so the header is known to be
    well-formed and at most 16 MiB."""
    if isinstance(header_source, (bytes, memoryview)):
        (length,) = struct.unpack_from("<Q", header_source, 0)
        header = bytes(header_source[8 : 8 + length])
    else:
        with open(header_source, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            header = file.read(length)
    return json.loads(header)["__metadata__"]


class _Handle:
    """Owns one library handle: freed by ``close()``, at the end of a ``with`` block, or when collected. A
    closed object passes NULL, which the library answers with InvalidArgumentError."""

    _handle: ctypes.c_void_p
    _release: Callable[[ctypes.c_void_p], None]

    def close(self) -> None:
        handle, self._handle = self._handle, ctypes.c_void_p()
        type(self)._release(handle)

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()


_H = TypeVar("_H", bound=_Handle)


# ``Model(..., winograd=)``: the QAREP_LOAD_* flags of each choice.
_WINOGRAD_FLAGS = {"auto": 0, "no-4x4": 0x1, "off": 0x2}


class Model(_Handle):
    """A loaded, validated model: ``Model(path)`` or ``Model(data)`` with the file's bytes.

    Immutable; share one model between threads and sessions. Raises QARepIOError for a file that cannot be
    read, InvalidModelError for a malformed one (the message names the key or tensor), and
    UnsupportedVersionError for a newer format than this library reads.

    ``winograd`` trades speed for memory, with the same results: ``"auto"`` keeps exact Winograd's
    transformed weights where the kernels find them faster (within a quarter of the machine's memory),
    ``"no-4x4"`` gives up F(4x4,3x3), ``"off"`` keeps the direct kernels' weights only (the least memory);
    ``packed_weight_bytes`` tells what was kept.
    """

    _release = staticmethod(_lib.qarep_model_release)  # sessions made from the model keep it alive

    def __init__(self, source: Union[str, os.PathLike, bytes, bytearray, memoryview], winograd: str = "auto"):
        self._handle = ctypes.c_void_p()
        handle = ctypes.c_void_p()
        if winograd not in _WINOGRAD_FLAGS:
            raise ValueError(f"winograd: expected one of {', '.join(_WINOGRAD_FLAGS)}, got {winograd!r}")
        flags = _WINOGRAD_FLAGS[winograd]
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = np.frombuffer(source, dtype=np.uint8)  # no copy; the library copies what it keeps
            _check(_lib.qarep_model_load_memory_with_flags(data.ctypes.data, data.size, flags, ctypes.byref(handle)))
            header_source: object = memoryview(data)
        elif isinstance(source, (str, os.PathLike)):
            path = os.fsencode(source)
            if b"\0" in path:
                raise ValueError("path: expected a file path without NUL characters")
            _check(_lib.qarep_model_load_file_with_flags(path, flags, ctypes.byref(handle)))
            header_source = os.fsdecode(path)
        else:
            raise TypeError(f"source: expected a path (str or os.PathLike) or the model file's bytes, got {type(source).__name__}")
        self._handle = handle
        raw = _capi.ModelInfoStruct()
        _check(_lib.qarep_model_get_info(self._handle, ctypes.byref(raw)))
        self._info = ModelInfo(raw.input_height, raw.input_width, raw.input_channels, raw.num_classes,
                               raw.num_conv_layers, raw.format_version, raw.macs_per_image)
        self._labels = tuple(
            (_lib.qarep_model_label(self._handle, i) or b"").decode("utf-8", "replace") for i in range(raw.num_classes)
        )
        metadata = _read_metadata(header_source)  # type: ignore[arg-type]
        self._mean = tuple(float(v) for v in json.loads(metadata["mean"]))
        self._std = tuple(float(v) for v in json.loads(metadata["std"]))
        self._crop_ratio = float(metadata["crop_ratio"])

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def packed_weight_bytes(self) -> int:
        """Bytes of the packed weights the model holds for its default kernel path."""
        size = ctypes.c_size_t()
        _check(_lib.qarep_model_packed_bytes(self._handle, ctypes.byref(size)))
        return size.value

    @property
    def labels(self) -> tuple[str, ...]:
        """One label per class, from the model file (``class_<i>`` where it has none)."""
        return self._labels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, 3): the shape of one preprocessed image."""
        return (self._info.input_height, self._info.input_width, 3)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel normalization on the 0..1 scale for ``Session.run_float``: x = (pixel/255 - mean) / std."""
        return self._mean

    @property
    def std(self) -> tuple[float, ...]:
        return self._std

    @property
    def crop_ratio(self) -> float:
        """1: images are resized straight to the input size; below 1: the shorter side is resized to
        size / crop_ratio, then center-cropped."""
        return self._crop_ratio

    def resize_size(self, width: int, height: int) -> tuple[int, int]:
        """The size ``preprocess`` resizes a width x height image to before its center crop
        (docs/model-format.md, Preprocessing; crop_ratio is a float32 in the library, the product is
        rounded half away from zero)."""
        w_in, h_in = self._info.input_width, self._info.input_height
        ratio = float(np.float32(self._crop_ratio))
        if ratio == 1:
            return (w_in, h_in)
        f = max(w_in / (width * ratio), h_in / (height * ratio))
        return (max(w_in, math.floor(width * f + 0.5)), max(h_in, math.floor(height * f + 0.5)))

    def decode_scale(self, width: int, height: int) -> int:
        """The JPEG DCT scale denominator (1, 2, 4 or 8) ``qarep classify`` decodes a width x height image at:
        the largest whose output, ceil(width / d) x ceil(height / d), still covers ``resize_size`` times the
        process's decode margin (``QAREP_DECODE_MARGIN``, 1-8, default 1, as the CLI reads it)."""
        target_w, target_h = self.resize_size(width, height)
        margin = _decode_margin()
        for d in (8, 4, 2):
            if -(-width // d) >= margin * target_w and -(-height // d) >= margin * target_h:
                return d
        return 1

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """Resizes and center-crops an RGB image of any size to the model's input, as its metadata says.

        rgb: uint8 [H, W, 3]; rows may be strided (e.g. a crop of a larger array) but each row's pixels
        must be contiguous. Returns a new uint8 [input_height, input_width, 3] array.
        """
        expected = "a numpy.uint8 array of shape [H, W, 3] with contiguous pixels (strides [row, 3, 1])"
        if not isinstance(rgb, np.ndarray):
            raise TypeError(f"rgb: expected {expected}, got {type(rgb).__name__}")
        if rgb.dtype != np.uint8:
            raise ValueError(f"rgb: expected {expected}, got dtype {rgb.dtype}")
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb: expected {expected}, got shape {list(rgb.shape)}")
        height, width = rgb.shape[0], rgb.shape[1]
        if rgb.size and (rgb.strides[2] != 1 or rgb.strides[1] != 3 or (height > 1 and rgb.strides[0] < width * 3)):
            raise ValueError(f"rgb: expected {expected}, got strides {list(rgb.strides)} (use numpy.ascontiguousarray)")
        if width > _INT32_MAX or height > _INT32_MAX:
            raise ValueError(f"rgb: image size {width}x{height} does not fit in int32")
        out = np.empty(self.input_shape, dtype=np.uint8)
        row_stride = rgb.strides[0] if height > 1 else width * 3
        _check(_lib.qarep_model_preprocess(self._handle, rgb.ctypes.data, width, height,
                                           row_stride, out.ctypes.data, out.nbytes))
        return out

    def __repr__(self) -> str:
        i = self._info
        return f"<qarep.Model {i.input_height}x{i.input_width}, {i.num_classes} classes, {i.layers} layers>"


class Session(_Handle):
    """A workspace for running one model on one thread at a time (qarep_session).

    threads: OpenMP threads, 0 = every online CPU. max_batch: the largest batch ``run`` takes (it sizes
    the buffers). kernel: "auto" (the fastest path this CPU has, or the QAREP_KERNEL environment
    variable) or a path name from ``qarep.kernels()``; every path gives identical outputs.

    The GIL is released while the library runs. A session is one thread's workspace: create one per thread;
    they may share one Model. A run started while another is going on the same session fails with
    InvalidArgumentError instead of mixing their buffers.
    """

    _release = staticmethod(_lib.qarep_session_destroy)

    def __init__(self, model: Model, threads: int = 0, max_batch: int = 8, kernel: Union[str, int] = "auto"):
        self._handle = ctypes.c_void_p()
        if not isinstance(model, Model):
            raise TypeError(f"model: expected a qarep.Model, got {type(model).__name__}")
        options = _lib.qarep_session_options_default()
        options.num_threads = _int32("threads", threads)
        options.max_batch = _int32("max_batch", max_batch)
        if isinstance(kernel, str):
            value = ctypes.c_int()
            _check(_lib.qarep_kernel_from_name(kernel.encode(), ctypes.byref(value)))
            options.kernel = value.value
        else:
            options.kernel = _int32("kernel", kernel)
        handle = ctypes.c_void_p()
        _check(_lib.qarep_session_create(model._handle, ctypes.byref(options), ctypes.byref(handle)))
        self._handle = handle
        self._model = model
        self._info = model.info
        self._image_shape = model.input_shape
        self._float_shape = (3, self._info.input_height, self._info.input_width)
        self._max_batch = options.max_batch
        self._threads = options.num_threads
        self._last_batch = 0

    @property
    def model(self) -> Model:
        return self._model

    @property
    def kernel(self) -> str:
        """The kernel path this session really runs (never "auto")."""
        name = _lib.qarep_kernel_name(_lib.qarep_session_kernel(self._handle))
        return name.decode() if name else "unknown"

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def threads(self) -> int:
        """Threads as requested (0: every online CPU)."""
        return self._threads

    def _logits(self, batch: int) -> np.ndarray:
        out = np.empty((batch, self._info.num_classes), dtype=np.float32)
        _check(_lib.qarep_session_get_logits(self._handle, out.ctypes.data, out.size))
        return out

    def run(self, images: np.ndarray) -> np.ndarray:
        """Runs preprocessed images, uint8 [N, input_height, input_width, 3] (C-contiguous, 1 <= N <=
        max_batch), and returns their logits, float32 [N, num_classes]."""
        images = _checked_array("images", images, np.uint8, (None, *self._image_shape))
        return self._run(_lib.qarep_session_run_u8, images, images.nbytes)

    def run_float(self, x: np.ndarray) -> np.ndarray:
        """Runs normalized float input, float32 NCHW [N, 3, input_height, input_width] with
        x = (pixel/255 - model.mean) / model.std; returns the logits, float32 [N, num_classes]."""
        x = _checked_array("x", x, np.float32, (None, *self._float_shape))
        return self._run(_lib.qarep_session_run_f32, x, x.size)

    def _run(self, function: Callable[..., int], data: np.ndarray, count: int) -> np.ndarray:
        """One library run of a checked array; count is in the function's units (bytes or floats)."""
        batch = data.shape[0]
        if batch > _INT32_MAX:
            raise ValueError(f"{batch} images, expected at most max_batch = {self._max_batch}")
        _check(function(self._handle, data.ctypes.data, count, batch))
        self._last_batch = batch
        return self._logits(batch)

    def _top_k_raw(self, k: int) -> tuple[list[np.ndarray], ctypes.Array]:
        """The library's top-k of every image of the last run, as structured numpy rows."""
        k = _int32("k", k)
        entries = max(1, min(k, self._info.num_classes))
        buffer = (_capi.PredictionStruct * entries)()
        count = ctypes.c_int32()
        rows = []
        # With no successful run, image 0 is asked for anyway so that the library reports NoResult.
        for image in range(max(self._last_batch, 1)):
            _check(_lib.qarep_session_top_k(self._handle, image, k if k < 1 else entries, buffer, ctypes.byref(count)))
            rows.append(np.frombuffer(buffer, dtype=_PREDICTION_DTYPE, count=count.value).copy())
        return rows, buffer

    def top_k(self, k: int = 5) -> list[list[Prediction]]:
        """The k most probable classes of each image of the last successful run, most probable first (ties: lower
        class index first); probabilities are the library's softmax over all classes."""
        rows, _ = self._top_k_raw(k)
        labels = self._model.labels
        return [
            [Prediction(int(c), labels[c], float(p)) for c, p in zip(row["class_index"], row["probability"])]
            for row in rows
        ]

    def probabilities(self) -> np.ndarray:
        """Softmax over all classes of each image of the last run, float32 [N, num_classes], as the library
        computes it for ``top_k``."""
        rows, _ = self._top_k_raw(self._info.num_classes)
        out = np.empty((len(rows), self._info.num_classes), dtype=np.float32)
        for i, row in enumerate(rows):
            out[i, row["class_index"]] = row["probability"]
        return out

    def __repr__(self) -> str:
        return f"<qarep.Session kernel={self.kernel} threads={self._threads} max_batch={self._max_batch}>"


def decode_image(source: Union[str, os.PathLike, bytes], model: Union[Model, None] = None) -> np.ndarray:
    """Decodes an image file (a path, or its bytes) with Pillow into RGB, uint8 [H, W, 3], C-contiguous.

    Given the model, a JPEG is decoded at the reduced DCT scale ``qarep classify`` uses (the smallest that
    still covers what the model's preprocessing resizes to; Pillow's ``draft``), which makes large photos
    several times cheaper and gives the pixels the command-line tool gets. Raises OSError (or
    PIL.Image.DecompressionBombError) for a file Pillow cannot read.
    """
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("qarep.decode_image needs Pillow: pip install pillow") from error
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with Image.open(stream) as image:
        if model is not None and image.format == "JPEG":
            d = model.decode_scale(*image.size)
            if d > 1:
                # Pillow picks the largest d' <= min(w // req_w, h // req_h); asking for w // d gives d itself.
                image.draft("RGB", (image.size[0] // d, image.size[1] // d))
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.ascontiguousarray(np.asarray(image))


class FileResult(NamedTuple):
    path: str
    predictions: Union[list[Prediction], None]
    """top-k, most probable first; None when the file could not be read"""
    error: Union[str, None] = None


def classify_files(
    model: Union[Model, str, os.PathLike],
    paths: Iterable[Union[str, os.PathLike]],
    batch: int = 8,
    threads: int = 0,
    top_k: int = 5,
    kernel: str = "auto",
    on_error: str = "raise",
) -> list[FileResult]:
    """Classifies JPEG/PNG (anything Pillow opens) files: ``decode_image``, ``model.preprocess``, run in
    batches of ``batch`` on one session of ``threads`` threads. Results keep the order of ``paths``.

    on_error="raise" raises the first decoding error (an OSError naming the file); "record" gives that
    file a FileResult with predictions None and the error's text, and goes on.
    """
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError("qarep.classify_files needs Pillow: pip install pillow") from error

    if on_error not in ("raise", "record"):
        raise ValueError(f'on_error is {on_error!r}, expected "raise" or "record"')
    if not isinstance(model, Model):
        model = Model(model)
    session = Session(model, threads=threads, max_batch=batch, kernel=kernel)
    results: list[FileResult] = []
    pending: list[tuple[int, str]] = []
    images = np.empty((session.max_batch, *model.input_shape), dtype=np.uint8)

    def flush() -> None:
        session.run(images[: len(pending)])
        for (index, path), predictions in zip(pending, session.top_k(top_k)):
            results[index] = FileResult(path, predictions)
        pending.clear()

    for path in paths:
        name = os.fspath(path)
        name = name if isinstance(name, str) else os.fsdecode(name)
        try:
            rgb = decode_image(name, model)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            if on_error == "raise":
                raise OSError(f"{name}: {error}") from error
            results.append(FileResult(name, None, str(error)))
            continue
        images[len(pending)] = model.preprocess(rgb)
        results.append(FileResult(name, None))
        pending.append((len(results) - 1, name))
        if len(pending) == session.max_batch:
            flush()
    if pending:
        flush()
    return results
