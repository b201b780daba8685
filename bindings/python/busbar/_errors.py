"""busbar's exceptions: one class per error kind, each with a ``code``
shared with the C and Node.js bindings (see README.md)."""

import builtins


class Error(Exception):
    """Every error busbar raises (bad arguments raise TypeError/ValueError)."""

    code = "ERROR"


Error.__module__ = "busbar"


def _kind(name: str, code: str, doc: str, *bases: type) -> type:
    return type(name, (Error, *bases), {"code": code, "__doc__": doc, "__module__": "busbar"})


TimeoutError = _kind("TimeoutError", "TIMEOUT", "Nothing came in time (also the built-in TimeoutError).", builtins.TimeoutError)
ClosedError = _kind("ClosedError", "CLOSED", "The endpoint was closed (its with block ended).")
DisconnectedError = _kind("DisconnectedError", "DISCONNECTED", "The endpoint is disconnected from the bus.")
NoRouteError = _kind("NoRouteError", "NO_ROUTE", "No endpoint matches the selector (and its ttl is 0 or ran out).")
FullError = _kind("FullError", "FULL", "A receiver had no room and the send was not to wait (or its timeout ran out).")
WouldDeadlockError = _kind("WouldDeadlockError", "WOULD_DEADLOCK", "The endpoint's own queue is full and only the thread sending could empty it.")
TooManyObjectsError = _kind("TooManyObjectsError", "TOO_MANY_OBJECTS", "More descriptors and regions than one message carries (253).")
TooLargeError = _kind("TooLargeError", "TOO_LARGE", "A payload over max_payload.")
InvalidSelectorError = _kind("InvalidSelectorError", "INVALID_SELECTOR", "A selector that cannot travel (too long, nested too deep, multicast request).")
PendingFullError = _kind("PendingFullError", "PENDING_FULL", "Too much waits for a ttl already.")
CodecError = _kind("CodecError", "CODEC", "A payload that does not encode or decode.")
RegionError = _kind("RegionError", "REGION", "A memory region could not be made or mapped.")
NotARequestError = _kind("NotARequestError", "NOT_A_REQUEST", "reply() to a message that is not a request.")
ResponderGoneError = _kind("ResponderGoneError", "RESPONDER_GONE", "The endpoint asked left before it answered.")
AnswerError = _kind("AnswerError", "ANSWER", "An answer came that cannot be read.")
VersionMismatchError = _kind("VersionMismatchError", "VERSION_MISMATCH", "The bus speaks another protocol version.")
TokenMismatchError = _kind("TokenMismatchError", "TOKEN_MISMATCH", "The bus refused the token.")
PermissionDeniedError = _kind("PermissionDeniedError", "PERMISSION_DENIED", "The bus does not admit this user.")
BusFullError = _kind("BusFullError", "BUS_FULL", "The bus admits no more endpoints.")
UntrustedControllerError = _kind("UntrustedControllerError", "UNTRUSTED_CONTROLLER", "The bus controller runs as a user the access policy does not admit.")
InvalidIdentifierError = _kind("InvalidIdentifierError", "INVALID_IDENTIFIER", "A bus name that is empty, too long or has NUL.", builtins.ValueError)
NamespaceError = _kind("NamespaceError", "NAMESPACE", "The bus directory cannot be used.")
ProtocolError = _kind("ProtocolError", "PROTOCOL", "The bus controller said something this endpoint does not understand.")
IoError = _kind("IoError", "IO", "A system call failed.", builtins.OSError)
ParseError = _kind("ParseError", "PARSE", "A label expression that does not parse (also a ValueError).", builtins.ValueError)

__all__ = [
    "Error", "TimeoutError", "ClosedError", "DisconnectedError", "NoRouteError", "FullError",
    "WouldDeadlockError", "TooManyObjectsError", "TooLargeError", "InvalidSelectorError",
    "PendingFullError", "CodecError", "RegionError", "NotARequestError", "ResponderGoneError",
    "AnswerError", "VersionMismatchError", "TokenMismatchError", "PermissionDeniedError",
    "BusFullError", "UntrustedControllerError", "InvalidIdentifierError", "NamespaceError",
    "ProtocolError", "IoError", "ParseError",
]
