"""Minimal ctypes binding of libqarep's C API (include/qarep.h), for comparing logits with peer runtimes."""
import ctypes
import numpy as np


class SessionOptions(ctypes.Structure):
    _fields_ = [("num_threads", ctypes.c_int32), ("max_batch", ctypes.c_int32), ("kernel", ctypes.c_int)]


class ModelInfo(ctypes.Structure):
    _fields_ = [("input_height", ctypes.c_int32), ("input_width", ctypes.c_int32),
                ("input_channels", ctypes.c_int32), ("num_classes", ctypes.c_int32),
                ("num_conv_layers", ctypes.c_int32), ("format_version", ctypes.c_uint32),
                ("macs_per_image", ctypes.c_double)]


class QARep:
    def __init__(self, library_path, model_path, max_batch, threads=0):
        self.lib = lib = ctypes.CDLL(library_path)
        lib.qarep_last_error_message.restype = ctypes.c_char_p
        self.model = ctypes.c_void_p()
        self._check(lib.qarep_model_load_file(model_path.encode(), ctypes.byref(self.model)))
        self.info = ModelInfo()
        self._check(lib.qarep_model_get_info(self.model, ctypes.byref(self.info)))
        options = SessionOptions(threads, max_batch, 0)
        self.session = ctypes.c_void_p()
        self._check(lib.qarep_session_create(self.model, ctypes.byref(options), ctypes.byref(self.session)))

    def _check(self, status):
        if status != 0:
            raise RuntimeError("qarep: %s" % self.lib.qarep_last_error_message().decode())

    def logits(self, nhwc_u8):
        """Logits for a uint8 array [N, H, W, 3]."""
        images = np.ascontiguousarray(nhwc_u8, dtype=np.uint8)
        batch = images.shape[0]
        self._check(self.lib.qarep_session_run_u8(self.session, images.ctypes.data_as(ctypes.c_void_p),
                                                  ctypes.c_size_t(images.size), ctypes.c_int32(batch)))
        out = np.empty((batch, self.info.num_classes), dtype=np.float32)
        self._check(self.lib.qarep_session_get_logits(self.session, out.ctypes.data_as(ctypes.c_void_p),
                                                      ctypes.c_size_t(out.size)))
        return out

    def close(self):
        self.lib.qarep_session_destroy(self.session)
        self.lib.qarep_model_release(self.model)
