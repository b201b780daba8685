"""A typed tour of the binding (checked by `mypy --strict` in the test run,
and run by tests/test_python.py): two endpoints in this process, bytes,
a label expression, a numpy array through a region, asyncio.

    python examples/roundtrip.py [BUS]
"""

from __future__ import annotations

import asyncio
import os
import sys

import numpy as np
import numpy.typing as npt

import busbar


def frame(region: busbar.Region) -> npt.NDArray[np.float32]:
    """The region's memory as a float32 array (a view: no copy)."""
    return np.frombuffer(memoryview(region), dtype=np.float32)


async def wait_async(ep: busbar.Endpoint) -> busbar.Message:
    return await ep.recv_async(timeout=5.0)


def main(bus: str) -> int:
    with busbar.join(bus, ["camera"], token="example", timeout=5.0) as camera, busbar.join(
        bus, ["recorder", "cpu"], token="example", timeout=5.0
    ) as recorder:
        to: busbar.Expr = busbar.Expr.leaf("recorder") & ~busbar.Expr("gpu")
        camera.send(to, b"hello", format=1, ttl=5.0)  # waits for recorder to be listed
        m: busbar.Message = recorder.recv(timeout=5.0)
        assert (m.data, m.format, m.source) == (b"hello", 1, camera.id)

        region = busbar.Region(4 * 1024)
        frame(region)[:] = np.arange(1024, dtype=np.float32)
        camera.send("recorder", np.zeros(4, dtype=np.uint8), regions=[region])
        got = recorder.recv(timeout=5.0)
        pixels = frame(got.regions[0])
        assert float(pixels[1023]) == 1023.0

        camera.send("recorder", np.ones(1 << 18, dtype=np.float32))  # 1 MiB: one copy, into a loan
        with recorder.recv_with(timeout=5.0) as lent:  # read in place, no copy
            total = float(np.frombuffer(lent.data, dtype=np.float32).sum())
        assert total == float(1 << 18)

        camera.send("recorder", bytearray(b"async"))
        assert asyncio.run(wait_async(recorder)).data == b"async"

        try:
            recorder.recv(timeout=0.01)
        except TimeoutError:
            pass
        names = sorted(label for e in camera.endpoints() for label in e.label)
        print(f"ok: {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else f"example.{os.getpid()}"))
