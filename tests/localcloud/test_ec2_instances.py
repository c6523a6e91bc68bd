"""Local-cloud EC2: RunInstances with training user data runs it; state follows the script.

The code archive the instance fetches holds a stand-in ``training`` package (fast); the last
test ships the real one (the deploy's ``training_source()`` bundle) and trains on tiny data.
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

from handlers.ec2_user_data import (
    MAX_USER_DATA,
    OS_SETUP_BEGIN,
    RUNNABLE_MARKER,
    build_user_data,
)
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from infra_scripts.localcloud.ec2.instances import is_runnable, local_script
from infra_scripts.packaging import training_source
from tests.localcloud.test_sagemaker_training import group_alive
from tests.roles import service_role

EXTENSION = "infra_scripts.localcloud.ec2.instances"
BUCKET = "stepml-ec2"
AMI = "ami-12c6146b"
BASE = f"s3://{BUCKET}/runs/r1"

# A stand-in for `python -m training.train` in its EC2/CLI form.
STAND_IN_TRAIN = textwrap.dedent('''
    import argparse, os, sys, time
    from pathlib import Path
    import boto3

    parser = argparse.ArgumentParser()
    for name in ("--data", "--model-dir", "--output-data-dir", "--mode"):
        parser.add_argument(name)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0)
    args = parser.parse_args()
    Path(os.environ["STEPML_WORK_DIR"], "train.pid").write_text(str(os.getpid()))
    if args.mode == "fail":
        Path(args.output_data_dir, "failure").write_text("error: no images in train/b\\n")
        print("error: no images in train/b", file=sys.stderr)
        sys.exit(2)
    time.sleep(args.sleep)
    s3 = boto3.client("s3")
    bucket, prefix = args.data[5:].split("/", 1)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    for epoch in range(1, args.epochs + 1):
        print(f"epoch={epoch} train_loss=0.5 valid_loss=0.4 valid_acc=0.9{epoch}", flush=True)
    bucket, prefix = args.model_dir[5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/model.pth", Body=b"weights")
    s3.put_object(Bucket=bucket, Key=f"{prefix}/classes.json", Body=str(len(keys)).encode())
    print("test_acc=0.9500 test_loss=0.1000")
''')


def code_archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    settings = LocalCloudSettings(options={"ec2_instances": {"kill_grace_s": 1}})
    with LocalCloud(extensions=[EXTENSION], settings=settings) as running:
        s3 = running.boto3_client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="code/code.tar.gz", Body=code_archive({
            "training/__init__.py": "", "training/train.py": STAND_IN_TRAIN}))
        for key in ("data/train/a/1.jpg", "data/valid/a/2.jpg", "data/test/a/3.jpg"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        yield running
        groups = [r.popen.pid for r in running.extensions["ec2.instances"].runs.values() if r.popen]
    assert not [g for g in groups if group_alive(g)], "instance processes outlived cloud.stop()"


def launch(cloud: LocalCloud, hyperparameters: dict[str, Any] | None = None,
           behavior: str = "terminate", code_key: str = "code/code.tar.gz",
           user_data: str | None = None) -> str:
    user_data = user_data or build_user_data(
        code_uri=f"s3://{BUCKET}/{code_key}", data_uri=f"s3://{BUCKET}/data",
        model_uri=f"{BASE}/output", status_uri=f"{BASE}/status.json",
        hyperparameters=hyperparameters or {"epochs": 2}, region=cloud.region)
    response = cloud.boto3_client("ec2").run_instances(
        ImageId=AMI, InstanceType="c5.xlarge", MinCount=1, MaxCount=1, UserData=user_data,
        InstanceInitiatedShutdownBehavior=behavior, IamInstanceProfile={"Name": training_profile(cloud)})
    return response["Instances"][0]["InstanceId"]


def training_profile(cloud: LocalCloud, name: str = "ec2-training") -> str:
    """An instance profile whose role the instance runs as (without one it has no credentials)."""
    iam = cloud.boto3_client("iam")
    if name not in [p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]]:
        service_role(cloud, name, "ec2.amazonaws.com")  # the stand-in's S3 access
        iam.create_instance_profile(InstanceProfileName=name)
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return name


def state_of(cloud: LocalCloud, instance_id: str) -> dict:
    reservations = cloud.boto3_client("ec2").describe_instances(InstanceIds=[instance_id])
    return reservations["Reservations"][0]["Instances"][0]


def wait_state(cloud: LocalCloud, instance_id: str, wanted: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        instance = state_of(cloud, instance_id)
        if not seen or seen[-1] != instance["State"]["Name"]:
            seen.append(instance["State"]["Name"])
        if instance["State"]["Name"] == wanted:
            instance["seen"] = seen
            return instance
        time.sleep(0.02)
    console = cloud.extensions["ec2.instances"].console(instance_id)
    raise AssertionError(f"{instance_id} never {wanted}; states {seen}\n{console}")


def read_json(cloud: LocalCloud, uri: str) -> dict:
    bucket, key = uri[5:].split("/", 1)
    return json.loads(cloud.boto3_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def read_status(cloud: LocalCloud, instance_id: str) -> dict:
    """The status object, or a failure that shows the instance's console (why it is missing)."""
    try:
        return read_json(cloud, f"{BASE}/status.json")
    except ClientError:
        console = cloud.extensions["ec2.instances"].console(instance_id)
        raise AssertionError(f"{instance_id} wrote no status object; its console:\n{console}") from None


