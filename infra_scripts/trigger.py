"""The S3 upload trigger: bucket → EventBridge → rule → ``on_upload`` Lambda → StartExecution.

``deploy_trigger`` is create-or-update like the rest of the deploy: the function, its role, the
bucket's EventBridge switch, the rule (Object Created for a dataset's completion marker) and its
target. ``upload_dataset`` uploads a local dataset and writes the marker last.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra_scripts import packaging
from statemachine.config import PipelineConfig

MODULE = "on_upload"
MARKER = "_READY"
MANIFEST = "manifest.json"
TARGET_ID = "on-upload"
ClientFactory = Callable[[str], Any]


@dataclass
class TriggerResult:
    function_arn: str
    rule_arn: str
    role_arn: str


def rule_name(config: PipelineConfig) -> str:
    return f"{config.prefix}-dataset-ready"


def event_pattern(config: PipelineConfig) -> dict:
    """Object Created in the bucket for ``datasets/*/_READY`` or ``datasets/*/manifest.json``."""
    keys = [{"wildcard": f"{config.dataset_prefix}*/{name}"} for name in (MARKER, MANIFEST)]
    return {"source": ["aws.s3"], "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [config.bucket]}, "object": {"key": keys}}}


def trigger_policy(config: PipelineConfig) -> dict:
    """Least privilege for on_upload: list/read the datasets, start this one state machine."""
    bucket = f"arn:aws:s3:::{config.bucket}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ListDatasets", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket,
         "Condition": {"StringLike": {"s3:prefix": f"{config.dataset_prefix}*"}}},
        {"Sid": "ReadManifests", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": f"{bucket}/{config.dataset_prefix}*"},
        {"Sid": "StartThePipeline", "Effect": "Allow", "Action": "states:StartExecution",
         "Resource": config.state_machine_arn},
        {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:aws:logs:{config.region}:{config.account_id}:log-group:"
                     f"/aws/lambda/{config.function_name(MODULE)}:*"},
    ]}


def _clients(deployer_or_clients: Any) -> ClientFactory:
    if hasattr(deployer_or_clients, "client"):
        return deployer_or_clients.client
    if isinstance(deployer_or_clients, dict):
        return deployer_or_clients.__getitem__
    return deployer_or_clients


def ensure_role(client: ClientFactory, config: PipelineConfig) -> str:
    iam, name = client("iam"), f"{config.prefix}-trigger"
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                              Tags=[{"Key": "stepml:stack", "Value": config.prefix}])["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy",
                        PolicyDocument=json.dumps(trigger_policy(config)))
    return arn


def ensure_function(client: ClientFactory, config: PipelineConfig, role_arn: str,
                    execution_input: dict | None) -> str:
    lam, name = client("lambda"), config.function_name(MODULE)
    environment = {"STATE_MACHINE_ARN": config.state_machine_arn,
                   "DATASET_PREFIX": config.dataset_prefix,
                   "EXECUTION_INPUT": json.dumps(execution_input or {}),
                   "POWERTOOLS_SERVICE_NAME": f"{config.prefix}-trigger"}
    settings = dict(Role=role_arn, Handler=f"handlers.{MODULE}.handler", Runtime="python3.11",
                    Timeout=30, MemorySize=256, Environment={"Variables": environment})
    package = packaging.handlers_zip()
    try:
        lam.get_function(FunctionName=name)
    except lam.exceptions.ResourceNotFoundException:
        return lam.create_function(FunctionName=name, Code={"ZipFile": package},
                                   Tags={"stepml:stack": config.prefix}, **settings)["FunctionArn"]
    lam.update_function_code(FunctionName=name, ZipFile=package)
    _wait_updated(lam, name)
    return lam.update_function_configuration(FunctionName=name, **settings)["FunctionArn"]


def _wait_updated(lam: Any, name: str) -> None:
    for _ in range(60):
        if lam.get_function_configuration(FunctionName=name).get("LastUpdateStatus") in (
                None, "Successful", "Failed"):
            return
        time.sleep(1)


def enable_eventbridge(s3: Any, bucket: str) -> None:
    """Turn on S3 → EventBridge, keeping any other notification the bucket already has."""
    current = s3.get_bucket_notification_configuration(Bucket=bucket)
    current.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={**current, "EventBridgeConfiguration": {}})


def deploy_trigger(deployer_or_clients: Any, config: PipelineConfig,
                   execution_input: dict | None = None) -> TriggerResult:
    """Create or update the trigger; ``execution_input`` holds defaults merged into each start."""
    client = _clients(deployer_or_clients)
    role_arn = ensure_role(client, config)
    function_arn = ensure_function(client, config, role_arn, execution_input)
    enable_eventbridge(client("s3"), config.bucket)
    events = client("events")
    rule_arn = events.put_rule(Name=rule_name(config), EventPattern=json.dumps(event_pattern(config)),
                               State="ENABLED", Description="dataset completion marker → pipeline",
                               )["RuleArn"]
    lam = client("lambda")
    try:
        lam.add_permission(FunctionName=function_arn, StatementId="eventbridge-dataset-ready",
                           Action="lambda:InvokeFunction", Principal="events.amazonaws.com",
                           SourceArn=rule_arn)
    except lam.exceptions.ResourceConflictException:
        pass  # already granted on an earlier deploy
    events.put_targets(Rule=rule_name(config), Targets=[{"Id": TARGET_ID, "Arn": function_arn}])
    return TriggerResult(function_arn=function_arn, rule_arn=rule_arn, role_arn=role_arn)


def marker_body(keys: list[str]) -> bytes:
    """A marker whose content differs per upload: its ETag is part of the execution name, so a
    re-upload starts a new run while a duplicate event of the same upload does not."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return json.dumps({"files": len(keys), "digest": digest, "uploaded_at": time.time()}).encode()


def upload_dataset(s3: Any, bucket: str, local_dir: Path, name: str, prefix: str = "datasets/",
                   progress: Callable[[int, int], None] | None = None) -> str:
    """Upload every file under ``local_dir`` to ``<prefix><name>/``, then one marker last: the
    dataset's own ``manifest.json`` if it has one, else a ``_READY`` object (never both, which
    would start two runs)."""
    key_prefix = f"{prefix}{name}/"
    markers = (MARKER, MANIFEST)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and
                   p.relative_to(local_dir).as_posix() not in markers)
    keys = [path.relative_to(local_dir).as_posix() for path in files]
    for number, (path, key) in enumerate(zip(files, keys, strict=True), start=1):
        s3.upload_file(str(path), bucket, key_prefix + key)
        if progress:
            progress(number, len(files))
    manifest = local_dir / MANIFEST
    if manifest.is_file():
        s3.upload_file(str(manifest), bucket, key_prefix + MANIFEST)
    else:
        s3.put_object(Bucket=bucket, Key=key_prefix + MARKER, Body=marker_body(keys))
    return f"s3://{bucket}/{key_prefix}"
