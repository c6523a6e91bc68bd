"""SageMaker training jobs on the local cloud: the training entry point runs as local processes.

``CreateTrainingJob`` (moto's backend method, wrapped) records the job as moto does and starts a
background run; ``DescribeTrainingJob``/``ListTrainingJobs``/tags stay moto's, reading the fields
the run updates on moto's job object. ``StopTrainingJob`` (absent in moto) is a route.

Lifecycle (``TrainingJobStatus`` / ``SecondaryStatus``)::

    InProgress/Starting → InProgress/Downloading (channels, source dir, checkpoints from S3)
      → InProgress/Training (one process per instance) → InProgress/Uploading → Completed/Completed
    a non-zero exit, a data or upload error → Failed/Failed with FailureReason
    StopTrainingJob → Stopping/Stopping → Stopped/Stopped (SIGTERM, grace, SIGKILL)
    MaxRuntimeInSeconds passed → Stopped/MaxRuntimeExceeded

Job layout under ``<work_dir>/sagemaker/training/<job>/``: ``input/data/<channel>`` (downloaded
once, linked into every host) and per host ``algo-N/``, that instance's ``/opt/ml``:
``input/config/{hyperparameters,resourceconfig,inputdataconfig}.json``, ``input/data``, ``code/``,
``model/``, ``output/`` (``failure``, ``data/``), ``checkpoints/`` and ``algo-N.log``; its container
(``containers.py``) is ``containers/algo-N/``.

What runs: on each host, the PyTorch training container's command, the ``sagemaker-training``
toolkit's ``train``, with ``SAGEMAKER_BASE_DIR`` at the host's directory. The toolkit does what it
does in the container: it reads the config files, downloads and extracts
``sagemaker_submit_directory`` from S3, pip-installs its ``requirements.txt``, runs
``sagemaker_program`` with the hyperparameters as ``--key value`` and the ``SM_*`` environment,
and writes ``output/failure`` when the entry point fails; ``sagemaker-pytorch-training``'s module
sets the rendezvous (``MASTER_ADDR``/``MASTER_PORT``: 127.0.0.1 and a free port here, since the
hosts' names do not resolve; ``SM_STUDIO_LOCAL_MODE`` skips the DNS wait for the same reason).

Logs: each host's stdout+stderr go to ``algo-N.log`` and to CloudWatch Logs (group
``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-N-<epoch>``), line by line.
Metrics: each line is searched with the job's ``MetricDefinitions`` regexes (first group, as a
float); ``FinalMetricDataList`` holds the latest value of each, live while training.
FailureReason: ``AlgorithmError: <reason>, exit code: N`` where reason is the failing host's
``output/failure`` (the toolkit's, or the script's own if the toolkit never ran), else its last
``error:`` line, else its last stderr line; ``ClientError: ...`` for bad channels or output location.

Options (``settings.options["sagemaker_training"]``): ``stop_grace_s`` (5).
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import signal
import subprocess
import tarfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.core.logs import put_log_lines
from infra_scripts.localcloud.core.moto_fields import set_fields, utcnow
from infra_scripts.localcloud.core.processes import free_port, signal_group
from infra_scripts.localcloud.core.requests import request_region
from infra_scripts.localcloud.core.s3 import object_keys
from infra_scripts.localcloud.core.s3 import split_s3_uri as s3_location
from infra_scripts.localcloud.core.server import (
    LocalCloud,
    aws_error,
    json_response,
    match_target,
)
from infra_scripts.localcloud.sagemaker.containers import CONTAINER_ENV, pytorch_image

OPTIONS_KEY = "sagemaker_training"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# The PyTorch training container: its command is the toolkit's ``train``, which runs the framework
# module its Dockerfile names. One substitution: that module points MASTER_ADDR/MASTER_PORT at
# algo-1:7777, and here every host of every job shares one network namespace where algo-N does not
# resolve, so they become 127.0.0.1 and a port of the job's own.
FRAMEWORK_MODULE = {"SAGEMAKER_TRAINING_MODULE": "sagemaker_pytorch_container.training:main"}
TRAIN_COMMAND = """
import os
from sagemaker_pytorch_container import training


