"""Local model-server processes behind SageMaker endpoints: one container per instance.

Each instance is the PyTorch inference container: its own ``/opt/ml`` (``SAGEMAKER_BASE_DIR``)
whose ``model/`` it extracts from the model's ``model.tar.gz``, its own thin container on the
image (``containers.py``) and ``serving_container.py`` serving ``/ping`` and ``/invocations`` through
AWS's toolkits. Nothing comes from the project's tree or venv. (Tests of the fleet mechanics may
give a stand-in ``command`` instead.)

A ``Fleet`` holds the instances of one production variant. It routes round robin over the
InService ones and drains an instance (no request in flight) before stopping it, so scaling and
blue/green updates never drop a request. Archives are downloaded once per S3 object version.
"""

from __future__ import annotations

import atexit
import hashlib
import http.client
import itertools
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3

from infra_scripts.localcloud.core.processes import LOOPBACK, end_group, free_port, signal_group
from infra_scripts.localcloud.core.s3 import object_keys, relative_key, split_s3_uri
from infra_scripts.localcloud.sagemaker.containers import pytorch_image

# The SageMaker hosting contract: the container serves /ping and /invocations on the port in
# SAGEMAKER_BIND_TO_PORT. -I: neither this file's directory nor PYTHON* variables reach it.
SERVING_CONTAINER = Path(__file__).with_name("serving_container.py")
HOST = LOOPBACK
PING_INTERVAL_S = 0.1

_live: set[subprocess.Popen] = set()  # safety net if the cloud is never stopped


class InstanceFailed(Exception):
    """An instance could not reach InService; the message is the endpoint's FailureReason."""


class ModelDataError(Exception):
    """The model artifact could not be staged."""


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one instance of a variant."""

    model_source: Path  # a staged model.tar.gz, or a directory (uncompressed model data)
    env: dict[str, str]
    log_dir: Path
    command: Sequence[str] | None = None  # None: the PyTorch inference container
    variant: str = "AllTraffic"
    startup_timeout_s: float = 300.0
    invocation_timeout_s: float = 60.0
    stop_grace_s: float = 5.0


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


class ModelInstance:
    """One model-server process (an ``ml.*`` instance on AWS)."""

    def __init__(self, spec: LaunchSpec) -> None:
        self.id = f"i-{uuid.uuid4().hex[:17]}"
        self.spec = spec
        self.port = 0
        self.status = "Pending"  # Pending → InService → Draining → Stopped
        self.in_flight = 0
        self.invocations = 0
        self.process: subprocess.Popen | None = None
        self.stderr_path = spec.log_dir / f"{self.id}.stderr.log"
        self.stdout_path = spec.log_dir / f"{self.id}.stdout.log"
        self.base_dir = spec.log_dir / self.id  # the instance's /opt/ml
        self._pool: urllib3.HTTPConnectionPool | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self.port = free_port()
        self.spec.log_dir.mkdir(parents=True, exist_ok=True)
        model_dir = self.base_dir / "model"
        extract_model(self.spec.model_source, model_dir)
        env = {**self.spec.env, "SAGEMAKER_BIND_TO_PORT": str(self.port),
               "SAGEMAKER_BASE_DIR": str(self.base_dir)}
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            # Own session: the server's worker processes die with it (killpg).
            self.process = subprocess.Popen(
                self._argv(model_dir), env=env, cwd=self.base_dir, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        _live.add(self.process)
        self._pool = urllib3.HTTPConnectionPool(
            HOST, self.port, maxsize=256, block=False, retries=False,
            timeout=urllib3.Timeout(connect=2.0, read=self.spec.invocation_timeout_s),
        )

    def _argv(self, model_dir: Path) -> list[str]:
        if self.spec.command is None:
            python = pytorch_image().container(self.base_dir.with_name(f"{self.id}.container"))
            return [python, "-I", "-B", str(SERVING_CONTAINER)]
        values = {"python": sys.executable, "model": str(model_dir), "port": str(self.port),
                  "host": HOST}
        return [part.format(**values) for part in self.spec.command]

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def ping(self) -> bool:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=2.0)
        try:
            connection.request("GET", "/ping")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def wait_until_healthy(self, cancelled: threading.Event) -> None:
        """Block until /ping answers 200; raise InstanceFailed on exit, timeout or cancel."""
        deadline = time.monotonic() + self.spec.startup_timeout_s
        while True:
            code = self.exit_code()
            if code is not None:
                raise InstanceFailed(self._reason(f"model server exited with code {code}"))
            if self.ping():
                return
            if cancelled.is_set():
                raise InstanceFailed("cancelled")
            if time.monotonic() > deadline:
                raise InstanceFailed(self._reason(
                    f"model server did not answer /ping within {self.spec.startup_timeout_s:g} s"))
            time.sleep(PING_INTERVAL_S)

    def _reason(self, what: str) -> str:
        """SageMaker's FailureReason for a container that never became healthy, then what
        happened here (its CloudWatch log is this instance's stderr)."""
        line = last_line(self.stderr_path)
        return (f"The primary container for production variant {self.spec.variant} did not pass "
                f"the ping health check. Please check CloudWatch logs for this endpoint. "
                f"(Instance {self.id}: {what}" + (f"; last stderr line: {line})" if line else ")"))

    def invoke(self, body: bytes, headers: dict[str, str]) -> Reply:
        """POST /invocations; raises urllib3 errors when the process is unreachable."""
        assert self._pool is not None
        response = self._pool.urlopen("POST", "/invocations", body=body, headers=headers,
                                      preload_content=True, redirect=False)
        return Reply(response.status, response.data, dict(response.headers))

    def stop(self) -> None:
        self.status = "Stopped"
        if self._pool is not None:
            self._pool.close()
        if self.process is None:
            return
        end_group(self.process, self.spec.stop_grace_s)  # SIGKILL also reaches leftover workers
        _live.discard(self.process)
        # The instance's disk goes with it (the logs stay beside it).
        shutil.rmtree(self.base_dir, ignore_errors=True)
        shutil.rmtree(self.base_dir.with_name(f"{self.id}.container"), ignore_errors=True)


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_live):
        signal_group(process.pid, signal.SIGKILL)


