"""Local-cloud SageMaker training jobs: the sagemaker-training toolkit behind CreateTrainingJob.

A stand-in script (uploaded per test as the job's source dir) plays the training script so these
tests take seconds; ``test_real_training_entry_point`` runs ``training.train`` itself.
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from tests.roles import service_role

EXTENSION = "infra_scripts.localcloud.sagemaker.training"
ROLE = "arn:aws:iam::123456789012:role/training"
BUCKET = "stepml-test"
METRICS = [
    {"Name": "valid:acc", "Regex": r"valid_acc=([0-9.]+)"},
    {"Name": "test:acc", "Regex": r"test_acc=([0-9.]+)"},
]

# Behaves like training.train under the SageMaker contract; --mode picks a failure to act out.
STAND_IN = textwrap.dedent('''
    import argparse, json, os, socket, sys, time
    from pathlib import Path

    def rendezvous(host, hosts):
        address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
        if host == hosts[0]:
            with socket.create_server(address) as server:
                connection, _ = server.accept()
                return [host, connection.recv(64).decode()]
        for _ in range(100):
            try:
                with socket.create_connection(address) as client:
                    client.sendall(host.encode())
                    return []
            except OSError:
                time.sleep(0.05)
        raise SystemExit("error: rendezvous failed")

    def main():
        parser = argparse.ArgumentParser()
        parser.add_argument("--epochs", type=int, default=2)
        parser.add_argument("--mode", default="ok")
        parser.add_argument("--sleep", type=float, default=0)
        args, rest = parser.parse_known_args()
        host, hosts = os.environ["SM_CURRENT_HOST"], json.loads(os.environ["SM_HOSTS"])
        model_dir, out_dir = Path(os.environ["SM_MODEL_DIR"]), Path(os.environ["SM_OUTPUT_DIR"])
        if args.mode == "fail":
            (out_dir / "failure").write_text("error: class folder 'train/b' is empty")
            print("error: class folder 'train/b' is empty", file=sys.stderr)
            sys.exit(2)
        if args.mode == "error-line":
            print("error: learning rate must be positive", file=sys.stderr)
            print("some later noise on stdout")
            sys.exit(2)
        if args.mode == "crash":
            raise RuntimeError("boom")
        peers = rendezvous(host, hosts) if len(hosts) > 1 else [host]
        for epoch in range(1, args.epochs + 1):
            print(f"epoch={epoch} train_loss={1 / epoch:.2f} valid_loss=0.5 "
                  f"valid_acc={0.5 + epoch / 10:.2f}", flush=True)
        time.sleep(args.sleep)
        if host != hosts[0]:
            return
        channel = Path(os.environ["SM_CHANNEL_TRAINING"])
        files = sorted(str(p.relative_to(channel)) for p in channel.rglob("*") if p.is_file())
        env = {k: v for k, v in os.environ.items() if k.startswith(("SM_", "MASTER_", "MY_"))}
        (model_dir / "model.pth").write_bytes(b"weights")
        (model_dir / "run.json").write_text(json.dumps(
            {"argv": sys.argv[1:], "files": files, "peers": peers, "env": env, "cwd": os.getcwd()}))
        (Path(os.environ["SM_OUTPUT_DATA_DIR"]) / "extra.txt").write_text("out")
        print("test_acc=0.93 test_loss=0.2")

    main()
''')


SOURCE_KEY = "code/stand-in.tar.gz"
SCRIPT_MODE = {  # as the SageMaker SDK's estimator writes them
    "sagemaker_program": '"stand_in_train.py"',
    "sagemaker_submit_directory": f'"s3://{BUCKET}/{SOURCE_KEY}"',
    "sagemaker_container_log_level": "20",
    "sagemaker_region": '"us-east-1"',
}


def source_archive(files: dict[str, str]) -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return archive.getvalue()


def prepare_bucket(cloud: LocalCloud) -> Any:
    s3 = cloud.boto3_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=SOURCE_KEY, Body=source_archive({"stand_in_train.py": STAND_IN}))
    return s3


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    settings = LocalCloudSettings(options={"sagemaker_training": {"stop_grace_s": 1}})
    with LocalCloud(extensions=[EXTENSION], settings=settings) as running:
        s3 = prepare_bucket(running)
        for key in ("data/train/a/1.jpg", "data/train/b/2.jpg", "data/valid/a/3.jpg"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        yield running
        groups = started_groups(running)
    assert not [g for g in groups if group_alive(g)], "training processes outlived cloud.stop()"


def started_groups(cloud: LocalCloud) -> list[int]:
    """Each host process leads its own process group (pgid == its pid)."""
    return [pid for run in cloud.extensions["sagemaker.training"].runs.values()
            for pid in run.pids()]


def start_job(cloud: LocalCloud, name: str, hyperparameters: dict[str, str] | None = None,
              count: int = 1, **extra: Any) -> Any:
    sm = cloud.boto3_client("sagemaker")
    request = {
        "TrainingJobName": name,
        "HyperParameters": {**SCRIPT_MODE, **(hyperparameters or {})},
        "AlgorithmSpecification": {"TrainingImage": "local", "TrainingInputMode": "File",
                                   "MetricDefinitions": METRICS},
        "RoleArn": service_role(cloud, "training", "sagemaker.amazonaws.com"),  # = ROLE
        "InputDataConfig": [{"ChannelName": "training", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": count,
                           "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        **extra,
    }
    sm.create_training_job(**request)
    return sm


def wait_until(sm: Any, name: str, statuses: set[str], timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sm.describe_training_job(TrainingJobName=name)
        if described["TrainingJobStatus"] in statuses:
            return described
        time.sleep(0.05)
    raise AssertionError(f"{name} still {described['TrainingJobStatus']} after {timeout_s}s")


def wait_done(sm: Any, name: str, timeout_s: float = 120) -> dict:
    return wait_until(sm, name, {"Completed", "Failed", "Stopped"}, timeout_s)


def read_model(cloud: LocalCloud, uri: str) -> dict[str, bytes]:
    bucket, key = uri[5:].split("/", 1)
    body = cloud.boto3_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def alive(pid: int) -> bool:
    """A zombie (killed, not yet reaped by init) counts as gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in the process group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _, group = text[text.rindex(")") + 2:].split()[:3]
        if int(group) == pgid and state != "Z":
            return True
    return False


