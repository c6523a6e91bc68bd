"""Execution environments: processes forked by the runtime's init process (``bootstrap``), each
with its own Runtime API, and the local cloud's side of their lifecycle."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra_scripts.localcloud.awslambda.runtime_api import RuntimeApi
from infra_scripts.localcloud.awslambda.runtime_env import RuntimeEnvironment
from infra_scripts.localcloud.core.processes import signal_group

FORK_TIMEOUT_S = 10.0
MAX_MESSAGE = 1 << 16


class Zygote:
    """The runtime's init process; forks environments and reports when they exit."""

    def __init__(self, environment: RuntimeEnvironment) -> None:
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process = subprocess.Popen(
            environment.command(str(theirs.fileno()), str(environment.packages_dir)),
            pass_fds=[theirs.fileno()], env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._forks: dict[str, Future[int]] = {}
        self._exit_listeners: dict[int, Callable[[int], None]] = {}
        self._exited: dict[int, int] = {}  # exits that arrived before their listener
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, name="lambda-zygote", daemon=True).start()

    def fork(self, spec: dict, on_exit: Callable[[int], None]) -> int:
        token = uuid.uuid4().hex
        future: Future[int] = Future()
        with self._lock:
            self._forks[token] = future
        with self._send_lock:
            self._control.send(json.dumps({**spec, "token": token}).encode())
        pid = future.result(timeout=FORK_TIMEOUT_S)
        with self._lock:
            status = self._exited.pop(pid, None)
            if status is None:
                self._exit_listeners[pid] = on_exit
        if status is not None:
            on_exit(status)
        return pid

    def _read(self) -> None:
        while True:
            try:
                message = self._control.recv(MAX_MESSAGE)
            except OSError:
                return
            if not message:
                return
            event = json.loads(message)
            with self._lock:
                if "forked" in event:
                    self._forks.pop(event["token"]).set_result(int(event["forked"]))
                    continue
                listener = self._exit_listeners.pop(int(event["exited"]), None)
                if listener is None:
                    self._exited[int(event["exited"])] = int(event["status"])
            if listener is not None:
                listener(int(event["status"]))

    def stop(self) -> None:
        self._control.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@dataclass
class Environment:
    """One execution environment of one function version."""

    function_name: str
    version: str
    pool: str  # "" on demand, else the qualifier whose provisioned concurrency it belongs to
    log_path: Path
    log_stream: str
    memory_mb: int
    api: RuntimeApi = field(default_factory=RuntimeApi)
    pid: int = 0
    exit_status: int | None = None
    exited: threading.Event = field(default_factory=threading.Event)
    invocations: int = 0
    init_ms: float = 0.0
    oom_killed: bool = False
    log_writer: Any = None  # core.logs.RoleLogWriter, as the function's execution role

    def on_exit(self, status: int) -> None:
        self.exit_status = status
        self.exited.set()
        self.api.init.ready.set()  # an environment that died during init is not coming up

    def rss_mb(self) -> float:
        """Resident memory of the environment's process, what Lambda's memory limit counts."""
        try:
            with open(f"/proc/{self.pid}/statm") as statm:
                pages = int(statm.read().split()[1])
        except (OSError, IndexError, ValueError):
            return 0.0
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)

    def kill(self) -> None:
        if self.pid:
            signal_group(self.pid, signal.SIGKILL)
        self.api.close()


def exit_description(status: int) -> str:
    """How Lambda words a runtime's exit: "exit status 1" or "signal: killed"."""
    if status >= 0:
        return f"exit status {status}"
    names = {signal.SIGKILL: "killed", signal.SIGSEGV: "segmentation fault", signal.SIGABRT: "aborted",
             signal.SIGTERM: "terminated"}
    return f"signal: {names.get(signal.Signals(-status), signal.Signals(-status).name.lower())}"
