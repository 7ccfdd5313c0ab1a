"""One exception class per qarep_status, each carrying the library's message."""

from __future__ import annotations

from . import _capi


class QARepError(Exception):
    """A call into libqarep failed. ``status`` is the qarep_status value, ``status_name`` the library's
    short description of it, ``message`` what the library said about this failure."""

    status: int = -1

    def __init__(self, message: str, status: int | None = None):
        if status is not None:
            self.status = status
        self.message = message
        self.status_name = _capi.lib.qarep_status_string(self.status).decode("utf-8", "replace")
        super().__init__(f"{self.status_name}: {message}")


class InvalidArgumentError(QARepError, ValueError):
    """QAREP_ERROR_INVALID_ARGUMENT: NULL handle, out-of-range count, bad option."""

    status = 1


class BufferSizeError(QARepError, ValueError):
    """QAREP_ERROR_BUFFER_SIZE: a buffer's size does not match what the call needs."""

    status = 2


class QARepIOError(QARepError, OSError):
    """QAREP_ERROR_IO: a file could not be opened or read."""

    status = 3


class InvalidModelError(QARepError):
    """QAREP_ERROR_INVALID_MODEL: the model file is malformed; the message names the tensor or key."""

    status = 4


class UnsupportedVersionError(QARepError):
    """QAREP_ERROR_UNSUPPORTED_VERSION: the model's format version is newer than this library reads."""

    status = 5


class UnsupportedKernelError(QARepError):
    """QAREP_ERROR_UNSUPPORTED_KERNEL: the requested kernel path cannot run on this CPU."""

    status = 6


class QARepMemoryError(QARepError, MemoryError):
    """QAREP_ERROR_OUT_OF_MEMORY."""

    status = 7


class NoResultError(QARepError):
    """QAREP_ERROR_NO_RESULT: results asked for before a successful run."""

    status = 8


class InternalError(QARepError):
    """QAREP_ERROR_INTERNAL."""

    status = 9


_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        BufferSizeError,
        QARepIOError,
        InvalidModelError,
        UnsupportedVersionError,
        UnsupportedKernelError,
        QARepMemoryError,
        NoResultError,
        InternalError,
    )
}


def check(status: int) -> None:
    """Raises the exception of a failed status with this thread's last error message."""
    if status == 0:
        return
    message = (_capi.lib.qarep_last_error_message() or b"").decode("utf-8", "replace")
    # The enum may grow: an unknown status is still an error, of the base class.
    cls = _BY_STATUS.get(status, QARepError)
    raise cls(message, status)

# Shown as qarep.InvalidModelError etc. in tracebacks: the public name, not the private module.
for _cls in (QARepError, *_BY_STATUS.values()):
    _cls.__module__ = "qarep"
