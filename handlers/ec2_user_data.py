"""User data for an EC2 training instance: fetch the code, train, write a status object, shut down.

``build_user_data(...)`` returns a bash script (EC2 ``UserData``, at most 16 KB) for an AWS Deep
Learning AMI with PyTorch (``PipelineConfig.ec2_ami_parameter``), which brings torch,
torchvision and boto3 in ``/opt/pytorch``: nothing is installed at boot. The script

1. writes its S3 helper (``$WORK/s3io.py``, ``$WORK`` = ``/opt/stepml``) and an ``EXIT`` trap;
2. prepares the OS (between the markers ``# >>> os-setup`` and ``# <<< os-setup``): reads the
   instance id from IMDSv2 (a token PUT, then the GET with the token; the endpoint honours the
   SDKs' ``AWS_EC2_METADATA_SERVICE_ENDPOINT``, default ``http://169.254.169.254``), takes the
   DLAMI's PyTorch interpreter ``/opt/pytorch/bin/python3`` once it imports torch, torchvision
   and boto3, and exports ``PYTHON`` and ``INSTANCE_ID``. Without that environment (an AMI that
   is not a PyTorch DLAMI) or without an instance id it fails fast: the reason goes to the
   status object as ``Failed`` (reported by any ``python3`` with boto3, else the aws CLI) and the
   instance shuts down — no pip, no dnf;
3. writes ``{"status": "InProgress", ...}`` to the status URI;
4. downloads ``code_uri`` (a ``.tar.gz`` or ``.zip`` holding the ``training`` package, e.g.
   ``infra_scripts.packaging.training_source()``) into ``$WORK/code``, puts it on ``PYTHONPATH``;
5. runs ``$PYTHON -m training.train --data <data_uri> --model-dir <model_uri>
   --output-data-dir $WORK/output --key value ...`` (output teed to ``$WORK/train.log``);
6. on exit, whatever happened (the ``EXIT`` trap): packs the model files under ``model_uri``
   into ``<model_uri>/model.tar.gz`` (what SageMaker CreateModel takes), uploads the log to
   ``<status dir>/train.log`` and writes the final status object, then ``shutdown -h now``
   (with ``InstanceInitiatedShutdownBehavior=terminate`` the instance terminates itself).

Status object (JSON at ``status_uri``)::

    {"status": "InProgress" | "Completed" | "Failed", "instance_id": "i-...",
     "started_at": ISO8601, "updated_at": ISO8601, "data_uri": ..., "model_uri": ...,
     "hyperparameters": {...}, "exit_code": 0, "reason": "error: ..." (Failed only),
     "metrics": {"test_acc": 0.93, ...} (last value of each key=number log token),
     "model_artifact": "s3://.../model.tar.gz" (Completed only), "log_uri": "s3://.../train.log"}

``reason`` is the ``failure`` file the training script (or the fetch step) wrote, else the last
``error:`` line of the log, else its last line.

Local cloud: the script carries the line ``# localcloud: runnable``, so the local cloud's
``RunInstances`` runs it as the instance (``infra_scripts/localcloud/ec2/instances.py``): the
os-setup block is skipped and the cloud provides what it sets up — ``PYTHON`` (the project
venv's interpreter), ``INSTANCE_ID``, ``AWS_*`` variables pointing at the local cloud — plus
``STEPML_WORK_DIR`` (the instance's scratch dir instead of ``/opt/stepml``); ``shutdown``
ends the instance's processes. The body therefore uses only ``$PYTHON`` (the aws CLI only as
the last resort of a failed set-up). The whole script, os-setup included, also runs in a test
(``tests/localcloud/test_ec2_user_data_os.py``): a mount namespace puts a stand-in DLAMI
``/opt`` over ``/opt`` and a stand-in IMDSv2 answers on 127.0.0.1.

Stdlib only and self-contained, so it can live in (or be copied into) the handlers' Lambda
package and build user data there.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

RUNNABLE_MARKER = "# localcloud: runnable"
OS_SETUP_BEGIN = "# >>> os-setup"
OS_SETUP_END = "# <<< os-setup"
MAX_USER_DATA = 16 * 1024  # EC2's limit on raw user data
HYPERPARAMETER_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")

# The instance's S3 helper (boto3 only; the AMI has no aws CLI guarantee, the local cloud none).
S3_HELPER = r'''
import io, json, os, re, sys, tarfile, tempfile, time, zipfile
import boto3

E = os.environ
WORK = E["STEPML_WORK"]
FAILURE = os.path.join(WORK, "output", "failure")
s3 = boto3.client("s3")


def split(uri):
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def fetch(uri, dest):
    try:
        bucket, key = split(uri)
        body = io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        if key.endswith(".zip"):
            zipfile.ZipFile(body).extractall(dest)
        else:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            with tarfile.open(fileobj=body) as tar:
                tar.extractall(dest, **safe)
    except Exception as error:
        message = f"cannot fetch the training code {uri}: {error}"
        with open(FAILURE, "w") as out:
            out.write(message + "\n")
        sys.exit(f"error: {message}")


def status(state, **extra):
    doc = {"status": state, "instance_id": E.get("INSTANCE_ID", ""),
           "started_at": E["STEPML_STARTED_AT"], "updated_at": now(),
           "data_uri": E["STEPML_DATA_URI"], "model_uri": E["STEPML_MODEL_URI"],
           "hyperparameters": json.loads(E["STEPML_HYPERPARAMETERS"]), **extra}
    bucket, key = split(E["STEPML_STATUS_URI"])
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc, indent=2).encode(),
                  ContentType="application/json")


def metrics(lines):
    found = {}
    for line in lines:
        for key, value in re.findall(r"(\w+)=(-?\d+(?:\.\d+)?(?:[eE]-?\d+)?)(?=\s|$)", line):
            found[key] = float(value)
    return found


def reason(lines, code):
    if os.path.isfile(FAILURE) and open(FAILURE).read().strip():
        return open(FAILURE).read().strip()
    errors = [line for line in lines if line.startswith("error:")]
    rest = [line for line in lines if line.strip()]
    return (errors or rest or [f"training exited with code {code}"])[-1]


def package(model_uri):
    bucket, prefix = split(model_uri.rstrip("/") + "/")
    target = prefix + "model.tar.gz"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])
            if o["Key"] != target and not o["Key"].endswith("/")]
    if not keys:
        raise RuntimeError(f"no model files under {model_uri}")
    with tempfile.TemporaryDirectory() as tmp:
        archive = os.path.join(tmp, "model.tar.gz")
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            for number, key in enumerate(sorted(keys)):
                local = os.path.join(tmp, str(number))
                s3.download_file(bucket, key, local)
                tar.add(local, arcname=key[len(prefix):])
        s3.upload_file(archive, bucket, target)
    return f"s3://{bucket}/{target}"


def finish(code):
    log = os.path.join(WORK, "train.log")
    lines = open(log, errors="replace").read().splitlines() if os.path.exists(log) else []
    extra = {"exit_code": code, "metrics": metrics(lines)}
    if os.path.exists(log):
        log_uri = E["STEPML_STATUS_URI"].rsplit("/", 1)[0] + "/train.log"
        s3.upload_file(log, *split(log_uri))
        extra["log_uri"] = log_uri
    if code == 0:
        try:
            extra["model_artifact"] = package(E["STEPML_MODEL_URI"])
        except Exception as error:
            code, extra["exit_code"] = 1, 1
            lines.append(f"error: model packaging failed: {error}")
    if code != 0:
        extra["reason"] = reason(lines, code)
    status("Completed" if code == 0 else "Failed", **extra)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"fetch": lambda: fetch(*args), "status": lambda: status(*args),
     "finish": lambda: finish(int(args[0]))}[command]()
'''

OS_SETUP = r'''
IMDS="${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}"
IMDS="${IMDS%/}"
TOKEN=$(curl -sf --max-time 5 --retry 3 -X PUT "$IMDS/latest/api/token" \
  -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
INSTANCE_ID=$(curl -sf --max-time 5 --retry 3 -H "X-aws-ec2-metadata-token: ${TOKEN:-}" \
  "$IMDS/latest/meta-data/instance-id")
export INSTANCE_ID
for candidate in /opt/pytorch/bin/python3 /opt/pytorch/bin/python; do
  if [ -x "$candidate" ] && "$candidate" -c "import torch, torchvision, boto3"; then
    PYTHON=$candidate
    break
  fi
done
if [ -z "${INSTANCE_ID:-}" ]; then
  setup_failed "cannot read the instance id from IMDSv2 at $IMDS"
elif [ -z "${PYTHON:-}" ]; then
  setup_failed "no PyTorch environment on this AMI: /opt/pytorch/bin/python3 with torch," \
    "torchvision and boto3 is missing; launch an AWS Deep Learning AMI with PyTorch" \
    "(ec2_ami_parameter / ec2_ami_id); nothing is installed at boot"
fi
export PYTHON
'''


# On exit, whatever happened: the final status (s3io.py finish), then the instance shuts down.
# Before os-setup has found the PyTorch environment (a failed set-up), any python3 with boto3
# reports; without one, the aws CLI writes a minimal Failed status.
FINISH = r"""
setup_failed() { echo "error: $*" | tee "$WORK/output/failure" >&2; exit 1; }
report() {
  "${PYTHON:-python3}" "$WORK/s3io.py" finish "$1" && return
  command -v aws >/dev/null || return
  reason=$(head -c 1000 "$WORK/output/failure" 2>/dev/null | tr -d '"\\\n')
  printf '{"status": "Failed", "instance_id": "%s", "exit_code": %s, "reason": "%s"}' \
    "${INSTANCE_ID:-}" "$1" "${reason:-error: exit $1}" | aws s3 cp - "$STEPML_STATUS_URI"
}
finish() { code=$?; trap - EXIT; report "$code"; shutdown -h now; }
"""


def render_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """``--key value`` pairs in the given order; booleans as true/false."""
    args: list[str] = []
    for key, value in hyperparameters.items():
        if not HYPERPARAMETER_KEY.fullmatch(str(key)):
            raise ValueError(f"invalid hyperparameter name {key!r}")
        text = json.dumps(value) if isinstance(value, bool | dict | list) else str(value)
        args += [f"--{key}", text]
    return args


def build_user_data(code_uri: str, data_uri: str, model_uri: str, status_uri: str,
                    hyperparameters: Mapping[str, Any], region: str) -> str:
    """The instance's bootstrap script (plain text; boto3 base64-encodes ``UserData``)."""
    for name, uri in (("code_uri", code_uri), ("data_uri", data_uri),
                      ("model_uri", model_uri), ("status_uri", status_uri)):
        if not str(uri).startswith("s3://"):
            raise ValueError(f"{name} must be an s3:// URI, got {uri!r}")
    if not REGION.fullmatch(region):
        raise ValueError(f"invalid AWS region {region!r}")
    exports = {
        "STEPML_CODE_URI": code_uri, "STEPML_DATA_URI": data_uri,
        "STEPML_MODEL_URI": model_uri, "STEPML_STATUS_URI": status_uri,
        "STEPML_HYPERPARAMETERS": json.dumps(dict(hyperparameters), sort_keys=True),
    }
    train_args = " ".join(shlex.quote(a) for a in render_args(hyperparameters))
    script = "\n".join([
        "#!/bin/bash",
        RUNNABLE_MARKER,
        "# stepml EC2 training bootstrap, generated by handlers/ec2_user_data.py.",
        "set -uo pipefail",
        f'export AWS_DEFAULT_REGION="${{AWS_DEFAULT_REGION:-{region}}}"',
        *(f"export {key}={shlex.quote(value)}" for key, value in exports.items()),
        'WORK="${STEPML_WORK_DIR:-/opt/stepml}"',
        'export STEPML_WORK="$WORK" STEPML_STARTED_AT="$(date -u +%Y-%m-%dT%H:%M:%SZ)"',
        'mkdir -p "$WORK/code" "$WORK/output" && cd "$WORK" || exit 1',
        "cat > \"$WORK/s3io.py\" <<'STEPML_S3IO'" + S3_HELPER.rstrip("\n"),
        "STEPML_S3IO",
        FINISH.strip("\n"),
        "trap finish EXIT",
        OS_SETUP_BEGIN + OS_SETUP.rstrip("\n"),
        OS_SETUP_END,
        'PYTHON="${PYTHON:-python3}"',
        '"$PYTHON" "$WORK/s3io.py" status InProgress',
        '"$PYTHON" "$WORK/s3io.py" fetch "$STEPML_CODE_URI" "$WORK/code" || exit 1',
        'export PYTHONPATH="$WORK/code${PYTHONPATH:+:$PYTHONPATH}"',
        '"$PYTHON" -m training.train --data "$STEPML_DATA_URI" --model-dir "$STEPML_MODEL_URI" '
        f'--output-data-dir "$WORK/output" {train_args} 2>&1 | tee "$WORK/train.log"',
        'exit "${PIPESTATUS[0]}"',
        "",
    ])
    if len(script.encode()) > MAX_USER_DATA:
        raise ValueError(f"user data is {len(script.encode())} bytes; EC2 allows {MAX_USER_DATA}")
    return script
