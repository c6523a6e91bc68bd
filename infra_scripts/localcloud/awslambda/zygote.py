"""A pre-booted process that forks Lambda workers on request.

Lambda starts your init code in a runtime that is already up; forking from a process that has
already imported boto3 gives the same split here: a cold start pays for the handler module's
import, not for booting Python. The zygote is single-threaded (safe to fork) and receives each
worker's socket over its control socket (SCM_RIGHTS).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from multiprocessing.connection import Connection

import boto3  # noqa: F401  (preloaded for the workers: that is the point of the zygote)
import botocore.session  # noqa: F401

from infra_scripts.localcloud.awslambda.worker import WorkerSpec, worker_main

MAX_SPEC_BYTES = 1 << 20


def _serve_worker(control: socket.socket, worker_fd: int, spec: WorkerSpec) -> None:
    control.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()  # its own group: killing a worker takes anything its handler started
    try:
        worker_main(Connection(worker_fd), spec)
    finally:
        os._exit(0)


def main(control_fd: int) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished workers
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, MAX_SPEC_BYTES, 1)
        except OSError:
            return
        if not message:
            return  # the local cloud went away
        spec = WorkerSpec(**json.loads(message))
        pid = os.fork()
        if pid == 0:
            _serve_worker(control, fds[0], spec)
        os.close(fds[0])
        control.sendall(pid.to_bytes(8, "big"))


if __name__ == "__main__":
    main(int(sys.argv[1]))
