"""S3 upload → EventBridge rule → on_upload Lambda → one execution per dataset upload."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from infra_scripts.deploy import Deployer
from infra_scripts.localcloud.iam import least_privilege
from infra_scripts.trigger import upload_dataset
from statemachine.config import PipelineConfig

# Its own endpoint name too: endpoint names (and their log groups) are unique in an account, and
# the redrive tests deploy the default stack into the same cloud.
CONFIG = PipelineConfig(prefix="trig", bucket="trig-data", endpoint_name="trig-endpoint")


@pytest.fixture(scope="module")
def trigger(cloud) -> str:
    """The stack with its upload trigger on; the pipeline's definition is then swapped for a
    one-state stand-in, so an upload starts an execution that finishes at once instead of
    training. Returns the on_upload function's ARN."""
    deployer = Deployer.for_local_cloud(CONFIG, cloud.url, upload_trigger=True,
                                        trigger_input={"poll_seconds": 1})
    deployer.deploy()
    cloud.boto3_client("stepfunctions").update_state_machine(
        stateMachineArn=CONFIG.state_machine_arn, definition=json.dumps(
            {"StartAt": "Accept", "States": {"Accept": {"Type": "Pass", "End": True}}}))
    return CONFIG.function_arn("on_upload")


def executions(cloud) -> list[dict]:
    sfn = cloud.boto3_client("stepfunctions")
    return sfn.list_executions(stateMachineArn=CONFIG.state_machine_arn)["executions"]


