"""s3:// data and model dirs: storage.py against moto, and the entry point against a moto
server reached through AWS_ENDPOINT_URL like the local cloud's processes."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from tests.training.conftest import FAST_ARGS, clean_env, run_entry
from training import storage


def test_split_and_is_s3() -> None:
    assert storage.split_s3("s3://b/a/b.txt") == ("b", "a/b.txt")
    assert storage.is_s3("s3://b") and not storage.is_s3("/data") and not storage.is_s3(None)
    with pytest.raises(ValueError):
        storage.split_s3("s3:///key")


@mock_aws
def test_upload_then_download_roundtrip(tmp_path: Path) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bkt")
    src = tmp_path / "src"
    (src / "train" / "a").mkdir(parents=True)
    (src / "train" / "a" / "1.jpg").write_bytes(b"one")
    (src / "top.txt").write_text("two")
    keys = storage.upload_dir(src, "s3://bkt/prefix/")
    assert keys == ["prefix/top.txt", "prefix/train/a/1.jpg"]
    assert storage.download_prefix("s3://bkt/prefix", tmp_path / "dst") == 2
    assert (tmp_path / "dst" / "train" / "a" / "1.jpg").read_bytes() == b"one"
    assert storage.download_prefix("s3://bkt/pre", tmp_path / "none") == 0  # prefix != folder


@pytest.fixture
def moto_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_entry_point_reads_and_writes_s3(tiny_data: Path, tmp_path: Path,
                                         moto_endpoint: str) -> None:
    creds = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
             "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="mlbkt")
    for path in sorted(p for p in tiny_data.rglob("*") if p.is_file()):
        s3.upload_file(str(path), "mlbkt", f"datasets/tiny/{path.relative_to(tiny_data).as_posix()}")

    proc = run_entry(["--data", "s3://mlbkt/datasets/tiny", "--model-dir", "s3://mlbkt/runs/1/model",
                      "--checkpoint-dir", str(tmp_path / "ckpt"), *FAST_ARGS, "--epochs", "3"],
                     env=clean_env(**creds))
    assert proc.returncode == 0, proc.stderr
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="mlbkt", Prefix="runs/1/")["Contents"]}
    assert keys == {f"runs/1/model/{n}" for n in (
        "model.pth", "classes.json", "hyperparameters.json", "metrics.json", "evaluation.json")}
    metrics = json.loads(s3.get_object(Bucket="mlbkt", Key="runs/1/model/metrics.json")["Body"].read())
    assert metrics["num_train"] == 24

    missing = run_entry(["--data", "s3://mlbkt/datasets/absent", *FAST_ARGS],
                        env=clean_env(**creds))
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: no objects under s3://mlbkt/datasets/absent"


@mock_aws
@pytest.mark.parametrize("key", ["data/../../escaped.txt", "data//../escaped.txt", "data/a/../../../x"])
def test_download_refuses_keys_that_escape_the_destination(tmp_path: Path, key: str) -> None:
    """S3 keys may hold `..` and `/`: a crafted dataset key must not write outside dest."""
    from training.config import InputError

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key=key, Body=b"x")
    dest = tmp_path / "deep" / "dst"
    with pytest.raises(InputError, match="escapes the destination"):
        storage.download_prefix("s3://bkt/data", dest)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