def loopback_rendezvous(training_env):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = os.environ["LOCALCLOUD_MASTER_PORT"]


training._set_distributed_environment = loopback_rendezvous
from sagemaker_training.cli.train import main
main()
"""
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
MAX_REASON = 1024
# Every local job runs as with EnableNetworkIsolation: it reaches the local cloud on loopback
# and nothing else (clients that honour the proxy variables, as urllib, torch.hub, requests and
# botocore do, get "connection refused" from the discard port). Inputs come as channels.
NETWORK_ISOLATION = {name: "http://127.0.0.1:9" for name in
                     ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
NETWORK_ISOLATION.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "The training job was stopped",
    "MaxRuntimeExceeded": "The job stopped because it exceeded the maximum allowed runtime",
}


class JobError(Exception):
    """A failure SageMaker blames on the request or its data (FailureReason ``ClientError``)."""



# -- run state ------------------------------------------------------------------------------
@dataclass
class HostProcess:
    host: str
    popen: subprocess.Popen
    log: IO[str]
    stream: str
    readers: list[threading.Thread] = field(default_factory=list)
    last_error: str | None = None
    stderr_tail: deque = field(default_factory=lambda: deque(maxlen=20))


@dataclass
class TrainingRun:
    job: Any  # moto's FakeTrainingJob; the run writes its response fields
    region: str
    root: Path
    metric_patterns: list[tuple[str, re.Pattern[str]]]
    stop_requested: threading.Event = field(default_factory=threading.Event)
    stop_status: str = "Stopped"
    hosts: list[HostProcess] = field(default_factory=list)
    metrics: dict[str, tuple[float, datetime]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return str(self.job.training_job_name)

    def host_dir(self, host: str) -> Path:
        return self.root / host

    def pids(self) -> list[int]:
        return [h.popen.pid for h in self.hosts]


# -- the extension ------------------------------------------------------------------------
class LocalTraining:
    """Runs and tracks the local cloud's training jobs; ``cloud.extensions['sagemaker.training']``."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.root = cloud.work_dir / "sagemaker" / "training"
        self.runs: dict[str, TrainingRun] = {}  # by job ARN
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def option(self, name: str, default: Any) -> Any:
        return self.cloud.settings.option(OPTIONS_KEY, name, default)

    # -- public helpers (CLI progress, tests, HPO) -------------------------------------------
    def run_for(self, name: str, region: str | None = None) -> TrainingRun | None:
        from moto.sagemaker.models import FakeTrainingJob

        arn = FakeTrainingJob.arn_formatter(name, self.cloud.account_id, region or self.cloud.region)
        return self.runs.get(arn)

    def log_text(self, name: str, region: str | None = None) -> str:
        """All hosts' log lines of a job, host by host."""
        run = self.run_for(name, region)
        if run is None:
            return ""
        return "".join(p.read_text(errors="replace") for p in sorted(run.root.glob("algo-*/*.log")))

    def wait(self, name: str, timeout_s: float = 60.0, region: str | None = None) -> str:
        """Block until the job is terminal; returns its TrainingJobStatus."""
        run = self.run_for(name, region)
        if run is None:
            raise KeyError(name)
        if run.thread is not None:
            run.thread.join(timeout_s)
        return str(run.job.training_job_status)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, job: Any, region: str) -> TrainingRun:
        run = TrainingRun(job=job, region=region, root=self.root / job.training_job_name,
                          metric_patterns=_metric_patterns(job.algorithm_specification))
        if run.root.exists():  # a name reused after moto's reset: start clean
            shutil.rmtree(run.root, ignore_errors=True)
        run.root.mkdir(parents=True)
        with self._lock:
            self.runs[job.arn] = run
        run.thread = threading.Thread(target=self._execute, args=(run,),
                                      name=f"training-{run.name}", daemon=True)
        run.thread.start()
        return run

    def request_stop(self, run: TrainingRun) -> None:
        with run.lock:
            if run.job.training_job_status in TERMINAL:
                return
            if run.job.training_job_status != "Stopping":
                _transition(run, "Stopping", primary="Stopping")
        run.stop_requested.set()

    def shutdown(self) -> None:
        """Kill every job's processes at once (cloud.stop); no uploads, no status changes."""
        self._closing.set()
        runs = list(self.runs.values())
        for run in runs:
            run.stop_requested.set()
            for host in run.hosts:
                signal_group(host.popen.pid, signal.SIGKILL)
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=10)

    def _execute(self, run: TrainingRun) -> None:
        try:
            self._lifecycle(run)
        except JobError as error:
            self._finish(run, "Failed", reason=f"ClientError: {error}")
        except Exception as error:  # a bug here must still end the job as Failed
            self._system_log(run, traceback.format_exc())
            self._finish(run, "Failed", reason=f"InternalServerError: {error!r}")
        finally:
            for host in run.hosts:
                signal_group(host.popen.pid, signal.SIGKILL)
                with run.lock:
                    host.log.close()

    def _lifecycle(self, run: TrainingRun) -> None:
        set_fields(run.job, training_start_time=utcnow())
        _transition(run, "Downloading")
        self._download_inputs(run)
        _require_s3_source(run)
        if run.stop_requested.is_set():
            self._finish(run, run.stop_status)
            return
        failed = self._train(run)
        if self._closing.is_set():
            return
        if failed is not None:
            self._finish(run, "Failed", reason=_failure_reason(run, failed))
            return
        stopped = run.stop_requested.is_set()
        if not stopped:
            _transition(run, "Uploading")
        self._upload_outputs(run)  # a stopped job keeps what it saved, as on SageMaker
        self._finish(run, run.stop_status if stopped else "Completed")

    def _finish(self, run: TrainingRun, outcome: str, reason: str | None = None) -> None:
        if self._closing.is_set():
            return
        job = run.job
        with run.lock:
            if job.training_job_status in TERMINAL:
                return
            end = utcnow()
            start = job.training_start_time or job.creation_time
            seconds = max(1, int((end - start).total_seconds()))
            set_fields(job, training_end_time=end, training_time_in_seconds=seconds,
                 billable_time_in_seconds=seconds)
            if reason:
                set_fields(job, failure_reason=reason[:MAX_REASON])  # visible before the status
            primary = "Stopped" if outcome == "MaxRuntimeExceeded" else outcome
            _transition(run, outcome, primary=primary)

    # -- inputs ------------------------------------------------------------------------------
    def _download_inputs(self, run: TrainingRun) -> None:
        for channel in run.job.input_data_config or []:
            name = channel["ChannelName"]
            source = channel.get("DataSource", {}).get("S3DataSource")
            if not source:
                raise JobError(f"channel {name}: only S3DataSource is supported locally")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise JobError(f"channel {name}: S3DataType {source['S3DataType']} is not "
                               "supported locally (use S3Prefix)")
            count = self._download_prefix(run, source["S3Uri"], run.root / "input" / "data" / name)
            if count == 0:
                raise JobError(f'No S3 objects found under S3 URL "{source["S3Uri"]}" given in '
                               f"input data source of channel {name}.")
        checkpoint = run.job.checkpoint_config or {}
        if checkpoint.get("S3Uri"):
            self._download_prefix(run, checkpoint["S3Uri"], run.host_dir("algo-1") / "checkpoints")

    def _download_prefix(self, run: TrainingRun, uri: str, target: Path) -> int:
        bucket, prefix = split_s3_uri(uri)
        s3 = self._s3(run)
        keys = list(_list_keys(s3, bucket, prefix))
        target.mkdir(parents=True, exist_ok=True)

        def fetch(key: str) -> None:
            relative = key[len(prefix):].lstrip("/") or key.rsplit("/", 1)[-1]
            destination = (target / relative).resolve()
            if not destination.is_relative_to(target.resolve()):
                raise JobError(f"object key {key!r} escapes the channel directory")
            destination.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(destination))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(fetch, keys))
        return len(keys)

    # -- training ----------------------------------------------------------------------------
    def _train(self, run: TrainingRun) -> HostProcess | None:
        """Run the toolkit once per instance, as each instance's container does; returns the host
        that failed, or None."""
        count = int((run.job.resource_config or {}).get("InstanceCount", 1))
        hosts = [f"algo-{index + 1}" for index in range(count)]
        port = free_port()
        image = pytorch_image()
        for host in hosts:
            env = self._host_env(run, host, hosts, port)
            python = image.container(run.root / "containers" / host)
            command = [python, "-c", TRAIN_COMMAND]
            run.hosts.append(self._spawn(run, host, command, run.host_dir(host), env))
        _transition(run, "Training")  # only once every host's process exists
        return self._watch(run)

    def _watch(self, run: TrainingRun) -> HostProcess | None:
        limit = (run.job.stopping_condition or {}).get("MaxRuntimeInSeconds")
        deadline = time.monotonic() + float(limit) if limit else None
        while True:
            codes = [host.popen.poll() for host in run.hosts]
            failed = next((h for h, c in zip(run.hosts, codes, strict=True) if c), None)
            if failed is not None or all(c == 0 for c in codes):
                break
            if deadline is not None and time.monotonic() > deadline:
                run.stop_status = "MaxRuntimeExceeded"
                run.stop_requested.set()
            if run.stop_requested.is_set():
                grace = 0.0 if self._closing.is_set() else float(self.option("stop_grace_s", 5))
                _terminate(run.hosts, grace)
                failed = None
                break
            run.stop_requested.wait(0.1)
        if failed is not None:  # SageMaker ends the other hosts when one fails
            _terminate(run.hosts, 1.0)
        for host in run.hosts:
            signal_group(host.popen.pid, signal.SIGKILL)  # orphaned workers would hold the pipes
            for reader in host.readers:
                reader.join(timeout=5)
        return failed

    def _host_env(self, run: TrainingRun, host: str, hosts: list[str],
                  port: int) -> dict[str, str]:
        """The instance's /opt/ml (its own ``SAGEMAKER_BASE_DIR``) and the container's
        environment; the toolkit derives every ``SM_*`` variable from these files."""
        job = run.job
        base = run.host_dir(host)
        for sub in ("model", "output/data", "checkpoints", "input/config"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        data = base / "input" / "data"
        if not data.exists():  # FullyReplicated: every instance sees the whole channel
            data.symlink_to(run.root / "input" / "data", target_is_directory=True)
        self._write_config(base / "input" / "config", run, host, hosts)
        env = {
            "SAGEMAKER_BASE_DIR": str(base),
            **CONTAINER_ENV,
            **FRAMEWORK_MODULE,
            "LOCALCLOUD_MASTER_PORT": str(port),
            # The toolkit waits until every host name resolves (_wait_hostname_resolution);
            # algo-N never does here. SageMaker local mode skips the wait with this.
            "SM_STUDIO_LOCAL_MODE": "true",
            "TRAINING_JOB_NAME": run.name,
            "TRAINING_JOB_ARN": str(job.arn),
            "AWS_REGION": run.region,
            "TMPDIR": str(self.cloud.short_tmpdir(host)),  # each instance has its own /tmp
        }
        env.update({str(k): str(v) for k, v in (job.environment or {}).items()})
        # The container runs as the job's role (SageMaker: the RoleArn of CreateTrainingJob).
        role = self.cloud.role_env(job.role_arn, f"SageMaker-{run.name}")
        return self.cloud.child_env({**env, **NETWORK_ISOLATION, **role})

    @staticmethod
    def _write_config(config_dir: Path, run: TrainingRun, host: str, hosts: list[str]) -> None:
        """input/config/*.json as SageMaker writes them into each training container."""
        job = run.job
        hyperparameters = dict(job.hyper_parameters or {})
        hyperparameters.setdefault("sagemaker_region", json.dumps(run.region))
        instance_type = str((job.resource_config or {}).get("InstanceType", "local"))
        group = {"instance_group_name": "homogeneousCluster", "instance_type": instance_type,
                 "hosts": hosts}
        (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters))
        (config_dir / "resourceconfig.json").write_text(json.dumps({
            "current_host": host, "current_instance_type": instance_type,
            "current_group_name": group["instance_group_name"], "hosts": hosts,
            "instance_groups": [group], "network_interface_name": "lo"}))
        (config_dir / "inputdataconfig.json").write_text(json.dumps(
            {c["ChannelName"]: {k: v for k, v in c.items() if k not in ("ChannelName", "DataSource")}
             | {"TrainingInputMode": c.get("InputMode", "File")}
             for c in job.input_data_config or []}, default=str))

    def _spawn(self, run: TrainingRun, host: str, command: list[str], cwd: Path,
               env: dict[str, str]) -> HostProcess:
        log = open(run.host_dir(host) / f"{host}.log", "a", encoding="utf-8")  # noqa: SIM115
        stream = f"{run.name}/{host}-{int(time.time())}"
        popen = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True)  # its own group: stop kills workers too
        process = HostProcess(host=host, popen=popen, log=log, stream=stream)
        self._emit(run, process, f"localcloud: {host} running {' '.join(command)}", False)
        for pipe, is_stderr in ((popen.stdout, False), (popen.stderr, True)):
            reader = threading.Thread(target=self._read, args=(run, process, pipe, is_stderr),
                                      name=f"training-{run.name}-{host}-log", daemon=True)
            reader.start()
            process.readers.append(reader)
        return process

    def _read(self, run: TrainingRun, process: HostProcess, pipe: IO[bytes],
              is_stderr: bool) -> None:
        for raw in iter(pipe.readline, b""):
            self._emit(run, process, raw.decode("utf-8", "replace").rstrip("\r\n"), is_stderr)
        pipe.close()

    def _emit(self, run: TrainingRun, process: HostProcess, line: str, is_stderr: bool) -> None:
        now = utcnow()
        with run.lock:
            if not process.log.closed:
                process.log.write(line + "\n")
                process.log.flush()
            if line.startswith("error:"):
                process.last_error = line
            if is_stderr and line.strip():
                process.stderr_tail.append(line)
            self._put_log_event(run.region, process.stream, line)
            if _record_metrics(run, line, now):
                set_fields(run.job, final_metric_data_list=[
                    {"MetricName": name, "Value": value, "Timestamp": stamp}
                    for name, (value, stamp) in run.metrics.items()])

    def _system_log(self, run: TrainingRun, text: str) -> None:
        with open(run.root / "localcloud.log", "a", encoding="utf-8") as log:
            log.write(text)

    def _put_log_event(self, region: str, stream: str, message: str) -> None:
        if not self._closing.is_set():  # the log file keeps the line either way
            put_log_lines(self.cloud.backend("logs", region), LOG_GROUP, stream, [message])

    # -- outputs ------------------------------------------------------------------------------
    def _upload_outputs(self, run: TrainingRun) -> None:
        job = run.job
        primary = run.host_dir("algo-1")
        output = job.output_data_config["S3OutputPath"].rstrip("/")
        model_uri = f"{output}/{run.name}/output/model.tar.gz"
        self._upload_tar(run, primary / "model", model_uri)
        set_fields(job, model_artifacts={"S3ModelArtifacts": model_uri})
        if any((primary / "output" / "data").iterdir()):
            self._upload_tar(run, primary / "output" / "data",
                             f"{output}/{run.name}/output/output.tar.gz")
        checkpoint = job.checkpoint_config or {}
        if checkpoint.get("S3Uri"):
            self._upload_dir(run, primary / "checkpoints", checkpoint["S3Uri"])

    def _upload_tar(self, run: TrainingRun, source: Path, uri: str) -> None:
        archive = source.parent / (source.name + ".tar.gz")
        # Level 1: weights barely compress and level 9 costs seconds per 45 MB.
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            for path in sorted(source.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(source)), recursive=False)
        bucket, key = split_s3_uri(uri)
        try:
            self._s3(run).upload_file(str(archive), bucket, key)
        except Exception as error:
            raise JobError(f"Unable to upload model artifacts to {uri}: {error}") from None

    def _upload_dir(self, run: TrainingRun, source: Path, uri: str) -> None:
        bucket, prefix = split_s3_uri(uri)
        s3 = self._s3(run)
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(source).as_posix()}".lstrip("/")
            s3.upload_file(str(path), bucket, key)

    def _s3(self, run: TrainingRun) -> Any:
        """S3 as the job's role: SageMaker reads the channels and writes the model with the
        RoleArn's permissions. A session per call: boto3's default one is not thread-safe."""
        return self.cloud.role_client(run.job.role_arn, "s3", f"SageMaker-{run.name}")