def test_job_completes_with_model_metrics_and_logs(cloud: LocalCloud) -> None:
    sm = start_job(cloud, "job-ok", {"epochs": "3", "lr": "0.01"},
                   Environment={"MY_FLAG": "on"})
    described = wait_done(sm, "job-ok")

    assert described["TrainingJobStatus"] == "Completed"
    assert described["SecondaryStatus"] == "Completed"
    assert [t["Status"] for t in described["SecondaryStatusTransitions"]] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert described["TrainingEndTime"] >= described["TrainingStartTime"]
    assert described["AlgorithmSpecification"]["MetricDefinitions"] == METRICS
    assert described["Environment"] == {"MY_FLAG": "on"}
    final = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert final == {"valid:acc": pytest.approx(0.8), "test:acc": pytest.approx(0.93)}

    artifact = described["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"s3://{BUCKET}/output/job-ok/output/model.tar.gz"
    files = read_model(cloud, artifact)
    assert files["model.pth"] == b"weights"
    run = json.loads(files["run.json"])
    assert run["argv"] == ["--epochs", "3", "--lr", "0.01"]
    assert run["files"] == ["train/a/1.jpg", "train/b/2.jpg", "valid/a/3.jpg"]
    assert run["env"]["SM_HOSTS"] == '["algo-1"]' and run["env"]["MY_FLAG"] == "on"
    assert json.loads(run["env"]["SM_HPS"]) == {"epochs": 3, "lr": 0.01}  # the toolkit's
    assert read_model(cloud, artifact.replace("model.tar.gz", "output.tar.gz")) == {
        "extra.txt": b"out"}

    logs = cloud.boto3_client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix="job-ok/")["logStreams"]
    assert [s["logStreamName"].rsplit("-", 1)[0] for s in streams] == ["job-ok/algo-1"]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                 logStreamName=streams[0]["logStreamName"],
                                 startFromHead=True)["events"]
    assert any(e["message"].startswith("epoch=3 ") for e in events)
    assert "test_acc=0.93" in cloud.extensions["sagemaker.training"].log_text("job-ok")


def test_list_filters_and_tags_keep_working(cloud: LocalCloud) -> None:
    sm = start_job(cloud, "job-listed", Tags=[{"Key": "team", "Value": "ml"}])
    described = wait_done(sm, "job-listed")
    listed = sm.list_training_jobs(StatusEquals="Completed")["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in listed] == ["job-listed"]
    tags = sm.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "ml"}]


@pytest.mark.parametrize(("mode", "reason"), [
    # The script's own output/failure wins: the toolkit writes one only if there is none.
    ("fail", "AlgorithmError: error: class folder 'train/b' is empty, exit code: 1"),
    # Otherwise the toolkit's ExecuteUserScriptError, with the stderr lines it recognises as an
    # error (a bare "error: ..." line is not one).
    ("error-line", 'AlgorithmError: ExecuteUserScriptError:\nExitCode 2\nErrorMessage ""\nCommand '),
    # (how the toolkit chunks the captured stderr varies from run to run)
    ("crash", 'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "raise '
              'RuntimeError("boom")'),
])
def test_failing_job_is_failed_with_reason(cloud: LocalCloud, mode: str, reason: str) -> None:
    sm = start_job(cloud, f"job-{mode}", {"mode": mode})
    described = wait_done(sm, f"job-{mode}")
    assert described["TrainingJobStatus"] == "Failed"
    assert described["SecondaryStatus"] == "Failed"
    assert described["FailureReason"].startswith(reason)
    assert described["FailureReason"].endswith(", exit code: 1")
    if mode != "fail":  # the toolkit's reason names the command it ran
        assert "stand_in_train.py --mode " + mode in described["FailureReason"]
    assert "ModelArtifacts" not in described


