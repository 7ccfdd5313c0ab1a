"""ctypes declarations of include/qarep.h and the loading of libqarep.so.

ctypes rather than cffi: it ships with Python (no build step, no extra dependency), its CDLL calls release
the GIL for the duration of every foreign call, and the ABI is small and plain (opaque handles, int32,
size_t, two small structs) -- exactly what ABI-mode bindings handle well. cffi in ABI mode would add a
dependency for the same result.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, c_char_p, c_double, c_float, c_int, c_int32, c_size_t, c_uint32, c_void_p
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# The OpenMP runtime libqarep.so was linked against, by soname (libomp on x86_64, libgomp on aarch64). The
# wheel bundles a copy in _libs/ beside libqarep.so, for machines that have none installed.
_OPENMP_SONAMES = ("libomp.so.5", "libgomp.so.1")


class ModelInfoStruct(ctypes.Structure):
    _fields_ = [
        ("input_height", c_int32),
        ("input_width", c_int32),
        ("input_channels", c_int32),
        ("num_classes", c_int32),
        ("num_conv_layers", c_int32),
        ("format_version", c_uint32),
        ("macs_per_image", c_double),
    ]


class SessionOptionsStruct(ctypes.Structure):
    _fields_ = [("num_threads", c_int32), ("max_batch", c_int32), ("kernel", c_int)]


class PredictionStruct(ctypes.Structure):
    _fields_ = [("class_index", c_int32), ("probability", c_float), ("label", c_char_p)]


def _load_openmp(libs: Path) -> None:
    """Makes the OpenMP runtime's soname resolvable before libqarep.so is loaded.

    The bundled copy's name says which runtime this build links. If a runtime of that soname is already in
    the process (another package brought it), it is used: two copies of libomp in one process refuse to
    start. Otherwise the bundled copy is loaded with RTLD_GLOBAL, and libqarep.so's DT_NEEDED entry then
    resolves to it by soname. Without a bundled copy (a source build), the system's loader finds one.
    """
    for soname in _OPENMP_SONAMES:
        bundled = libs / soname
        if not bundled.exists():
            continue
        try:
            ctypes.CDLL(soname, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
        except OSError:
            ctypes.CDLL(str(bundled), mode=os.RTLD_GLOBAL)
        return


def _find_library() -> Path:
    override = os.environ.get("QAREP_LIBRARY")
    if override:
        return Path(override)
    return _HERE / "_libs" / "libqarep.so"


def _load() -> tuple[ctypes.CDLL, Path]:
    path = _find_library()
    if not path.exists():
        raise ImportError(
            f"qarep: the C library is missing at {path} (a wheel carries it in qarep/_libs; from a source "
            "checkout build it with `make lib` and set QAREP_LIBRARY to .build-embedded/ARCH/libqarep.so)"
        )
    _load_openmp(path.parent)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as error:
        raise ImportError(f"qarep: cannot load {path}: {error}") from error
    return lib, path


lib, library_path = _load()

_model_p = c_void_p
_session_p = c_void_p
_u8_p = c_void_p  # buffers are passed as addresses (numpy's .ctypes.data), which ctypes forwards unchanged
_f32_p = c_void_p


def _declare(name: str, restype, *argtypes) -> None:
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)


_declare("qarep_version", c_uint32)
_declare("qarep_version_string", c_char_p)
_declare("qarep_max_model_format_version", c_uint32)
_declare("qarep_status_string", c_char_p, c_int)
_declare("qarep_last_error_message", c_char_p)
_declare("qarep_kernel_count", c_int32)
_declare("qarep_kernel_supported", c_int, c_int)
_declare("qarep_kernel_name", c_char_p, c_int)
_declare("qarep_kernel_from_name", c_int, c_char_p, POINTER(c_int))
_declare("qarep_model_load_file", c_int, c_char_p, POINTER(_model_p))
_declare("qarep_model_load_memory", c_int, c_void_p, c_size_t, POINTER(_model_p))
_declare("qarep_model_load_file_with_flags", c_int, c_char_p, c_uint32, POINTER(_model_p))
_declare("qarep_model_load_memory_with_flags", c_int, c_void_p, c_size_t, c_uint32, POINTER(_model_p))
_declare("qarep_model_release", None, _model_p)
_declare("qarep_model_packed_bytes", c_int, _model_p, POINTER(c_size_t))
_declare("qarep_model_get_info", c_int, _model_p, POINTER(ModelInfoStruct))
_declare("qarep_model_label", c_char_p, _model_p, c_int32)
_declare("qarep_model_preprocess", c_int, _model_p, _u8_p, c_int32, c_int32, c_size_t, _u8_p, c_size_t)
_declare("qarep_session_options_default", SessionOptionsStruct)
_declare("qarep_session_create", c_int, _model_p, POINTER(SessionOptionsStruct), POINTER(_session_p))
_declare("qarep_session_destroy", None, _session_p)
_declare("qarep_session_kernel", c_int, _session_p)
_declare("qarep_session_run_u8", c_int, _session_p, _u8_p, c_size_t, c_int32)
_declare("qarep_session_run_f32", c_int, _session_p, _f32_p, c_size_t, c_int32)
_declare("qarep_session_get_logits", c_int, _session_p, _f32_p, c_size_t)
_declare("qarep_session_top_k", c_int, _session_p, c_int32, c_int32, POINTER(PredictionStruct), POINTER(c_int32))