def _require_s3_source(run: TrainingRun) -> None:
    """The toolkit also accepts a directory or archive path as the source dir, which inside a
    real container names nothing (the host's files are not there). Here it would reach this
    machine's files, so only an s3:// source dir is run, as only one can work on AWS."""
    raw = (run.job.hyper_parameters or {}).get("sagemaker_submit_directory")
    if raw is None:
        return
    try:
        uri = json.loads(raw)
    except (TypeError, ValueError):
        uri = raw
    if not str(uri).startswith("s3://"):
        raise JobError(f"sagemaker_submit_directory {uri!r} is not an s3:// URI: a training "
                       "container can only download its source dir from S3")


# -- moto job fields (only keys created in ``_prepare_job`` are set later) --------------------
def _transition(run: TrainingRun, secondary: str, primary: str | None = None) -> None:
    with run.lock:
        job = run.job
        now = utcnow()
        transitions = [dict(t) for t in job.secondary_status_transitions or []]
        if transitions and "EndTime" not in transitions[-1]:
            transitions[-1]["EndTime"] = now
        entry = {"Status": secondary, "StartTime": now, "StatusMessage": MESSAGES[secondary]}
        if secondary in TERMINAL or secondary == "MaxRuntimeExceeded":
            entry["EndTime"] = now
        transitions.append(entry)
        set_fields(job, secondary_status_transitions=transitions, secondary_status=secondary)
        if primary:
            set_fields(job, training_job_status=primary)


