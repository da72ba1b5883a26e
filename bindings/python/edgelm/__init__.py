"""edgelm: Python bindings of libedgelm (ctypes; no compiled extension).

    import edgelm
    with edgelm.Model("stories260K.gguf") as model, edgelm.Context(model) as ctx:
        for tok in ctx.generate("Once upon a time", max_tokens=32, temperature=0):
            print(tok.text, end="", flush=True)

The library is found through $EDGELM_LIB, next to the installed package,
in a source checkout's build/ directory, or by ctypes.util.find_library.
Errors raise edgelm.Error (status, message) or one of its subclasses.
"""

from ._api import (  # noqa: F401
    Confidence, Context, Generation, Model, ModelInfo, Stats, Token, chat_template, devices,
    keygen, sign, verify, version,
)
from ._errors import (  # noqa: F401
    ContextFull, DeviceError, Error, FormatError, InvalidArgument, IOFailure, NumericError,
    OutOfMemory, SignatureError, StateMismatch, TemplateError, Unsupported, strerror,
)
from ._lib import lib_path as library_path  # noqa: F401

__all__ = [
    "Model", "Context", "Generation", "Token", "ModelInfo", "Stats", "Confidence",
    "chat_template", "devices", "version", "keygen", "sign", "verify", "strerror", "library_path",
    "Error", "InvalidArgument", "IOFailure", "FormatError", "Unsupported", "OutOfMemory",
    "ContextFull", "DeviceError", "NumericError", "TemplateError", "SignatureError",
    "StateMismatch",
]