def test_missing_channel_data_is_a_client_error(cloud: LocalCloud) -> None:
    sm = start_job(cloud, "job-nodata", InputDataConfig=[{"ChannelName": "training",
                   "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                   "S3Uri": f"s3://{BUCKET}/nothing-here"}}}])
    described = wait_done(sm, "job-nodata")
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"].startswith("ClientError: No S3 objects found")


def test_stop_training_job_kills_the_process(cloud: LocalCloud) -> None:
    sm = start_job(cloud, "job-stop", {"sleep": "60"})
    training = cloud.extensions["sagemaker.training"]
    wait_until_training(sm, "job-stop")
    run = training.run_for("job-stop")
    pids = run.pids()
    assert pids and all(alive(pid) for pid in pids)

    sm.stop_training_job(TrainingJobName="job-stop")
    assert sm.describe_training_job(TrainingJobName="job-stop")["TrainingJobStatus"] in {
        "Stopping", "Stopped"}
    described = wait_done(sm, "job-stop")
    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "Stopped"
    assert not any(group_alive(pid) for pid in pids)
    with pytest.raises(ClientError, match="ValidationException"):
        sm.stop_training_job(TrainingJobName="job-stop")
    with pytest.raises(ClientError, match="ResourceNotFound"):
        sm.stop_training_job(TrainingJobName="no-such-job")


def wait_until_training(sm: Any, name: str) -> None:
    deadline = time.monotonic() + 20
    while sm.describe_training_job(TrainingJobName=name)["SecondaryStatus"] != "Training":
        assert time.monotonic() < deadline, "job never reached Training"
        time.sleep(0.05)


def test_max_runtime_exceeded_stops_the_job(cloud: LocalCloud) -> None:
    sm = start_job(cloud, "job-slow", {"sleep": "60"},
                   StoppingCondition={"MaxRuntimeInSeconds": 1})
    described = wait_done(sm, "job-slow")
    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "MaxRuntimeExceeded"


def test_two_instances_run_two_processes(cloud: LocalCloud) -> None:
    sm = start_job(cloud, "job-ddp", count=2)
    described = wait_done(sm, "job-ddp")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    run = json.loads(read_model(cloud, described["ModelArtifacts"]["S3ModelArtifacts"])[
        "run.json"])
    assert run["peers"] == ["algo-1", "algo-2"]  # algo-2 reached algo-1 at MASTER_ADDR:PORT
    assert json.loads(run["env"]["SM_HOSTS"]) == ["algo-1", "algo-2"]
    assert run["env"]["MASTER_ADDR"] == "127.0.0.1"
    streams = cloud.boto3_client("logs").describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="job-ddp/")["logStreams"]
    assert sorted(s["logStreamName"].rsplit("-", 1)[0] for s in streams) == [
        "job-ddp/algo-1", "job-ddp/algo-2"]


def test_script_mode_runs_the_submitted_source_dir(cloud: LocalCloud, tmp_path: Path) -> None:
    source = tmp_path / "sourcedir"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "__init__.py").write_text("")
    (source / "pkg" / "entry.py").write_text(STAND_IN)
    (source / "train.py").write_text("import pkg.entry\n")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(source, arcname=".")
    cloud.boto3_client("s3").put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz",
                                        Body=archive.getvalue())
    hyperparameters = {  # as the SageMaker SDK's PyTorch estimator writes them
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": f'"s3://{BUCKET}/code/sourcedir.tar.gz"',
        "sagemaker_container_log_level": "20",
        "sagemaker_region": '"us-east-1"',
        "epochs": "2",
        "arch": '"resnet18"',
    }
    sm = start_job(cloud, "job-script", hyperparameters)
    described = wait_done(sm, "job-script")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    run = json.loads(read_model(cloud, described["ModelArtifacts"]["S3ModelArtifacts"])[
        "run.json"])
    assert run["argv"] == ["--arch", "resnet18", "--epochs", "2"]
    assert Path(run["cwd"]).name == "code"