def _prepare_job(job: Any, metric_definitions: list | None,
                 environment: dict[str, str] | None) -> None:
    """Replace moto's canned 'Completed' answer with a job that is starting."""
    if metric_definitions is None:  # moto overwrites the caller's definitions with its own
        job.algorithm_specification.pop("MetricDefinitions", None)
    else:
        job.algorithm_specification["MetricDefinitions"] = metric_definitions
    now = utcnow()
    job.training_job_status = "InProgress"
    job.secondary_status = "Starting"
    job.secondary_status_transitions = [
        {"Status": "Starting", "StartTime": now, "StatusMessage": MESSAGES["Starting"]}]
    job.final_metric_data_list = []
    job.model_artifacts = None
    job.training_start_time = None
    job.training_end_time = None
    job.failure_reason = None
    job.training_time_in_seconds = None
    job.billable_time_in_seconds = None
    job.tuning_job_arn = None
    job.environment = dict(environment) if environment else None
    job.last_modified_time = now


def _metric_patterns(algorithm_specification: dict) -> list[tuple[str, re.Pattern[str]]]:
    return [(d["Name"], re.compile(d["Regex"]))
            for d in algorithm_specification.get("MetricDefinitions") or []]


def _record_metrics(run: TrainingRun, line: str, now: datetime) -> bool:
    found = False
    for name, pattern in run.metric_patterns:
        match = pattern.search(line)
        if not match:
            continue
        try:
            value = float(match.group(1) if match.groups() else match.group(0))
        except ValueError:
            continue
        run.metrics[name] = (value, now)
        found = True
    return found


