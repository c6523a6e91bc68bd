"""Local compute processes: free loopback ports and whole-process-group signals.

Every local compute process (Lambda worker, training host, model server, instance script) runs
in its own session, so a signal to its group also reaches whatever it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port free on loopback now (the caller binds it next; the race is accepted locally)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid``; a group already gone is not an error."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(popen: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``grace_s``, reap the leader."""
    if grace_s > 0 and popen.poll() is None:
        signal_group(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    signal_group(popen.pid, signal.SIGKILL)
    popen.wait()
