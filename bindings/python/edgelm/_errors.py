"""edgelm.Error and its subclasses, one per elm_status where useful."""

from . import _lib

OK = 0
ERR_INVALID_ARG = 1
ERR_IO = 2
ERR_FORMAT = 3
ERR_UNSUPPORTED = 4
ERR_NO_MEMORY = 5
ERR_CONTEXT_FULL = 6
ERR_BUFFER_TOO_SMALL = 7
ERR_DEVICE = 8
ERR_NUMERIC = 9
ERR_INTERNAL = 10
ERR_TEMPLATE = 11
ERR_SIGNATURE = 12
ERR_STATE_MISMATCH = 13


def strerror(status):
    """The library's static description of a status (elm_strerror)."""
    return _lib.lib.elm_strerror(status).decode()


class Error(Exception):
    """A failed edgelm call: `status` is the elm_status number, `reason` its
    elm_strerror text and `message` the detailed message (the err buffer or
    elm_context_last_error), or the reason when the library gave none."""

    def __init__(self, status, message=""):
        self.status = status
        self.reason = strerror(status)
        self.message = message or self.reason
        super().__init__(status, self.message)

    def __str__(self):
        if self.message == self.reason:
            return self.message
        return "%s (%s)" % (self.message, self.reason)


class InvalidArgument(Error, ValueError):
    pass


class IOFailure(Error):
    pass


class FormatError(Error):
    pass


class Unsupported(Error):
    pass


class OutOfMemory(Error, MemoryError):
    pass


class ContextFull(Error):
    pass


class DeviceError(Error):
    pass


class NumericError(Error, ArithmeticError):
    pass


class TemplateError(Error):
    pass


class SignatureError(Error):
    pass


class StateMismatch(Error):
    pass


_BY_STATUS = {
    ERR_INVALID_ARG: InvalidArgument,
    ERR_IO: IOFailure,
    ERR_FORMAT: FormatError,
    ERR_UNSUPPORTED: Unsupported,
    ERR_NO_MEMORY: OutOfMemory,
    ERR_CONTEXT_FULL: ContextFull,
    ERR_DEVICE: DeviceError,
    ERR_NUMERIC: NumericError,
    ERR_TEMPLATE: TemplateError,
    ERR_SIGNATURE: SignatureError,
    ERR_STATE_MISMATCH: StateMismatch,
}


def error(status, message=""):
    """The exception for `status`: the subclass where there is one."""
    cls = _BY_STATUS.get(status, Error)
    e = cls.__new__(cls)
    Error.__init__(e, status, message)
    return e


def check(status, message=""):
    """Raises the exception for a failed status; returns None for ELM_OK.
    `message` may be a callable, called only on failure."""
    if status != OK:
        raise error(status, message() if callable(message) else message)
