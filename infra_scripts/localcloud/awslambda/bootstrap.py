"""The init process of the local python3.11 runtime: it boots once, then forks one process per
execution environment, each of which AWS's runtime interface client (``awslambdaric``) drives.

It runs in the runtime environment only (``python -I -S bootstrap.py CONTROL_FD PACKAGES_DIR``,
see ``runtime_env``), so it may import the standard library, boto3 and awslambdaric and nothing
of the project. Booting imports what AWS's runtime has loaded before a function's init starts
(the client's Python modules) plus boto3, so a cold start pays for the handler module's import
and the client's start, not for booting Python.

Control socket (SOCK_SEQPACKET, one JSON message per packet):
    in:  an environment spec (see ``_serve_environment``)
    out: {"forked": PID, "token": T} for each spec, {"exited": PID, "status": S} when an
         environment's process ends (S: exit code, or minus the signal number)

Each forked environment, before the client runs the handler: its own session (a kill of the
group takes what the handler started), stdout/stderr to its log, the function's environment
variables, ``sys.path`` in Lambda's order (task root, layers under /opt, the runtime), and a
private mount namespace where every path but /tmp and /dev is read-only, as on AWS: a write
elsewhere fails with EROFS, "[Errno 30] Read-only file system".
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import sys

PYTHON_DIRS = ("python/lib/python3.11/site-packages", "python")  # Lambda's layer paths under /opt
PRELOADED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")
WRITABLE = ("/tmp", "/dev")
MAX_MESSAGE = 1 << 20


# -- read-only file system ------------------------------------------------------------------------
_CLONE_NEWNS, _CLONE_NEWUSER = 0x00020000, 0x10000000
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 1 << 18
_AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
_SYS_MOUNT_SETATTR = 442  # x86_64 and aarch64 share the number


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _new_mount_namespace(libc: ctypes.CDLL) -> None:
    """A private mount namespace; without CAP_SYS_ADMIN, inside a user namespace that maps the
    caller's own ids (so file ownership reads the same)."""
    if libc.unshare(_CLONE_NEWNS) == 0:
        return
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS), "unshare")
    with open("/proc/self/setgroups", "w") as setgroups:
        setgroups.write("deny")
    with open("/proc/self/uid_map", "w") as uid_map:
        uid_map.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as gid_map:
        gid_map.write(f"{gid} {gid} 1")


def _set_readonly(libc: ctypes.CDLL, path: str, readonly: bool, recursive: bool) -> None:
    attr = _MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0) if readonly else _MountAttr(0, _MOUNT_ATTR_RDONLY, 0, 0)
    flags = _AT_RECURSIVE if recursive else 0
    _check(libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, path.encode(), flags, ctypes.byref(attr),
                        ctypes.sizeof(attr)), f"mount_setattr {path}")


def make_filesystem_readonly(read_only_dirs: list[str]) -> None:
    """Everything read-only but /tmp and /dev; ``read_only_dirs`` (the task root and /opt, which
    may live below /tmp here) read-only too."""
    libc = ctypes.CDLL(None, use_errno=True)
    _new_mount_namespace(libc)
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make mounts private")
    # Each path becomes a mount of its own (a bind onto itself), so its flag can differ from its
    # parent's; the read-only directories last, as they may sit below /tmp.
    for path in [*WRITABLE, *read_only_dirs]:
        _check(libc.mount(path.encode(), path.encode(), None, _MS_BIND | _MS_REC, None), f"bind {path}")
    _set_readonly(libc, "/", readonly=True, recursive=True)
    for path in WRITABLE:
        _set_readonly(libc, path, readonly=False, recursive=True)
    for path in read_only_dirs:
        _set_readonly(libc, path, readonly=True, recursive=True)


# -- one execution environment --------------------------------------------------------------------
def _redirect_output(log_path: str) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def _lambda_sys_path(task_root: str, opt_dir: str | None) -> None:
    """Lambda's order: the task root, the layers' python paths, then the runtime and stdlib. A
    package the function ships (its own boto3, say) wins over the runtime's preloaded copy."""
    front = [task_root] + [os.path.join(opt_dir, sub) for sub in PYTHON_DIRS if opt_dir]
    sys.path[:0] = front
    shipped = {name for folder in front if os.path.isdir(folder) for name in os.listdir(folder)}
    for top in PRELOADED:
        if top in shipped:
            for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                del sys.modules[name]


def _run_client(spec: dict) -> None:
    # First import here, after the environment's variables are set: the client's C extension
    # fixes the Runtime API address when it loads, and its log format is read at import.
    from awslambdaric import bootstrap
    from awslambdaric.lambda_runtime_client import LambdaRuntimeClient

    # As awslambdaric's __main__ does; thread polling is for python3.12 and later only.
    bootstrap.run(spec["handler"], LambdaRuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"], False))


def _serve_environment(spec: dict) -> None:
    """spec: handler, task_root, opt_dir (or null), environment, log_path."""
    os.setsid()
    signal.set_wakeup_fd(-1)  # the init process's wake-up pipe is not this environment's
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _redirect_output(spec["log_path"])
    os.environ.clear()
    os.environ.update(spec["environment"])
    read_only = [spec["task_root"]] + ([spec["opt_dir"]] if spec["opt_dir"] else [])
    make_filesystem_readonly(read_only)
    _lambda_sys_path(spec["task_root"], spec["opt_dir"])
    os.chdir(spec["task_root"])
    _run_client(spec)


# -- the init process -----------------------------------------------------------------------------
def _fork_environment(control: socket.socket, spec: dict) -> None:
    pid = os.fork()
    if pid == 0:
        control.close()
        code = 0
        try:
            _serve_environment(spec)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException as error:  # the environment could not even start the client
            print(f"localcloud bootstrap: {error!r}", file=sys.stderr, flush=True)
            code = 70
        finally:
            os._exit(code)
    control.send(json.dumps({"forked": pid, "token": spec["token"]}).encode())


def _report_exits(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        try:
            control.send(json.dumps({"exited": pid, "status": os.waitstatus_to_exitcode(status)}).encode())
        except OSError:
            return  # the local cloud went away first; main() ends on the closed socket


def main(control_fd: int, packages_dir: str) -> None:
    sys.path.insert(0, packages_dir)
    # Preloaded for the environments (booting once is the point): boto3, and what the client
    # imports, short of the modules that load its C extension (see _run_client).
    import http.client  # noqa: F401
    import logging  # noqa: F401

    import boto3  # noqa: F401
    import botocore.session  # noqa: F401
    import simplejson  # noqa: F401
    from awslambdaric import lambda_context, lambda_runtime_log_utils, lambda_runtime_marshaller  # noqa: F401

    control = socket.socket(fileno=control_fd)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        ready, _, _ = select.select([control, wake_read], [], [])
        if wake_read in ready:
            os.read(wake_read, 4096)
            _report_exits(control)
        if control in ready:
            message = control.recv(MAX_MESSAGE)
            if not message:
                return  # the local cloud went away; environments die with their groups
            _fork_environment(control, json.loads(message))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
