"""One exception class per qarep_status, each carrying the library's message."""

from __future__ import annotations

from . import _capi


class QARepError(Exception):
    """A call into libqarep failed. ``status`` is the qarep_status value, ``status_name`` the library's
    short description of it, ``message`` what the library said about this failure."""

    status: int = -1

    def __init_subclass__(cls, status: int, **kwargs: object) -> None:
        # Each subclass names its status once, here; check() finds it by that number.
        super().__init_subclass__(**kwargs)
        cls.status = status
        cls.__module__ = "qarep"  # shown as qarep.InvalidModelError, not the private module
        _BY_STATUS[status] = cls

    def __init__(self, message: str, status: int | None = None):
        if status is not None:
            self.status = status
        self.message = message
        self.status_name = _capi.lib.qarep_status_string(self.status).decode("utf-8", "replace")
        super().__init__(f"{self.status_name}: {message}")


QARepError.__module__ = "qarep"
_BY_STATUS: dict[int, type[QARepError]] = {}

# One class per qarep_status of include/qarep.h, with what the header says the status means.


class InvalidArgumentError(QARepError, ValueError, status=1):
    """QAREP_ERROR_INVALID_ARGUMENT: NULL handle, out-of-range count, bad option."""


class BufferSizeError(QARepError, ValueError, status=2):
    """QAREP_ERROR_BUFFER_SIZE: a buffer's size does not match what the call needs."""


class QARepIOError(QARepError, OSError, status=3):
    """QAREP_ERROR_IO: a file could not be opened or read."""


class InvalidModelError(QARepError, status=4):
    """QAREP_ERROR_INVALID_MODEL: the model file is malformed; the message names the tensor or key."""


class UnsupportedVersionError(QARepError, status=5):
    """QAREP_ERROR_UNSUPPORTED_VERSION: the model's format version is newer than this library reads."""


class UnsupportedKernelError(QARepError, status=6):
    """QAREP_ERROR_UNSUPPORTED_KERNEL: the requested kernel path cannot run on this CPU."""


class QARepMemoryError(QARepError, MemoryError, status=7):
    """QAREP_ERROR_OUT_OF_MEMORY."""


class NoResultError(QARepError, status=8):
    """QAREP_ERROR_NO_RESULT: results asked for before a successful run."""


class InternalError(QARepError, status=9):
    """QAREP_ERROR_INTERNAL."""


def check(status: int) -> None:
    """Raises the exception of a failed status with this thread's last error message."""
    if status == 0:
        return
    message = (_capi.lib.qarep_last_error_message() or b"").decode("utf-8", "replace")
    # The enum may grow: an unknown status is still an error, of the base class.
    cls = _BY_STATUS.get(status, QARepError)
    raise cls(message, status)