def _failure_reason(run: TrainingRun, failed: HostProcess) -> str:
    base = run.host_dir(failed.host)
    reason = ""
    for path in (base / "output" / "failure", base / "output" / "data" / "failure"):
        if path.is_file():
            reason = path.read_text(errors="replace").strip()
            if reason:
                break
    if not reason:
        tail = failed.stderr_tail[-1] if failed.stderr_tail else ""
        reason = failed.last_error or tail or "the training process exited with an error"
    code = failed.popen.returncode
    exit_text = (f"killed by signal {signal.Signals(-code).name}" if code < 0
                 else f"exit code: {code}")
    return f"AlgorithmError: {reason}, {exit_text}"  # SageMaker's wording


# -- small helpers --------------------------------------------------------------------------
def split_s3_uri(uri: str) -> tuple[str, str]:
    """A job's S3 location; a malformed one is the request's fault (ClientError)."""
    try:
        return s3_location(uri)
    except ValueError as error:
        raise JobError(str(error)) from None


def _list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    try:
        yield from object_keys(s3, bucket, prefix)
    except Exception as error:
        raise JobError(f"Data download failed for s3://{bucket}/{prefix}: {error}") from None


def _terminate(hosts: list[HostProcess], grace_s: float) -> None:
    """SIGTERM each host's process group (SageMaker's stop signal), then SIGKILL after grace."""
    for host in hosts:
        if host.popen.poll() is None:
            signal_group(host.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for host in hosts:
        try:
            host.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for host in hosts:
        signal_group(host.popen.pid, signal.SIGKILL)
        host.popen.wait()


# -- wiring -----------------------------------------------------------------------------------
def _validate(backend: Any, arguments: dict[str, Any]) -> None:
    from moto.sagemaker.exceptions import ResourceInUseException, ValidationError

    name = arguments.get("training_job_name") or ""
    if not JOB_NAME.fullmatch(name):
        raise ValidationError(message=f"1 validation error detected: Value '{name}' at "
                              "'trainingJobName' failed to satisfy constraint: Member must "
                              "satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
    if name in backend.training_jobs:
        raise ResourceInUseException(message="Training job names must be unique within an AWS "
                                     f"account and region, and a training job with this name "
                                     f"already exists ({backend.training_jobs[name].arn})")
    output = (arguments.get("output_data_config") or {}).get("S3OutputPath", "")
    if not str(output).startswith("s3://"):
        raise ValidationError(message="OutputDataConfig.S3OutputPath must be an s3:// URI")
    for definition in (arguments.get("algorithm_specification") or {}).get(
            "MetricDefinitions") or []:
        try:
            re.compile(definition["Regex"])
        except (re.error, KeyError, TypeError):
            raise ValidationError(message=f"Invalid metric definition: {definition}") from None


def _wrap_create(training: LocalTraining, original: Any, pending: threading.local) -> Any:
    signature = inspect.signature(original)

    def create_training_job(backend: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(backend, *args, **kwargs).arguments
        _validate(backend, arguments)
        spec = arguments.get("algorithm_specification") or {}
        definitions = spec.get("MetricDefinitions")
        definitions = list(definitions) if definitions is not None else None
        job = original(backend, *args, **kwargs)
        _prepare_job(job, definitions, getattr(pending, "environment", None))
        training.start(job, backend.region_name)
        return job

    return create_training_job


def _capture_environment(cloud: LocalCloud, pending: threading.local) -> None:
    """moto's response layer drops CreateTrainingJob's ``Environment``; hand it to the backend
    wrapper (same request thread) so the job keeps it, as DescribeTrainingJob shows on AWS."""
    from moto.sagemaker.responses import SageMakerResponse

    def create_training_job(response: Any) -> Any:
        pending.environment = response._get_param("Environment")
        try:
            return original(response)
        finally:
            pending.environment = None

    original = cloud.patch(SageMakerResponse, "create_training_job", create_training_job)


def _handle_stop(training: LocalTraining, request: Request) -> Response:
    body = json.loads(request.get_data() or b"{}")
    name = body.get("TrainingJobName", "")
    region = request_region(request, training.cloud.region)
    job = training.cloud.backend("sagemaker", region).training_jobs.get(name)
    if job is None:
        return aws_error(400, "ResourceNotFound", f"Requested resource not found: {name}")
    if job.training_job_status in TERMINAL:
        return aws_error(400, "ValidationException", "The request was rejected because the "
                         f"training job is in status {job.training_job_status}.")
    run = training.runs.get(job.arn)
    if run is None:  # not started by this cloud (should not happen); end it on paper
        set_fields(job, training_job_status="Stopped", secondary_status="Stopped")
    else:
        training.request_stop(run)
    return json_response(200, {})


def install(cloud: LocalCloud) -> LocalTraining:
    from moto.sagemaker.models import SageMakerModelBackend

    training = LocalTraining(cloud)
    pending = threading.local()
    original = SageMakerModelBackend.create_training_job
    cloud.patch(SageMakerModelBackend, "create_training_job",
                _wrap_create(training, original, pending))
    _capture_environment(cloud, pending)
    cloud.add_route(match_target("SageMaker.StopTrainingJob"),
                    lambda request: _handle_stop(training, request))
    cloud.on_stop(training.shutdown)
    return training
