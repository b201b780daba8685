"""recv_with: a message read where it lies, as a read-only memoryview
valid inside a with block, across processes."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import busbar
from conftest import HANG, PYTHON, TOKEN, Proc


def pattern(n: int) -> np.ndarray:
    """busbar_tests::pattern(n), the bytes busbar-peer's loan-send sends."""
    i = np.arange(n, dtype=np.int64)
    return ((i * 31 + n + (i >> 8)) % 251).astype(np.uint8)


def test_a_rust_loan_is_read_in_place(join, peer) -> None:
    ep = join(["py"])
    sender, _ = peer("loan-send", "--to", "py", "--sizes", "1048576,100", "--label", "rust")
    for n, fmt in ((1 << 20, 0), (100, 1)):
        with ep.recv_with(timeout=HANG) as m:
            view = m.data
            assert isinstance(view, memoryview) and view.readonly and view.obj is m
            assert (len(view), m.format, len(m)) == (n, fmt, n)
            assert m.data is view  # one view per message
            a = np.frombuffer(view, dtype=np.uint8)
            assert (a == pattern(n)).all()
            with pytest.raises(TypeError):
                view[0] = 1  # read-only
            with pytest.raises(RuntimeError):
                ep.recv(timeout=0)  # the receiver is lent out
            del a
        assert m.released
        with pytest.raises(ValueError):
            view[0]  # released with the block  # noqa: B018
        with pytest.raises(BufferError):
            m.data  # noqa: B018
    assert sender.expect("SENT 2")


def test_a_view_kept_past_the_block_delays_the_release(join, bus) -> None:
    ep = join(["py"])
    child = textwrap.dedent(
        f"""
        import busbar, numpy as np
        with busbar.join({bus!r}, "child", token={TOKEN!r}, timeout=60, controller=False) as ep:
            ep.send("py", np.full(1 << 20, 7, dtype=np.uint8), ttl=60)   # a loan (over 64 KiB)
            ep.send("py", b"small", ttl=60, format=3)                    # the link's ring
            ep.recv(timeout=60)
        """
    )
    proc = Proc([PYTHON, "-c", child])
    kept = None
    with pytest.raises(BufferError):
        with ep.recv_with(timeout=HANG) as m:
            kept = np.frombuffer(m.data, dtype=np.uint8)
            assert kept.sum() == 7 << 20
    assert not m.released  # the array still views it
    with pytest.raises(RuntimeError):
        ep.try_recv()
    del kept
    assert m.released
    with ep.recv_with(timeout=HANG) as m:
        assert (bytes(m.data), m.format) == (b"small", 3)
        source = m.source
    ep.send(source, b"bye")
    assert proc.wait() == 0


def test_recv_with_times_out_and_closes(join) -> None:
    ep = join(["py"])
    with pytest.raises(TimeoutError):
        ep.recv_with(timeout=0.05)
    ep.send("py", b"to myself")
    with ep.recv_with(timeout=HANG) as m:
        assert bytes(m.data) == b"to myself" and m.source == ep.id
    ep.close()
    with pytest.raises(busbar.ClosedError):
        ep.recv_with(timeout=1)


def test_a_lent_request_is_answered(join, cli) -> None:
    ep = join(["py"])
    asking = cli("request", "--to", "py", "--timeout", str(HANG), "lent question")
    with ep.recv_with(timeout=HANG) as m:
        assert m.is_request and bytes(m.data) == b"lent question"
        ep.reply(m, b"lent answer")
    assert asking.line() == "lent answer"
