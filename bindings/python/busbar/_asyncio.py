"""Endpoint.recv_async: waits on the event loop for the endpoint's poll
descriptor (loop.add_reader), with no thread per receiver."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ._errors import TimeoutError as _Timeout

if TYPE_CHECKING:
    from ._busbar import Endpoint, Message

# Endpoints (by id()) with a recv_async waiting: the loop has one reader
# per descriptor, so two at once on one endpoint would steal each other's.
_waiting: set[int] = set()


async def recv_async(ep: Endpoint, timeout: float | None = None) -> Message:
    m = ep.try_recv()
    if m is not None:
        return m
    if timeout is not None and timeout < 0:
        raise ValueError(f"{timeout} is not a number of seconds (>= 0)")
    if id(ep) in _waiting:
        raise RuntimeError("another recv_async is waiting on this endpoint")
    loop = asyncio.get_running_loop()
    fd = ep.fileno()
    deadline = None if timeout is None else loop.time() + timeout
    _waiting.add(id(ep))
    try:
        while True:
            ready = loop.create_future()

            def wake(ready: asyncio.Future[None] = ready) -> None:
                if not ready.done():
                    ready.set_result(None)

            loop.add_reader(fd, wake)
            try:
                if deadline is None:
                    await ready
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise _Timeout("timed out waiting for a message")
                    try:
                        await asyncio.wait_for(ready, left)
                    except TimeoutError:
                        pass  # one more look, then the deadline check
            finally:
                loop.remove_reader(fd)
            m = ep.try_recv()
            if m is not None:
                return m
    finally:
        _waiting.discard(id(ep))