def read_tar(cloud: LocalCloud, uri: str) -> dict[str, bytes]:
    bucket, key = uri[5:].split("/", 1)
    body = cloud.boto3_client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def script_group(cloud: LocalCloud, instance_id: str) -> int:
    """The user-data script's process group (its pid), once the watcher has started it."""
    run = cloud.extensions["ec2.instances"].runs[instance_id]
    deadline = time.monotonic() + 20
    while run.popen is None:
        assert time.monotonic() < deadline, "the script never started"
        time.sleep(0.02)
    return run.popen.pid


def wait_for_file(path: Path, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return path.read_text()


# -- the user-data format ---------------------------------------------------------------------
def test_user_data_is_marked_small_and_quotes_hyperparameters() -> None:
    script = build_user_data(f"s3://{BUCKET}/code.tar.gz", f"s3://{BUCKET}/data",
                             f"{BASE}/output", f"{BASE}/status.json",
                             {"epochs": 3, "lr": 0.01, "augment": True, "note": "a b'c"},
                             "eu-west-1")
    assert script.startswith("#!/bin/bash\n") and is_runnable(script)
    assert RUNNABLE_MARKER in script and OS_SETUP_BEGIN in script
    assert len(script.encode()) < MAX_USER_DATA
    assert "--epochs 3 --lr 0.01 --augment true --note 'a b'\"'\"'c'" in script
    assert 'AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-eu-west-1}"' in script
    local = local_script(script)
    assert "169.254.169.254" not in local and "pip install" not in local
    assert "169.254.169.254" in script
    assert "shutdown -h now" in local
    with pytest.raises(ValueError, match="code_uri"):
        build_user_data("/tmp/code", "s3://b/d", "s3://b/m", "s3://b/s", {}, "us-east-1")
    with pytest.raises(ValueError, match="hyperparameter"):
        build_user_data("s3://b/c", "s3://b/d", "s3://b/m", "s3://b/s", {"x; rm": 1}, "us-east-1")
    with pytest.raises(ValueError, match="region"):
        build_user_data("s3://b/c", "s3://b/d", "s3://b/m", "s3://b/s", {}, "us-east-1$(id)")


def test_builder_and_local_cloud_agree_on_the_markers() -> None:
    from handlers import ec2_user_data
    from infra_scripts.localcloud.ec2 import instances as ec2_instances

    for name in ("RUNNABLE_MARKER", "OS_SETUP_BEGIN", "OS_SETUP_END"):
        assert getattr(ec2_user_data, name) == getattr(ec2_instances, name), name


def test_local_script_rewrites_absolute_shutdown_and_rejects_open_block() -> None:
    assert local_script("#!/bin/bash\nsudo /sbin/shutdown -h now\n") == (
        "#!/bin/bash\nsudo shutdown -h now\n")
    with pytest.raises(ValueError):
        local_script("#!/bin/bash\n# >>> os-setup\nyum update\n")


# -- instances ----------------------------------------------------------------------------------
def test_instance_trains_uploads_and_terminates_itself(cloud: LocalCloud) -> None:
    instance_id = launch(cloud, {"epochs": 3})
    assert state_of(cloud, instance_id)["State"]["Name"] in {"pending", "running"}
    final = wait_state(cloud, instance_id, "terminated")
    assert "running" in final["seen"]
    assert final["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"

    status = read_json(cloud, f"{BASE}/status.json")
    console = cloud.extensions["ec2.instances"].console(instance_id)
    assert status["status"] == "Completed", (status, console)
    assert status["instance_id"] == instance_id and status["exit_code"] == 0
    assert status["metrics"]["test_acc"] == 0.95 and status["metrics"]["valid_acc"] == 0.93
    assert status["model_artifact"] == f"{BASE}/output/model.tar.gz"
    assert read_tar(cloud, status["model_artifact"]) == {"model.pth": b"weights",
                                                          "classes.json": b"3"}
    assert status["hyperparameters"] == {"epochs": 3}
    log = cloud.boto3_client("s3").get_object(Bucket=BUCKET, Key="runs/r1/train.log")
    assert b"epoch=3 " in log["Body"].read()
    assert "test_acc=0.9500" in console and "shuts down" in console
    output = cloud.boto3_client("ec2").get_console_output(InstanceId=instance_id)["Output"]
    assert "test_acc=0.9500" in output


def test_failed_training_writes_failed_status(cloud: LocalCloud) -> None:
    instance_id = launch(cloud, {"mode": "fail"})
    wait_state(cloud, instance_id, "terminated")
    status = read_json(cloud, f"{BASE}/status.json")
    assert status["status"] == "Failed"
    assert status["exit_code"] == 2
    assert status["reason"] == "error: no images in train/b"
    assert "model_artifact" not in status


def test_missing_code_archive_fails_with_reason(cloud: LocalCloud) -> None:
    instance_id = launch(cloud, code_key="code/missing.tar.gz")
    wait_state(cloud, instance_id, "terminated")
    status = read_status(cloud, instance_id)
    assert status["status"] == "Failed"
    assert status["reason"].startswith("cannot fetch the training code s3://")


def test_stop_behaviour_stops_instead_of_terminating(cloud: LocalCloud) -> None:
    instance_id = launch(cloud, behavior="stop")
    final = wait_state(cloud, instance_id, "stopped")
    assert "terminated" not in final["seen"]
    assert read_json(cloud, f"{BASE}/status.json")["status"] == "Completed"


def test_terminate_instances_kills_a_running_script(cloud: LocalCloud) -> None:
    instance_id = launch(cloud, {"sleep": 60})
    run = cloud.extensions["ec2.instances"].runs[instance_id]
    wait_for_file(run.root / "work" / "train.pid")
    run_group = script_group(cloud, instance_id)  # bash, the helpers and training share it
    assert group_alive(run_group)
    assert state_of(cloud, instance_id)["State"]["Name"] == "running"
    assert read_json(cloud, f"{BASE}/status.json")["status"] == "InProgress"

    cloud.boto3_client("ec2").terminate_instances(InstanceIds=[instance_id])
    assert not group_alive(run_group)  # gone by the time TerminateInstances returned
    assert state_of(cloud, instance_id)["State"]["Name"] == "terminated"
    time.sleep(0.3)  # the watcher must not override the API's state afterwards
    assert state_of(cloud, instance_id)["State"]["Name"] == "terminated"


def test_unmarked_user_data_is_not_run(cloud: LocalCloud, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    instance_id = launch(cloud, user_data=f"#!/bin/bash\ntouch {marker}\n")
    time.sleep(0.3)
    assert not marker.exists()
    assert state_of(cloud, instance_id)["State"]["Name"] == "running"
    assert instance_id not in cloud.extensions["ec2.instances"].runs


def test_script_exiting_without_shutdown_leaves_instance_running(
        cloud: LocalCloud, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = f"#!/bin/bash\n{RUNNABLE_MARKER}\n{OS_SETUP_BEGIN}\nexit 9\n# <<< os-setup\n" \
             f"echo \"$INSTANCE_ID\" > {marker}\n"
    instance_id = launch(cloud, user_data=script)
    assert cloud.extensions["ec2.instances"].wait(instance_id, 10) == "running"
    assert marker.read_text().strip() == instance_id
    assert "keeps running" in cloud.extensions["ec2.instances"].console(instance_id)


def test_cloud_stop_kills_instance_processes() -> None:
    with LocalCloud(extensions=[EXTENSION]) as cloud:
        script = f"#!/bin/bash\n{RUNNABLE_MARKER}\necho $$ > \"$STEPML_WORK_DIR/pid\"\nsleep 60\n"
        instance_id = launch(cloud, user_data=script)
        run = cloud.extensions["ec2.instances"].runs[instance_id]
        wait_for_file(run.root / "work" / "pid")
        group = script_group(cloud, instance_id)
        assert group_alive(group)
    assert not group_alive(group)


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "training" / "train.py").is_file(),
                    reason="training/train.py not there yet")
def test_real_training_code_on_an_instance(cloud: LocalCloud, tmp_path: Path) -> None:
    from training.dataset import make_dataset

    dataset = make_dataset(tmp_path / "data", classes=2, per_class=8, size=32, seed=0)
    s3 = cloud.boto3_client("s3")
    for path in sorted(p for p in dataset.rglob("*") if p.is_file()):
        s3.upload_file(str(path), BUCKET, f"real/{path.relative_to(dataset).as_posix()}")
    s3.put_object(Bucket=BUCKET, Key="code/real.tar.gz", Body=training_source())
    user_data = build_user_data(
        f"s3://{BUCKET}/code/real.tar.gz", f"s3://{BUCKET}/real", f"{BASE}/output",
        f"{BASE}/status.json", {"epochs": 2, "batch-size": 8, "image-size": 32},
        cloud.region)
    instance_id = launch(cloud, user_data=user_data)
    wait_state(cloud, instance_id, "terminated", timeout_s=240)
    status = read_json(cloud, f"{BASE}/status.json")
    assert status["status"] == "Completed", (status, cloud.extensions["ec2.instances"].console(
        instance_id))
    assert {"model.pth", "classes.json", "metrics.json"} <= set(
        read_tar(cloud, status["model_artifact"]))
    assert 0.0 <= status["metrics"]["test_acc"] <= 1.0
    # the instance's own TMPDIR: no checkpoint from an earlier run on this machine is resumed
    assert "resumed_from" not in cloud.extensions["ec2.instances"].console(instance_id)


WHO_AM_I = """#!/bin/bash
# localcloud: runnable
"$PYTHON" - <<'PY' > "$STEPML_WORK_DIR/../identity.txt" 2>&1
import boto3
try:
    print(boto3.client("sts").get_caller_identity()["Arn"])
except Exception as error:
    print(f"no identity: {type(error).__name__}")
PY
shutdown -h now
"""


def test_an_instance_runs_as_its_profiles_role_and_without_one_has_no_credentials(cloud):
    """Issue 12: the instance profile's role, as EC2 gives it (by environment here, not IMDS)."""
    ec2 = cloud.boto3_client("ec2")
    with_profile = launch(cloud, user_data=WHO_AM_I)
    bare = ec2.run_instances(ImageId=AMI, InstanceType="c5.xlarge", MinCount=1, MaxCount=1,
                             UserData=WHO_AM_I, InstanceInitiatedShutdownBehavior="terminate"
                             )["Instances"][0]["InstanceId"]
    identities = {}
    for instance_id in (with_profile, bare):
        wait_state(cloud, instance_id, "terminated")
        root = cloud.extensions["ec2.instances"].runs[instance_id].root
        identities[instance_id] = (root / "identity.txt").read_text().strip()
    assert identities[with_profile] == (f"arn:aws:sts::{cloud.account_id}:assumed-role/ec2-training/"
                                        f"{with_profile}")
    assert identities[bare].startswith("no identity")