class Fleet:
    """The instances of one production variant."""

    def __init__(self, variant: str, spec: LaunchSpec) -> None:
        self.variant = variant
        self.spec = spec
        self.instances: list[ModelInstance] = []
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._drained = threading.Condition(self._lock)

    def in_service(self) -> list[ModelInstance]:
        with self._lock:
            return [i for i in self.instances if i.status == "InService"]

    def launch(self, count: int) -> list[ModelInstance]:
        """Start ``count`` instances in parallel; they take traffic only once all are healthy.

        On any failure every instance of this launch is stopped and InstanceFailed raised.
        """
        started = [ModelInstance(self.spec) for _ in range(count)]
        try:
            for instance in started:
                if self.closed.is_set():
                    raise InstanceFailed("cancelled")
                instance.start()
                with self._lock:
                    self.instances.append(instance)
            for instance in started:
                instance.wait_until_healthy(self.closed)
            with self._lock:
                if self.closed.is_set():
                    raise InstanceFailed("cancelled")
                for instance in started:
                    instance.status = "InService"
        except BaseException:
            self._remove_and_stop(started)
            raise
        return started

    def _remove_and_stop(self, instances: list[ModelInstance]) -> None:
        with self._lock:
            self.instances = [i for i in self.instances if i not in instances]
        for instance in instances:
            instance.stop()

    def acquire(self) -> ModelInstance | None:
        """The next InService instance, round robin; the caller must release() it."""
        with self._lock:
            ready = [i for i in self.instances if i.status == "InService"]
            if not ready:
                return None
            instance = ready[next(self._turn) % len(ready)]
            instance.in_flight += 1
            instance.invocations += 1
            return instance

    def release(self, instance: ModelInstance) -> None:
        with self._lock:
            instance.in_flight -= 1
            self._drained.notify_all()

    def mark_unhealthy(self, instance: ModelInstance) -> None:
        with self._lock:
            if instance.status == "InService":
                instance.status = "Unhealthy"

    def retire(self, count: int, drain_timeout_s: float) -> None:
        """Take ``count`` instances (unhealthy ones first) out of rotation, drain, stop them."""
        with self._lock:
            candidates = sorted(self.instances, key=lambda i: i.status == "InService")
            leaving = candidates[:count]
            for instance in leaving:
                instance.status = "Draining"
        self._drain(leaving, drain_timeout_s)
        self._remove_and_stop(leaving)

    def _drain(self, instances: list[ModelInstance], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while any(i.in_flight for i in instances):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._drained.wait(remaining)

    def retire_all(self, drain_timeout_s: float) -> None:
        with self._lock:
            count = len(self.instances)
        self.retire(count, drain_timeout_s)

    def stop_now(self) -> None:
        """Stop everything without draining (delete, shutdown); cancels launches in progress."""
        self.closed.set()
        with self._lock:
            instances = list(self.instances)
            for instance in instances:
                instance.status = "Draining"
        self._remove_and_stop(instances)

    def unhealthy_instances(self) -> list[ModelInstance]:
        """Instances that failed a request or whose process exited."""
        with self._lock:
            for instance in self.instances:
                if instance.status == "InService" and instance.exit_code() is not None:
                    instance.status = "Unhealthy"
            return [i for i in self.instances if i.status == "Unhealthy"]


# -- model artifacts ---------------------------------------------------------------------------

class ArtifactStore:
    """Stages model data from (local) S3 into directories, once per object version."""

    def __init__(self, root: Path, s3_client: Callable[[], Any]) -> None:
        self.root = root
        self._s3_client = s3_client
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def stage(self, container: dict[str, Any], s3_client: Any = None) -> Path:
        """The container's model data: a downloaded model.tar.gz (checked to be one), or a
        directory for uncompressed data or none; read with ``s3_client`` (SageMaker reads it as
        the model's execution role) or the store's own."""
        source = container.get("ModelDataSource", {}).get("S3DataSource")
        url = container.get("ModelDataUrl") or (source or {}).get("S3Uri")
        if not url:
            target = self.root / "empty"
            target.mkdir(parents=True, exist_ok=True)
            return target
        compressed = (source or {}).get("CompressionType", "Gzip") != "None"
        bucket, key = _split_s3_url(url)
        client = s3_client or self._s3_client()
        version = self._version(client, bucket, key, compressed)
        digest = hashlib.sha256(f"{url}|{version}".encode()).hexdigest()[:20]
        target = self.root / (f"{digest}.tar.gz" if compressed else digest)
        with self._lock_for(digest):
            if not target.exists():
                self.root.mkdir(parents=True, exist_ok=True)
                staging = self.root / f".{digest}.{uuid.uuid4().hex}"
                try:
                    self._fetch(client, bucket, key, compressed, staging)
                    staging.rename(target)
                finally:  # whatever was left of a failed download
                    if staging.is_dir():
                        shutil.rmtree(staging, ignore_errors=True)
                    staging.unlink(missing_ok=True)
        return target

    def _lock_for(self, digest: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(digest, threading.Lock())

    @staticmethod
    def _version(client: Any, bucket: str, key: str, compressed: bool) -> str:
        try:
            if compressed:
                return str(client.head_object(Bucket=bucket, Key=key)["ETag"])
            listing = client.list_objects_v2(Bucket=bucket, Prefix=key)
            return ",".join(item["ETag"] for item in listing.get("Contents", []))
        except Exception as error:
            raise ModelDataError(
                f"Failed to download model data from s3://{bucket}/{key}: {error}") from error

    @staticmethod
    def _fetch(client: Any, bucket: str, key: str, compressed: bool, staging: Path) -> None:
        if not compressed:
            staging.mkdir(parents=True)
            _download_prefix(client, bucket, key, staging)
            return
        try:
            client.download_file(bucket, key, str(staging))
        except Exception as error:
            raise ModelDataError(
                f"Failed to download model data from s3://{bucket}/{key}: {error}") from error
        try:
            with tarfile.open(staging) as tar:
                tar.getmembers()  # a truncated or foreign file fails here, not per instance
        except (tarfile.TarError, OSError) as error:
            raise ModelDataError(
                f"Failed to extract model data from s3://{bucket}/{key} "
                f"(expected a model.tar.gz): {error}") from error


def extract_model(source: Path, model_dir: Path) -> None:
    """An instance's own copy of the model data in its ``/opt/ml/model``."""
    shutil.rmtree(model_dir, ignore_errors=True)
    if source.is_dir():
        shutil.copytree(source, model_dir)
        return
    model_dir.mkdir(parents=True)
    try:
        with tarfile.open(source) as tar:
            tar.extractall(model_dir, filter="data")  # refuses absolute paths and ../
    except (tarfile.TarError, OSError) as error:
        raise ModelDataError(f"Failed to extract model data: {error}") from error


def _download_prefix(client: Any, bucket: str, prefix: str, staging: Path) -> None:
    for key in object_keys(client, bucket, prefix):
        relative = relative_key(key, prefix)
        if relative is None:
            continue
        destination = staging / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(destination))


def _split_s3_url(url: str) -> tuple[str, str]:
    try:
        if "/" in url[5:]:
            return split_s3_uri(url)
    except ValueError:
        pass
    raise ModelDataError(f"Model data URL {url!r} is not an s3://bucket/key URL")
