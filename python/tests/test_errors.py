"""Every error path: each status arrives as its exception class with the library's message, and a wrong
buffer is refused before the call with a ValueError that says what was expected. Nothing crashes."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

import qarep
from qarep import _capi, _errors


def test_each_status_is_its_own_exception_class_with_the_library_message():
    expected = {
        1: qarep.InvalidArgumentError, 2: qarep.BufferSizeError, 3: qarep.QARepIOError, 4: qarep.InvalidModelError,
        5: qarep.UnsupportedVersionError, 6: qarep.UnsupportedKernelError, 7: qarep.QARepMemoryError,
        8: qarep.NoResultError, 9: qarep.InternalError,
    }
    value = _capi.ctypes.c_int()
    for status, cls in expected.items():
        # Leave a real message from the library on this thread, then map the status.
        assert _capi.lib.qarep_kernel_from_name(b"no such kernel", _capi.ctypes.byref(value)) == 1
        with pytest.raises(cls) as caught:
            _errors.check(status)
        assert isinstance(caught.value, qarep.QARepError) and caught.value.status == status
        assert "no such kernel" in caught.value.message
        assert caught.value.status_name == _capi.lib.qarep_status_string(status).decode()
    with pytest.raises(qarep.QARepError) as caught:
        _errors.check(4242)  # the enum may grow: an unknown status is still an error
    assert type(caught.value) is qarep.QARepError and caught.value.status == 4242
    assert issubclass(qarep.InvalidArgumentError, ValueError) and issubclass(qarep.QARepIOError, OSError)


def test_missing_file(tmp_path):
    with pytest.raises(qarep.QARepIOError, match="does-not-exist.qarep"):
        qarep.Model(tmp_path / "does-not-exist.qarep")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "bad-json", "missing-tensor"])
def test_corrupt_model_file(tmp_path, model_path, damage):
    data = bytearray(model_path.read_bytes())
    (length,) = struct.unpack_from("<Q", data)
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(os.urandom(4096))
    elif damage == "empty":
        data = bytearray()
    elif damage == "bad-json":
        data[8 + length // 2] = ord("{")
    else:
        header = json.loads(data[8 : 8 + length])
        del header["fc.weight"]
        text = json.dumps(header, separators=(",", ":")).encode().ljust(length)
        data[8 : 8 + length] = text
    path = tmp_path / "bad.qarep"
    path.write_bytes(bytes(data))
    with pytest.raises(qarep.InvalidModelError) as from_file:
        qarep.Model(path)
    with pytest.raises(qarep.InvalidModelError) as from_bytes:
        qarep.Model(bytes(data))
    assert from_file.value.message and from_file.value.message == from_bytes.value.message
    if damage == "missing-tensor":
        assert "fc.weight" in from_file.value.message


def test_newer_format_version(tmp_path, model_path):
    data = bytearray(model_path.read_bytes())
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"]["format_version"] = "2"
    data[8 : 8 + length] = json.dumps(header, separators=(",", ":")).encode().ljust(length)
    with pytest.raises(qarep.UnsupportedVersionError, match="2"):
        qarep.Model(bytes(data))


def test_null_ish_arguments(model, model_path):
    with pytest.raises(TypeError, match="expected a path"):
        qarep.Model(42)
    with pytest.raises(TypeError, match="expected a path"):
        qarep.Model(None)
    with pytest.raises(ValueError, match="NUL"):
        qarep.Model("model\0.qarep")
    with pytest.raises(TypeError, match="expected a qarep.Model"):
        qarep.Session(None)
    # A closed model or session hands the library a NULL handle: its own check answers.
    closed = qarep.Model(model_path)
    closed.close()
    with pytest.raises(qarep.InvalidArgumentError, match="model is NULL"):
        qarep.Session(closed)
    with pytest.raises(qarep.InvalidArgumentError, match="model is NULL"):
        closed.preprocess(np.zeros((4, 4, 3), np.uint8))
    session = qarep.Session(model, threads=1)
    session.close()
    with pytest.raises(qarep.InvalidArgumentError, match="session is NULL"):
        session.run(np.zeros((1, *model.input_shape), np.uint8))
    with pytest.raises(qarep.InvalidArgumentError, match="session is NULL"):
        session.top_k(1)
    session.close()  # twice is fine


def test_sessions_outlive_a_closed_model(model_path):
    owner = qarep.Model(model_path)
    session = qarep.Session(owner, threads=1)
    image = np.zeros((1, *owner.input_shape), np.uint8)
    before = session.run(image)
    owner.close()
    np.testing.assert_array_equal(session.run(image), before)


def test_bad_session_options(model):
    with pytest.raises(qarep.InvalidArgumentError, match="maxBatch is 0"):
        qarep.Session(model, max_batch=0)
    with pytest.raises(qarep.InvalidArgumentError, match="threads is -1"):
        qarep.Session(model, threads=-1)
    with pytest.raises(ValueError, match="int32"):
        qarep.Session(model, max_batch=2**40)
    with pytest.raises(TypeError, match="max_batch"):
        qarep.Session(model, max_batch=2.5)
    with pytest.raises(qarep.InvalidArgumentError, match="not a kernel name; known: auto, scalar"):
        qarep.Session(model, kernel="fastest")
    with pytest.raises(qarep.InvalidArgumentError):
        qarep.Session(model, kernel=999)


def test_kernel_this_cpu_lacks(model):
    lib = _capi.lib
    lacking = [lib.qarep_kernel_name(v).decode() for v in range(1, lib.qarep_kernel_count() + 1)
               if not lib.qarep_kernel_supported(v)]
    if not lacking:
        pytest.skip("UnsupportedKernelError: not run, this CPU runs every kernel path of the library")
    with pytest.raises(qarep.UnsupportedKernelError, match=lacking[0]):
        qarep.Session(model, kernel=lacking[0])


def test_workspace_larger_than_memory(model):
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    batch_bytes = 65536 * model.input_shape[0] * model.input_shape[1] * 48  # the widest A0 stage per pixel
    if batch_bytes < 2 * memory:
        pytest.skip(f"QARepMemoryError: not run, a max_batch 65536 workspace (~{batch_bytes >> 30} GiB) fits this machine")
    with pytest.raises(qarep.QARepMemoryError, match="exceeds this machine's memory"):
        qarep.Session(model, max_batch=65536)


def test_wrong_buffers_name_the_expectation(model):
    session = qarep.Session(model, threads=1, max_batch=2)
    h, w, _ = model.input_shape
    shape = f"[N, {h}, {w}, 3]"
    cases = [
        (np.zeros((1, h, w, 3), np.float32), ValueError, "got dtype float32"),
        (np.zeros((1, h, w, 4), np.uint8), ValueError, "got shape"),
        (np.zeros((h, w, 3), np.uint8), ValueError, "got shape"),
        (np.zeros((1, w + 1, h, 3), np.uint8), ValueError, "got shape"),
        (np.zeros((1, h, 2 * w, 3), np.uint8)[:, :, ::2], ValueError, "non-contiguous"),
        (np.zeros((1, h, w, 3), np.uint8).tolist(), TypeError, "got list"),
    ]
    for images, error, detail in cases:
        with pytest.raises(error) as caught:
            session.run(images)
        assert f"C-contiguous numpy.uint8 array of shape {shape}" in str(caught.value) and detail in str(caught.value)
    with pytest.raises(qarep.InvalidArgumentError, match="batch is 3, expected 1...2"):
        session.run(np.zeros((3, h, w, 3), np.uint8))
    with pytest.raises(qarep.InvalidArgumentError, match="batch is 0"):
        session.run(np.zeros((0, h, w, 3), np.uint8))
    with pytest.raises(ValueError, match=rf"float32 array of shape \[N, 3, {h}, {w}\], got dtype float64"):
        session.run_float(np.zeros((1, 3, h, w)))
    with pytest.raises(ValueError, match="got shape"):
        session.run_float(np.zeros((1, h, w, 3), np.float32))
    for rgb, detail in [(np.zeros((10, 10, 3), np.int32), "got dtype int32"), (np.zeros((10, 10), np.uint8), "got shape"),
                        (np.zeros((10, 10, 6), np.uint8)[:, :, ::2], "got strides"),
                        (np.zeros((10, 10, 3), np.uint8)[:, ::2], "got strides")]:
        with pytest.raises(ValueError, match=detail):
            model.preprocess(rgb)
    with pytest.raises(qarep.InvalidArgumentError, match="image size 0x10"):
        model.preprocess(np.zeros((10, 0, 3), np.uint8))


def test_results_before_a_run_and_bad_k(model):
    session = qarep.Session(model, threads=1, max_batch=1)
    with pytest.raises(qarep.NoResultError, match="no successful run"):
        session.top_k(5)
    session.run(np.zeros((1, *model.input_shape), np.uint8))
    with pytest.raises(qarep.InvalidArgumentError, match="k is 0"):
        session.top_k(0)
    before = session.top_k(3)
    # As in the C API, a failed run leaves the last successful run's results in place.
    with pytest.raises(qarep.InvalidArgumentError):
        session.run(np.zeros((2, *model.input_shape), np.uint8))
    assert session.top_k(3) == before


def test_buffer_size_status_from_the_library(model):
    # The Python layer sizes every buffer itself, so BufferSizeError is reached through the raw call.
    session = qarep.Session(model, threads=1)
    images = np.zeros((1, *model.input_shape), np.uint8)
    with pytest.raises(qarep.BufferSizeError, match=r"size is \d+, expected batch \* input_height"):
        _errors.check(_capi.lib.qarep_session_run_u8(session._handle, images.ctypes.data, images.nbytes - 1, 1))
