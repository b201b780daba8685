"""busbar: an inter-process message bus for Linux, from Python.

    import busbar
    with busbar.join("com.example", ["recorder"], token="t", timeout=1.0) as ep:
        ep.send("camera & !mock", b"hi")
        m = ep.recv(timeout=0.5)      # m.data, m.format, m.fds, m.regions, m.source

See README.md beside this package for the whole API.
"""

from ._busbar import (
    PROTOCOL_VERSION,
    Endpoint,
    EndpointInfo,
    Expr,
    Fd,
    Lent,
    Loan,
    Message,
    Region,
    Registry,
    join,
)
from ._errors import *  # noqa: F403 (the exception classes)
from ._errors import __all__ as _error_names

__all__ = [
    "PROTOCOL_VERSION",
    "Endpoint",
    "EndpointInfo",
    "Expr",
    "Fd",
    "Lent",
    "Loan",
    "Message",
    "Region",
    "Registry",
    "join",
    *_error_names,
]