def test_invalid_requests_are_rejected(cloud: LocalCloud) -> None:
    sm = start_job(cloud, "job-dup")
    with pytest.raises(ClientError, match="ResourceInUse"):
        start_job(cloud, "job-dup")
    with pytest.raises(ClientError, match="ValidationException"):
        start_job(cloud, "bad_name!")
    with pytest.raises(ClientError, match="ValidationException"):
        start_job(cloud, "bad-regex", AlgorithmSpecification={
            "TrainingImage": "x", "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "m", "Regex": "("}]})
    wait_done(sm, "job-dup")


def test_cloud_stop_kills_running_jobs(tmp_path: Path) -> None:
    cloud = LocalCloud(extensions=[EXTENSION]).start()
    try:
        prepare_bucket(cloud).put_object(Bucket=BUCKET, Key="data/x", Body=b"x")
        sm = start_job(cloud, "job-orphan", {"sleep": "60"}, count=2)
        wait_until_training(sm, "job-orphan")
        pids = cloud.extensions["sagemaker.training"].run_for("job-orphan").pids()
    finally:
        cloud.stop()
    assert len(pids) == 2 and not any(group_alive(pid) for pid in pids)


def _real_training_available() -> bool:
    root = Path(__file__).resolve().parents[2]
    return (root / "training" / "train.py").is_file()


@pytest.mark.skipif(not _real_training_available(), reason="training/train.py not there yet")
def test_real_training_entry_point(tmp_path: Path) -> None:
    """The deploy's script-mode bundle and hyperparameters as the SageMaker SDK encodes them."""
    from infra_scripts import packaging
    from training.dataset import make_dataset
    from training.hpo import METRIC_DEFINITIONS

    dataset = make_dataset(tmp_path / "data", classes=2, per_class=8, size=32, seed=0)
    with LocalCloud(extensions=[EXTENSION]) as cloud:
        s3 = cloud.boto3_client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for path in sorted(p for p in dataset.rglob("*") if p.is_file()):
            s3.upload_file(str(path), BUCKET, f"data/{path.relative_to(dataset).as_posix()}")
        s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz",
                      Body=packaging.training_source())
        hyperparameters = {
            "epochs": "2", "batch-size": "8", "image-size": "32", "arch": '"resnet18"',
            "sagemaker_program": json.dumps(packaging.TRAINING_ENTRY),
            "sagemaker_submit_directory": f'"s3://{BUCKET}/code/sourcedir.tar.gz"',
            "sagemaker_container_log_level": "20", "sagemaker_region": '"us-east-1"'}
        sm = start_job(cloud, "job-real", hyperparameters, AlgorithmSpecification={
            "TrainingImage": "pytorch", "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS})
        described = wait_done(sm, "job-real", timeout_s=240)
        log = cloud.extensions["sagemaker.training"].log_text("job-real")
        assert described["TrainingJobStatus"] == "Completed", (described.get("FailureReason"), log)
        files = read_model(cloud, described["ModelArtifacts"]["S3ModelArtifacts"])
        assert {"model.pth", "classes.json", "metrics.json"} <= set(files)
        # What the PyTorch inference container serves from: code/ with the program it names.
        assert {"code/serve_entry.py", "code/requirements.txt", "code/inference/inference.py"} <= set(files)
        metrics = {m["MetricName"] for m in described["FinalMetricDataList"]}
        assert {"valid_acc", "test_acc"} <= metrics

        sm = start_job(cloud, "job-real-bad", {**hyperparameters, "lr": "-1"})
        described = wait_done(sm, "job-real-bad", timeout_s=120)
        assert described["TrainingJobStatus"] == "Failed"
        assert "invalid hyperparameter lr=-1.0" in described["FailureReason"]


WHO_AM_I = """import json, os, boto3
arn = boto3.client("sts").get_caller_identity()["Arn"]
with open(os.path.join(os.environ["SM_MODEL_DIR"], "run.json"), "w") as out:
    json.dump({"arn": arn, "token": bool(os.environ.get("AWS_SESSION_TOKEN"))}, out)
"""


def test_the_container_runs_as_the_jobs_role(cloud: LocalCloud, tmp_path: Path) -> None:
    """Issue 12: SageMaker gives the training container the RoleArn's session, not the
    caller's keys (by environment here; SageMaker serves it from its credentials endpoint)."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        body = WHO_AM_I.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    cloud.boto3_client("s3").put_object(Bucket=BUCKET, Key="code/whoami.tar.gz", Body=archive.getvalue())
    sm = start_job(cloud, "job-identity", {"sagemaker_program": '"train.py"',
                                           "sagemaker_submit_directory": f'"s3://{BUCKET}/code/whoami.tar.gz"'})
    described = wait_done(sm, "job-identity")
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    run = json.loads(read_model(cloud, described["ModelArtifacts"]["S3ModelArtifacts"])["run.json"])
    assert run == {"arn": f"arn:aws:sts::{cloud.account_id}:assumed-role/training/SageMaker-job-identity",
                   "token": True}