def settle(cloud, expected: int, timeout_s: float = 60) -> list[dict]:
    """Wait for `expected` executions, then a little longer to catch any extra one."""
    deadline = time.monotonic() + timeout_s
    while len(executions(cloud)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    return executions(cloud)


def invoke_on_upload(cloud, event: dict) -> dict:
    response = cloud.boto3_client("lambda").invoke(FunctionName=CONFIG.function_name("on_upload"),
                                                   Payload=json.dumps(event))
    assert "FunctionError" not in response, response["Payload"].read()
    return json.loads(response["Payload"].read())


def s3_event(key: str, etag: str = "abc123", bucket: str = CONFIG.bucket, version: str = "") -> dict:
    obj = {"key": key, "etag": etag, "size": 1, **({"version-id": version} if version else {})}
    return {"version": "0", "id": "e1", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": obj}}


def make_dataset(root: Path, files_per_split: int = 3) -> Path:
    for split in ("train", "valid", "test"):
        for number in range(files_per_split):
            path = root / split / "cat" / f"{number}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not really a png")
    return root


def test_one_upload_with_its_marker_starts_exactly_one_execution(cloud, trigger, tmp_path):
    before = len(executions(cloud))
    uri = upload_dataset(cloud.boto3_client("s3"), CONFIG.bucket, make_dataset(tmp_path), "cats")
    after = settle(cloud, before + 1)
    assert len(after) == before + 1
    started = after[0]
    assert started["name"].startswith("upload-cats-") and len(started["name"]) <= 80
    described = cloud.boto3_client("stepfunctions").describe_execution(
        executionArn=started["executionArn"])
    assert json.loads(described["input"]) == {"poll_seconds": 1, "dataset": uri}
    deliveries = [d for d in cloud.extensions["events.s3_events"].delivered if d[0] == trigger]
    assert len(deliveries) == 1  # 9 data objects matched nothing; only the marker did


def test_the_same_event_delivered_twice_still_starts_one_execution(cloud, trigger, tmp_path):
    s3 = cloud.boto3_client("s3")
    before = len(executions(cloud)) + 1
    upload_dataset(s3, CONFIG.bucket, make_dataset(tmp_path), "dogs")
    assert len(settle(cloud, before)) == before
    head = s3.head_object(Bucket=CONFIG.bucket, Key="datasets/dogs/_READY")
    # The stack's bucket is versioned, so S3's event names the object version, as here.
    event = s3_event("datasets/dogs/_READY", etag=head["ETag"].strip('"'), version=head["VersionId"])
    first, second = invoke_on_upload(cloud, event), invoke_on_upload(cloud, event)
    assert first["duplicate"] and second["duplicate"]  # EventBridge's own delivery came first
    assert first["executionArn"] == second["executionArn"]
    # A marker in a prefix without train/valid/test matches the rule and still starts nothing.
    s3.put_object(Bucket=CONFIG.bucket, Key="datasets/dogs/extra/_READY", Body=b"x")
    assert len(settle(cloud, before)) == before


def test_objects_that_are_not_a_marker_or_outside_datasets_start_nothing(cloud, trigger, tmp_path):
    s3 = cloud.boto3_client("s3")
    make_dataset(tmp_path)
    before = len(executions(cloud))
    for key in ("datasets/birds/train/cat/0.png", "other/birds/_READY", "datasets/_READY",
                "datasets/birds/nested/_READY"):
        s3.put_object(Bucket=CONFIG.bucket, Key=key, Body=b"1")
    for key in ("other/birds/_READY", "datasets/birds/nested/_READY", "datasets/birds/train/x.png"):
        assert invoke_on_upload(cloud, s3_event(key))["ignored"] is True
    assert len(settle(cloud, before)) == before


def test_a_marker_in_an_empty_prefix_starts_nothing(cloud, trigger):
    before = len(executions(cloud))
    s3 = cloud.boto3_client("s3")
    s3.put_object(Bucket=CONFIG.bucket, Key="datasets/empty/train/only.png", Body=b"1")
    s3.put_object(Bucket=CONFIG.bucket, Key="datasets/empty/_READY", Body=b"")
    answer = invoke_on_upload(cloud, s3_event("datasets/empty/_READY"))
    assert answer["statusCode"] == 400 and answer["error"] == "EmptyDataset"
    assert "valid, test" in answer["message"]
    assert len(settle(cloud, before)) == before


MALFORMED_MANIFESTS = [b"{not json", b'{"files": "train/a.png"}', b'{"files": []}',
                       b'{"files": ["train/missing.png"]}', b"[1, 2]"]


def test_a_malformed_manifest_starts_nothing(cloud, trigger, tmp_path):
    s3 = cloud.boto3_client("s3")
    before = len(executions(cloud)) + 1
    upload_dataset(s3, CONFIG.bucket, make_dataset(tmp_path, 1), "manifested")  # _READY → 1 run
    assert len(settle(cloud, before)) == before
    for number, body in enumerate(MALFORMED_MANIFESTS):  # each also goes S3 → EventBridge → Lambda
        s3.put_object(Bucket=CONFIG.bucket, Key="datasets/manifested/manifest.json", Body=body)
        answer = invoke_on_upload(cloud, s3_event("datasets/manifested/manifest.json", f"m{number}"))
        assert answer["statusCode"] == 400, body
        assert answer["error"] == ("IncompleteUpload" if b"missing" in body else "InvalidManifest")
    assert len(settle(cloud, before)) == before


def test_a_valid_manifest_uploaded_last_starts_one_execution(cloud, trigger, tmp_path):
    root = make_dataset(tmp_path, 2)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    (root / "manifest.json").write_text(json.dumps({"files": files}))
    before = len(executions(cloud))
    upload_dataset(cloud.boto3_client("s3"), CONFIG.bucket, root, "listed")
    after = settle(cloud, before + 1)
    assert len(after) == before + 1
    assert after[0]["name"].startswith("upload-listed-")


def test_stepml_upload_writes_the_marker_last_and_follows_the_started_execution(cloud, trigger, cli,
                                                                                tmp_path):
    from click.testing import CliRunner

    config_file = tmp_path / "stepml.toml"
    config_file.write_text(f'[stepml]\nprefix = "{CONFIG.prefix}"\nbucket = "{CONFIG.bucket}"\n')
    before = len(executions(cloud))
    result = CliRunner().invoke(cli, ["--config", str(config_file), "upload",
                                      str(make_dataset(tmp_path / "data")), "--dataset", "from-cli",
                                      "--follow", "--endpoint-url", cloud.url], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "upload-from-cli-" in result.output and "SUCCEEDED" in result.output
    assert len(settle(cloud, before + 1)) == before + 1
    keys = [o["Key"] for o in cloud.boto3_client("s3").list_objects_v2(
        Bucket=CONFIG.bucket, Prefix="datasets/from-cli/")["Contents"]]
    assert len(keys) == 10 and "datasets/from-cli/_READY" in keys
    missing = CliRunner().invoke(cli, ["--config", str(config_file), "upload", str(tmp_path),
                                       "--dataset", "x", "--endpoint-url", cloud.url])
    assert missing.exit_code == 1 and "must hold train/, valid/ and test/" in missing.output


class RecordingS3:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        self.keys.append(key)

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:  # noqa: N803 - boto3 names
        self.keys.append(Key)


def test_the_marker_is_always_written_last_and_only_once(tmp_path):
    s3 = RecordingS3()
    upload_dataset(s3, "b", make_dataset(tmp_path / "plain"), "plain")
    assert s3.keys[-1] == "datasets/plain/_READY" and len(s3.keys) == 10
    listed = make_dataset(tmp_path / "listed")
    (listed / "manifest.json").write_text('{"files": []}')
    s3 = RecordingS3()
    upload_dataset(s3, "b", listed, "listed")
    assert s3.keys[-1] == "datasets/listed/manifest.json"
    assert not any(key.endswith("_READY") for key in s3.keys)


def test_execution_names_are_valid_deterministic_and_distinct_per_object_version():
    import re

    from handlers.on_upload import execution_name, object_created

    eventbridge = object_created(s3_event("datasets/a/_READY", etag="e1"))
    direct = object_created({"Records": [{"s3": {"bucket": {"name": CONFIG.bucket}, "object": {
        "key": "datasets/a/_READY", "eTag": "e1"}}}]})
    assert eventbridge == direct
    name = execution_name(eventbridge, "a")
    assert name == execution_name(dict(eventbridge), "a")
    assert name != execution_name({**eventbridge, "etag": "e2"}, "a")
    assert name != execution_name({**eventbridge, "version": "v2"}, "a")
    long = execution_name({**eventbridge, "key": "datasets/" + "x" * 300 + "/_READY"}, "x" * 300)
    for candidate in (name, long, execution_name(eventbridge, "sp ace:s*and#more")):
        assert len(candidate) <= 80 and re.fullmatch(r"[A-Za-z0-9_-]+", candidate), candidate


def test_an_upload_without_its_marker_starts_nothing(cloud, trigger, tmp_path):
    """What `stepml run --aws` uploads to a stack whose trigger is on: the data without a marker,
    since the run starts its own execution (two would otherwise replace the endpoint twice)."""
    before = len(executions(cloud))
    s3 = cloud.boto3_client("s3")
    upload_dataset(s3, CONFIG.bucket, make_dataset(tmp_path), "unmarked", marker=False)
    assert len(settle(cloud, before + 1, timeout_s=3)) == before
    listing = s3.list_objects_v2(Bucket=CONFIG.bucket, Prefix="datasets/unmarked/")
    keys = [item["Key"] for item in listing["Contents"]]
    assert len(keys) == 9 and not [key for key in keys if key.endswith(("_READY", "manifest.json"))]


def test_run_on_aws_leaves_the_upload_trigger_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """`stepml run --aws` deploys the stack as `stepml deploy` does, trigger on, so uploads after
    the run still start the pipeline (it once deployed with the trigger off)."""
    from rich.console import Console

    from infra_scripts import run

    captured: dict = {}

    class Stop(Exception):
        pass

    def for_aws(config, **options):
        captured.update(options)
        raise Stop

    monkeypatch.setattr(run.Deployer, "for_aws", staticmethod(for_aws))
    with pytest.raises(Stop):
        run.run_pipeline(CONFIG, "sagemaker", Console(quiet=True), aws=True, region="us-east-1")
    assert captured["upload_trigger"] is True


def test_the_upload_functions_statements_are_each_needed(cloud, trigger):
    """The rows least_privilege.OTHER_PATHS leaves to this path: over the uploads above, each of
    the upload role's statements alone allowed some request of the on_upload function."""
    rows = least_privilege.needs(CONFIG, cloud.extensions["iam.enforcement"].decisions)
    upload = [(r.sid, r.action, r.sole_requests) for r in rows if r.role == "on-upload"
              and (r.role, r.sid, r.action) in least_privilege.OTHER_PATHS]
    assert len(upload) == 5 and all(count > 0 for _, _, count in upload), upload
