"""Fixtures for the cross-process tests: unique bus names, and Rust peers
(`busbar-peer`, the `busbar` command) started as real processes.

The binaries come from $BUSBAR_BIN_DIR (scripts/test-python.sh builds them
and sets it), else from the workspace's target/debug.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

import busbar

TOKEN = "py-tests"
# A hang guard, far beyond what a working bus needs; never a measure of speed.
HANG = 60.0
ROOT = Path(__file__).resolve().parents[3]


def binary(name: str) -> str:
    d = os.environ.get("BUSBAR_BIN_DIR") or str(ROOT / "target" / "debug")
    path = Path(d) / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build it (cargo build -p busbar-tests -p busbar-cli) or set BUSBAR_BIN_DIR")
    return str(path)


class Proc:
    """A child process whose stdout lines are read by a thread."""

    def __init__(self, args: list[str], stdin: bool = False) -> None:
        self.args = args
        self.p = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_err(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.err.append(line)

    def line(self, timeout: float = HANG) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"{self.args[0]}: no line within {timeout} s; so far {self.seen}")
        if line is None:
            self.p.wait(timeout=HANG)
            pytest.fail(f"{self.args}: exited {self.p.returncode} after {self.seen}; stderr: {''.join(self.err)}")
        self.seen.append(line)
        if line.startswith("FAIL"):
            pytest.fail(f"{self.args}: {line}")
        return line

    def expect(self, prefix: str, timeout: float = HANG) -> str:
        line = self.line(timeout)
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r} (before: {self.seen[:-1]})"
        return line

    def wait(self, timeout: float = HANG) -> int:
        return self.p.wait(timeout=timeout)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def bus(request: pytest.FixtureRequest) -> str:
    """A bus name of this test's own."""
    return f"py.{request.node.name[:24]}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


@pytest.fixture
def peer(procs: list[Proc], bus: str):
    """Starts `busbar-peer <role> --bus <bus> ...` and waits for its READY line."""

    def start(role: str, *args: str, ready: bool = True) -> tuple[Proc, int]:
        p = Proc([binary("busbar-peer"), role, "--bus", bus, "--token", TOKEN, *args])
        procs.append(p)
        ident = 0
        if ready:
            line = p.expect("READY ")
            ident = int(line.split()[1], 16)
        return p, ident

    return start


@pytest.fixture
def cli(procs: list[Proc], bus: str):
    """Starts `busbar <subcommand> --bus <bus> --token ... <args>`."""

    def start(sub: str, *args: str) -> Proc:
        p = Proc([binary("busbar"), sub, "--bus", bus, "--token", TOKEN, *args])
        procs.append(p)
        return p

    return start


@pytest.fixture
def join(bus: str) -> Iterator[object]:
    """busbar.join on this test's bus, closed at the end of the test."""
    opened: list[busbar.Endpoint] = []

    def j(label: str | list[str], **kw: object) -> busbar.Endpoint:
        kw.setdefault("token", TOKEN)
        kw.setdefault("timeout", HANG)
        ep = busbar.join(bus, label, **kw)  # type: ignore[arg-type]
        opened.append(ep)
        return ep

    yield j
    for ep in opened:
        ep.close()


def wait_listed(ep: busbar.Endpoint, label: str, n: int = 1) -> None:
    """Waits until `ep`'s directory lists `n` endpoints with `label`."""
    deadline = time.monotonic() + HANG
    while sum(label in e.label for e in ep.endpoints()) < n:
        if time.monotonic() > deadline:
            pytest.fail(f"{label} never joined: {ep.endpoints()}")
        time.sleep(0.005)


PYTHON = sys.executable
