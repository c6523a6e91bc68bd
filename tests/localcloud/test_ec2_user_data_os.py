"""The whole EC2 user data, os-setup block included, on a stand-in for the Deep Learning AMI.

The local cloud skips the os-setup block (it provides PYTHON and INSTANCE_ID itself); this test
runs the script as an instance boots it, as root, in an environment standing in for the AWS Deep
Learning AMI with PyTorch (``PipelineConfig.ec2_ami_parameter``):

* ``/opt`` is a temp dir bind-mounted over ``/opt`` in a private mount namespace
  (``unshare -m``): nothing on this machine's ``/opt`` changes, and the network stays shared, so
  the script reaches the local cloud (S3) and the stand-in IMDS on 127.0.0.1. Its
  ``/opt/pytorch`` is a venv whose ``python3`` imports torch, torchvision and boto3 (the
  project's), where the DLAMI keeps its PyTorch environment (release notes:
  https://docs.amazonaws.cn/dlami/latest/devguide/aws-deep-learning-ami-gpupt213oss-al2023-2026-10-05.md,
  ``python_location /opt/pytorch/bin/python``);
* a stand-in IMDSv2 answers on 127.0.0.1 (``AWS_EC2_METADATA_SERVICE_ENDPOINT``, the variable the
  AWS SDKs honour): ``PUT /latest/api/token`` needs ``X-aws-ec2-metadata-token-ttl-seconds``
  (1-21600), and a metadata GET without a valid ``X-aws-ec2-metadata-token`` gets 401, as on an
  instance launched with ``HttpTokens=required``
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html);
* ``shutdown`` and, to catch any install at boot, ``pip``/``pip3``/``dnf``/``yum`` are PATH
  shims that record their calls.

Skipped only where ``unshare -m`` is unavailable, never under CI=true.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from handlers.ec2_user_data import build_user_data
from infra_scripts.localcloud.core.server import LocalCloud
from tests.localcloud.test_ec2_instances import STAND_IN_TRAIN, code_archive, read_json, read_tar

BUCKET = "stepml-ec2-os"
BASE = f"s3://{BUCKET}/runs/os"
INSTANCE_ID = "i-0a1b2c3d4e5f60718"
# The stand-in training writes its pid under the work dir: the one the script exports.
TRAIN = STAND_IN_TRAIN.replace('os.environ["STEPML_WORK_DIR"]', 'os.environ["STEPML_WORK"]')
RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "{log}"\n{tail}\n'


def unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module", autouse=True)
def mount_namespace() -> None:
    if not unshare_works():
        if os.environ.get("CI") == "true":
            pytest.fail("unshare -m is unavailable; CI must run the EC2 os-setup test")
        pytest.skip("unshare -m is unavailable here (needs root or user namespaces)")


class Imds:
    """IMDSv2 with HttpTokens=required, on 127.0.0.1."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str, int]] = []
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, code: int, body: str = "") -> None:
                imds.requests.append((self.command, self.path, code))
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if self.path != "/latest/api/token":
                    return self.answer(404)
                if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self.answer(400)
                token = secrets.token_urlsafe(32)
                imds.tokens.add(token)
                return self.answer(200, token)

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("X-aws-ec2-metadata-token") not in imds.tokens:
                    return self.answer(401)
                if self.path == "/latest/meta-data/instance-id":
                    return self.answer(200, imds.instance_id)
                return self.answer(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Imds:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(extensions=[]) as running:
        s3 = running.boto3_client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="code/code.tar.gz", Body=code_archive({
            "training/__init__.py": "", "training/train.py": TRAIN}))
        for key in ("data/train/a/1.jpg", "data/valid/a/2.jpg", "data/test/a/3.jpg"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        yield running


def stand_in_opt(root: Path, with_pytorch: bool) -> Path:
    """The AMI's /opt: /opt/pytorch a venv seeing the project's torch, torchvision and boto3."""
    opt = root / "opt"
    opt.mkdir()
    if with_pytorch:
        venv = opt / "pytorch"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = venv / "lib" / version / "site-packages"
        (site / "project.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return opt


def shims(root: Path) -> tuple[Path, Path]:
    """PATH shims: shutdown records, installers record and fail; python3 is a system python3
    with boto3 (what reports a failed set-up), not the PyTorch environment."""
    bin_dir, calls = root / "shims", root / "calls.log"
    bin_dir.mkdir()
    scripts = {"shutdown": RECORDER.format(log=calls, tail="exit 0"),
               "python3": f'#!/bin/sh\nexec {sys.executable} "$@"\n'}
    for installer in ("pip", "pip3", "dnf", "yum"):
        scripts[installer] = RECORDER.format(log=calls, tail="exit 1")
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir, calls


def boot(cloud: LocalCloud, tmp_path: Path, imds: Imds, with_pytorch: bool) -> tuple[str, Path]:
    """Run the user data as the instance would; returns its output and the calls log."""
    opt = stand_in_opt(tmp_path, with_pytorch)
    bin_dir, calls = shims(tmp_path)
    script = tmp_path / "user-data.sh"
    script.write_text(build_user_data(
        code_uri=f"s3://{BUCKET}/code/code.tar.gz", data_uri=f"s3://{BUCKET}/data",
        model_uri=f"{BASE}/output", status_uri=f"{BASE}/status.json",
        hyperparameters={"epochs": 2}, region=cloud.region))
    env = cloud.child_env({"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
                           "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
                           "HOME": str(tmp_path)})
    for name in ("STEPML_WORK_DIR", "PYTHON", "INSTANCE_ID", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    assert shutil.which("shutdown", path=env["PATH"]) == str(bin_dir / "shutdown")
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c",
         'mount --bind "$0" /opt && exec bash "$1"', str(opt), str(script)],
        env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=90)
    return done.stdout + done.stderr, calls


def test_user_data_boots_a_stand_in_dlami_and_trains(cloud: LocalCloud, tmp_path: Path) -> None:
    with Imds(INSTANCE_ID) as imds:
        output, calls = boot(cloud, tmp_path, imds, with_pytorch=True)
    status = read_json(cloud, f"{BASE}/status.json")
    assert status["status"] == "Completed", (status, output)
    assert status["instance_id"] == INSTANCE_ID
    assert status["model_artifact"] == f"{BASE}/output/model.tar.gz"
    assert read_tar(cloud, status["model_artifact"]) == {"model.pth": b"weights",
                                                          "classes.json": b"3"}
    assert status["metrics"]["test_acc"] == 0.95
    # IMDSv2: a token first, then the metadata read with it (no token-less GET was needed)
    assert imds.requests[0] == ("PUT", "/latest/api/token", 200)
    assert ("GET", "/latest/meta-data/instance-id", 200) in imds.requests
    assert not [r for r in imds.requests if r[2] == 401]
    # the work dir was the stand-in /opt's, and nothing was installed; the instance shut down
    assert (tmp_path / "opt" / "stepml" / "train.log").is_file()
    assert calls.read_text().splitlines() == ["shutdown -h now"]


def test_user_data_on_an_ami_without_pytorch_fails_fast(cloud: LocalCloud, tmp_path: Path) -> None:
    with Imds("i-0fedcba9876543210") as imds:
        output, calls = boot(cloud, tmp_path, imds, with_pytorch=False)
    status = read_json(cloud, f"{BASE}/status.json")
    assert status["status"] == "Failed", (status, output)
    assert status["instance_id"] == "i-0fedcba9876543210"
    assert status["reason"].startswith("error: no PyTorch environment on this AMI: "
                                       "/opt/pytorch/bin/python3"), status["reason"]
    assert "nothing is installed at boot" in status["reason"]
    assert "model_artifact" not in status
    assert calls.read_text().splitlines() == ["shutdown -h now"]  # no pip, pip3, dnf or yum
    # fast = before anything else: the training code was never fetched, training never started
    work = tmp_path / "opt" / "stepml"
    assert list((work / "code").iterdir()) == [] and not (work / "train.log").exists()


def test_metadata_without_a_token_is_refused_by_the_stand_in_imds() -> None:
    """The stand-in is as strict as IMDSv2 with HttpTokens=required (so the tests above prove
    the script does the token dance)."""
    import urllib.error
    import urllib.request

    with Imds(INSTANCE_ID) as imds:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{imds.url}/latest/meta-data/instance-id", timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(f"{imds.url}/latest/api/token", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as no_ttl:
            urllib.request.urlopen(request, timeout=5)
        assert no_ttl.value.code == 400


def test_the_os_block_installs_nothing() -> None:
    script = build_user_data("s3://b/c.tar.gz", "s3://b/d", "s3://b/m", "s3://b/s.json",
                             {"epochs": 1}, "us-east-1")
    block = script[script.index("# >>> os-setup"):script.index("# <<< os-setup")]
    for installer in ("pip ", "pip3", "dnf", "yum", "apt", "conda install", "-m pip"):
        assert installer not in block, installer
    assert "/opt/pytorch/bin/python3" in block and "AWS_EC2_METADATA_SERVICE_ENDPOINT" in block
    assert textwrap.dedent(block).count("X-aws-ec2-metadata-token") == 2
