"""EC2 on the local cloud: an instance whose user data is a runnable script runs it locally.

User-data format (what ``handlers/ec2_user_data.py`` builds):

* a shell script (``#!/bin/bash``) containing the line ``# localcloud: runnable`` — the opt-in;
  other user data is stored and ignored, as moto does (no arbitrary scripts run on your machine);
* OS set-up between the lines ``# >>> os-setup`` and ``# <<< os-setup`` is skipped locally;
  the local cloud provides what such a block sets up instead: ``PYTHON`` (the project venv's
  interpreter), ``INSTANCE_ID``, ``AWS_ENDPOINT_URL``/region (``cloud.child_env``), the
  instance profile role's temporary credentials (none without a profile)
  ``STEPML_WORK_DIR`` (the instance's scratch dir) and ``TMPDIR`` (its own /tmp: nothing
  leaks between instances through this machine's /tmp, e.g. training checkpoints);
* ``shutdown``/``poweroff``/``halt`` (also as ``/sbin/...`` or via ``sudo``) are the instance
  shutting itself down: PATH shims record it and the instance's processes are ended.

The body runs as ``bash user-data.sh`` in ``<work_dir>/ec2/<instance-id>/`` with its own process
group; stdout+stderr go to ``console.log`` (``GetConsoleOutput`` returns its tail).

Instance state follows the script: ``pending`` → ``running`` once the script starts →
after a shutdown command, ``shutting-down`` → ``terminated`` (InstanceInitiatedShutdownBehavior
``terminate``) or ``stopping`` → ``stopped`` (``stop``, EC2's default), with state reason
``Client.InstanceInitiatedShutdown``. A script that exits *without* shutting down leaves the
instance ``running``, as on EC2 (option ``exit_means_shutdown`` treats exit as shutdown).
``TerminateInstances``/``StopInstances`` end the processes (SIGTERM, grace, SIGKILL) before they
return. Options (``settings.options["ec2_instances"]``): ``kill_grace_s`` (2),
``shutdown_delay_s`` (0.2, time spent in shutting-down/stopping), ``exit_means_shutdown`` (False).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra_scripts.localcloud.core.processes import end_group
from infra_scripts.localcloud.core.server import LocalCloud, python_executable

OPTIONS_KEY = "ec2_instances"
RUNNABLE_MARKER = "# localcloud: runnable"
OS_SETUP_BEGIN = "# >>> os-setup"
OS_SETUP_END = "# <<< os-setup"
CONSOLE_TAIL_BYTES = 64 * 1024  # what EC2's GetConsoleOutput returns at most
ABSOLUTE_SHUTDOWN = re.compile(r"(?<![\w/.-])(?:/usr)?/s?bin/(shutdown|poweroff|halt)\b")
SHUTDOWN_SHIM = """#!/bin/sh
echo "localcloud: $(basename "$0") $* -> the instance shuts down" >&2
: > "$LOCALCLOUD_SHUTDOWN_FILE"
"""
SUDO_SHIM = """#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -E|-n|-H|-S|-i) shift ;; *) break ;; esac; done
exec "$@"
"""
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48,
               "stopping": 64, "stopped": 80}


def is_runnable(script: str) -> bool:
    return script.startswith("#!") and RUNNABLE_MARKER in script.splitlines()


def local_script(script: str) -> str:
    """The script without its os-setup blocks, with absolute shutdown paths made shim-able."""
    lines: list[str] = []
    skipping = False
    for line in script.splitlines():
        marker = line.strip()
        if marker == OS_SETUP_BEGIN:
            skipping = True
            lines.append("# (os-setup skipped on the local cloud)")
        elif marker == OS_SETUP_END:
            skipping = False
        elif not skipping:
            lines.append(ABSOLUTE_SHUTDOWN.sub(r"\1", line))
    if skipping:
        raise ValueError(f"'{OS_SETUP_BEGIN}' without '{OS_SETUP_END}'")
    return "\n".join(lines) + "\n"


def decode_user_data(user_data: Any) -> str | None:
    """moto keeps user data as a Base64EncodedString (or a plain base64 string from templates)."""
    if user_data is None:
        return None
    try:
        if hasattr(user_data, "decode"):
            return str(user_data.decode())
        return base64.b64decode(str(user_data)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass
class InstanceRun:
    instance: Any  # moto's Instance
    script: str
    root: Path
    popen: subprocess.Popen | None = None
    ended: bool = False  # terminated/stopped (by API or by itself): no more state changes here
    lock: threading.RLock = field(default_factory=threading.RLock)
    thread: threading.Thread | None = None
    profile: Any = None  # moto's InstanceProfile named in RunInstances, or None

    @property
    def shutdown_file(self) -> Path:
        return self.root / "shutdown-requested"

    @property
    def console_path(self) -> Path:
        return self.root / "console.log"

    def console(self, tail_bytes: int = CONSOLE_TAIL_BYTES) -> str:
        try:
            with open(self.console_path, "rb") as console:
                console.seek(max(0, self.console_path.stat().st_size - tail_bytes))
                return console.read().decode("utf-8", "replace")
        except OSError:
            return ""


class LocalInstances:
    """Runs instances' user data; ``cloud.extensions['ec2.instances']``."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.root = cloud.work_dir / "ec2"
        self.runs: dict[str, InstanceRun] = {}
        self._closing = threading.Event()

    def option(self, name: str, default: Any) -> Any:
        return self.cloud.settings.option(OPTIONS_KEY, name, default)

    # -- helpers for tests and the CLI --------------------------------------------------------
    def console(self, instance_id: str) -> str:
        run = self.runs.get(instance_id)
        return run.console() if run else ""

    def wait(self, instance_id: str, timeout_s: float = 60.0) -> str:
        """Block until the script's watcher is done; returns the instance state."""
        run = self.runs[instance_id]
        if run.thread is not None:
            run.thread.join(timeout_s)
        return str(run.instance.state)

    # -- lifecycle ------------------------------------------------------------------------------
    def launch(self, instance: Any, script: str, profile: Any = None) -> None:
        run = InstanceRun(instance=instance, script=script, root=self.root / instance.id,
                          profile=profile)
        (run.root / "work").mkdir(parents=True, exist_ok=True)
        _set_state(instance, "pending")
        self.runs[instance.id] = run
        run.thread = threading.Thread(target=self._run, args=(run,),
                                      name=f"ec2-{instance.id}", daemon=True)
        run.thread.start()

    def _run(self, run: InstanceRun) -> None:
        with open(run.console_path, "ab") as console:
            try:
                body = local_script(run.script)
            except ValueError as error:
                console.write(f"localcloud: user data not run: {error}\n".encode())
                return
            (run.root / "user-data.sh").write_text(body)
            if not self._spawn(run, console):
                return
            shut_down = self._watch(run)
            if run.ended or self._closing.is_set():
                return  # terminated/stopped through the API, which ended the processes
            console.write(f"localcloud: user data exited with {run.popen.returncode}\n".encode())
            if not (shut_down or self.option("exit_means_shutdown", False)):
                console.write(b"localcloud: the script ended without shutting down; the "
                              b"instance keeps running, as it would on EC2\n")
                return
        self._instance_shutdown(run)

    def profile_credentials(self, run: InstanceRun) -> dict[str, str]:
        """The instance profile's role session (EC2 serves it from the metadata endpoint; here by
        environment); an instance without a profile has no AWS credentials at all."""
        roles = run.profile.roles if run.profile is not None else []
        if not roles:
            return {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""}
        return self.cloud.role_env(roles[0].arn, run.instance.id)

    def _spawn(self, run: InstanceRun, console: Any) -> bool:
        bin_dir = self._shims(run.root)
        env = self.cloud.child_env({
            **self.profile_credentials(run),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYTHON": python_executable(),
            "INSTANCE_ID": run.instance.id,
            "STEPML_WORK_DIR": str(run.root / "work"),
            "LOCALCLOUD_SHUTDOWN_FILE": str(run.shutdown_file),
            "TMPDIR": str(self.cloud.short_tmpdir(run.instance.id)),  # its own /tmp
        })
        with run.lock:
            if run.ended or self._closing.is_set():
                return False
            run.popen = subprocess.Popen(
                ["bash", str(run.root / "user-data.sh")], cwd=run.root, env=env,
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True)  # one group: shutdown/terminate end every child
            _set_state(run.instance, "running")
        return True

    def _watch(self, run: InstanceRun) -> bool:
        """Wait for the script; True when it asked for a shutdown."""
        assert run.popen is not None
        grace = float(self.option("kill_grace_s", 2))
        asked_at: float | None = None
        while run.popen.poll() is None:
            if run.ended or self._closing.is_set():
                return False  # TerminateInstances / cloud.stop kill the processes themselves
            if asked_at is None and run.shutdown_file.exists():
                asked_at = time.monotonic()
            if asked_at is not None and time.monotonic() - asked_at > grace:
                break  # the OS going down ends what is still running
            time.sleep(0.05)
        shut_down = run.shutdown_file.exists()
        if shut_down:
            end_group(run.popen, grace)
        return shut_down and not run.ended

    def _instance_shutdown(self, run: InstanceRun) -> None:
        from moto.ec2.models.instances import StateReason

        terminate = run.instance.instance_initiated_shutdown_behavior == "terminate"
        with run.lock:
            if run.ended or self._closing.is_set():
                return
            _set_state(run.instance, "shutting-down" if terminate else "stopping")
        time.sleep(float(self.option("shutdown_delay_s", 0.2)))
        with run.lock:
            if run.ended or self._closing.is_set():
                return
            run.ended = True
            if terminate:
                run.instance.terminate()
            else:
                run.instance.stop()
            run.instance.state_reason = StateReason(
                "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                "Client.InstanceInitiatedShutdown")
            run.instance._reason = "Client.InstanceInitiatedShutdown: Instance initiated shutdown"

    @staticmethod
    def _shims(root: Path) -> Path:
        bin_dir = root / "bin"
        bin_dir.mkdir(exist_ok=True)
        for name, text in (("shutdown", SHUTDOWN_SHIM), ("poweroff", SHUTDOWN_SHIM),
                           ("halt", SHUTDOWN_SHIM), ("sudo", SUDO_SHIM)):
            path = bin_dir / name
            path.write_text(text)
            path.chmod(0o755)
        return bin_dir

    def end(self, instance_ids: list[str], api_call: Any) -> Any:
        """Run moto's terminate/stop with the instances' locks held, then kill their processes
        (the watcher must not finish a self-shutdown over the API's state)."""
        runs = [self.runs[i] for i in dict.fromkeys(instance_ids) if i in self.runs]
        for run in runs:
            run.lock.acquire()
        try:
            result = api_call()
            for run in runs:
                run.ended = True
        finally:
            for run in runs:
                run.lock.release()
        grace = float(self.option("kill_grace_s", 2))
        for run in runs:
            if run.popen is not None:
                end_group(run.popen, grace)
        return result

    def shutdown(self) -> None:
        self._closing.set()
        for run in list(self.runs.values()):
            if run.popen is not None:
                end_group(run.popen, 0.0)
        for run in list(self.runs.values()):
            if run.thread is not None:
                run.thread.join(timeout=10)


def _set_state(instance: Any, name: str) -> None:
    from moto.ec2.models.instances import InstanceState

    instance._state = InstanceState(name, STATE_CODES[name])  # one assignment: readers see a pair


# -- wiring -------------------------------------------------------------------------------------
def _wrap_run_instances(instances: LocalInstances, original: Any) -> Any:
    def run_instances(backend: Any, *args: Any, **kwargs: Any) -> Any:
        reservation = original(backend, *args, **kwargs)
        profile = requested_profile(backend, kwargs)
        for instance in reservation.instances:
            script = decode_user_data(instance.user_data)
            if script and is_runnable(script):
                instances.launch(instance, script, profile)
        return reservation

    return run_instances


def requested_profile(backend: Any, run_arguments: dict[str, Any]) -> Any:
    """The instance profile RunInstances names. moto associates it only after run_instances
    returns (in its response handler), which races an instance that starts at once."""
    from moto.ec2.utils import filter_iam_instance_profiles

    name = run_arguments.get("iam_instance_profile_name")
    arn = run_arguments.get("iam_instance_profile_arn")
    if not (name or arn):
        return None
    return filter_iam_instance_profiles(backend.account_id, partition=backend.partition,
                                        iam_instance_profile_arn=arn, iam_instance_profile_name=name)


def _wrap_ending(instances: LocalInstances, original: Any) -> Any:
    def end_instances(backend: Any, instance_ids: list[str], *args: Any, **kwargs: Any) -> Any:
        return instances.end(list(instance_ids or []),
                             lambda: original(backend, instance_ids, *args, **kwargs))

    return end_instances


def _wrap_console_output(instances: LocalInstances, original: Any) -> Any:
    def get_console_output(response: Any) -> Any:
        run = instances.runs.get(response._get_param("InstanceId"))
        if run is None:
            return original(response)
        from moto.core.responses import ActionResult
        from moto.core.utils import utcnow
        from moto.ec2.utils import Base64EncodedString

        return ActionResult({"InstanceId": run.instance.id, "Timestamp": utcnow(),
                             "Output": Base64EncodedString.from_raw_string(run.console())})

    return get_console_output


def install(cloud: LocalCloud) -> LocalInstances:
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.responses.general import General

    from infra_scripts.localcloud.ec2.images import install_public_dlamis

    instances = LocalInstances(cloud)
    install_public_dlamis(cloud.patch)  # the AMI parameter StartEC2Training resolves
    cloud.patch(InstanceBackend, "run_instances",
                _wrap_run_instances(instances, InstanceBackend.run_instances))
    for name in ("terminate_instances", "stop_instances"):
        cloud.patch(InstanceBackend, name, _wrap_ending(instances, getattr(InstanceBackend, name)))
    cloud.patch(General, "get_console_output",
                _wrap_console_output(instances, General.get_console_output))
    cloud.on_stop(instances.shutdown)
    return instances
