"""Where moto 5.2.5's CloudFormation falls short of AWS, the local deploy makes the boto3 calls
AWS itself would make. Everything is read from the template, so it stays the one source, and
every call is idempotent (it runs after each local deploy).

* The bucket: moto applies only its name, encryption and tags; the public access block,
  versioning, ownership controls, lifecycle rules and EventBridge notifications are applied here.
* Log groups: moto has no log-group update, so retention is (re)applied here.
* Functions: moto ignores a function's Tags.
* Not applied: a function's DeadLetterConfig. moto's Lambda keeps none (no API call can set it)
  and the local runtime does not retry a failed asynchronous invocation, so locally the upload
  function's dead-letter queue is created but never receives an event.
* The state machine: moto's CloudFormation model writes it to the plain Step Functions backend,
  while the local cloud serves (and executes) state machines from moto's interpreter backend, so
  a stack-made state machine would be invisible. Locally the stack is deployed without it and it
  is created or updated here through the Step Functions API, from the same resource definition.
* Layers: moto's AWS::Lambda::LayerVersion has no physical id (a ``Ref`` to it yields a
  Python object, not the version ARN), no update and no delete, and its AWS::Lambda::Function
  ignores ``Layers`` on create. Locally the stack is deployed without its layer versions: each is
  published here through the Lambda API (reused while its content is unchanged, as
  CloudFormation keeps an unchanged LayerVersion), references to it become its ARN, the
  functions get their ``Layers``, and older versions are deleted as CloudFormation deletes a
  replaced one.
* The model package group: moto's CloudFormation has no AWS::SageMaker::ModelPackageGroup (it
  skips the resource with a warning); it is created here through the SageMaker API.
* Outputs: moto does not refresh a stack's outputs when it executes a change set; they are
  resolved here from the stack's resources.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from infra_scripts.policies import render

ClientFactory = Callable[[str], Any]
STATE_MACHINE = "StateMachine"
LAYER_VERSION = "AWS::Lambda::LayerVersion"


def resolve(value: Any, values: dict[str, str]) -> Any:
    """Fn::Sub, Ref and Fn::GetAtt …Arn, from ``values`` (parameters, pseudo parameters,
    logical id → physical id, and "<logical id>.Arn")."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return render(value["Fn::Sub"], values)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return values[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return values[".".join(value["Fn::GetAtt"])]
    if isinstance(value, list):
        return [resolve(item, values) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, values) for key, item in value.items()}
    return value


def _replace_refs(value: Any, logical_id: str, physical: str) -> Any:
    if value == {"Ref": logical_id}:
        return physical
    if isinstance(value, list):
        return [_replace_refs(item, logical_id, physical) for item in value]
    if isinstance(value, dict):
        return {key: _replace_refs(item, logical_id, physical) for key, item in value.items()}
    return value


def without_state_machine(template: dict, state_machine_arn: str) -> dict:
    """The template the local cloud's CloudFormation gets: the state machine is made by
    ``ensure_state_machine``, and references to it become its (known) ARN."""
    local = copy.deepcopy(template)
    del local["Resources"][STATE_MACHINE]
    return _replace_refs(local, STATE_MACHINE, state_machine_arn)


def ensure_state_machine(sfn: Any, template: dict, values: dict[str, str], arn: str) -> bool:
    """Create or update the state machine from its template resource; True if it changed."""
    properties = template["Resources"][STATE_MACHINE]["Properties"]
    definition = resolve(properties["DefinitionString"], values)
    role = resolve(properties["RoleArn"], values)
    tags = [{"key": t["Key"], "value": resolve(t["Value"], values)} for t in properties["Tags"]]
    try:
        current = sfn.describe_state_machine(stateMachineArn=arn)
    except ClientError as error:
        if error.response["Error"]["Code"] != "StateMachineDoesNotExist":
            raise
        sfn.create_state_machine(name=resolve(properties["StateMachineName"], values),
                                 definition=definition, roleArn=role, tags=tags)
        return True
    if current["definition"] == definition and current["roleArn"] == role:
        return False
    sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)
    return True


def _layer_ids(template: dict) -> list[str]:
    return sorted(k for k, r in template["Resources"].items() if r["Type"] == LAYER_VERSION)


def _code_sha256(s3: Any, content: dict) -> str:
    """Lambda's CodeSha256 (base64 of the SHA-256) of an S3 object."""
    body = s3.get_object(Bucket=content["S3Bucket"], Key=content["S3Key"])["Body"].read()
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def _layer_versions(lam: Any, name: str) -> list[dict]:
    pages = lam.get_paginator("list_layer_versions").paginate(LayerName=name)
    return [version for page in pages for version in page["LayerVersions"]]


def ensure_layer_version(client: ClientFactory, properties: dict) -> str:
    """The ARN of a version of the layer holding this content: the existing one, else new."""
    lam, name = client("lambda"), properties["LayerName"]
    wanted = _code_sha256(client("s3"), properties["Content"])
    for version in _layer_versions(lam, name):
        described = lam.get_layer_version(LayerName=name, VersionNumber=version["Version"])
        if described["Content"]["CodeSha256"] == wanted:
            return described["LayerVersionArn"]
    optional = {key: properties[key] for key in (
        "Description", "CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo")
        if key in properties}
    return lam.publish_layer_version(LayerName=name, Content=properties["Content"],
                                     **optional)["LayerVersionArn"]


def published_layers(client: ClientFactory, template: dict, values: dict[str, str]) -> dict[str, str]:
    """Logical id → version ARN of every layer in the template (published where needed)."""
    return {logical_id: ensure_layer_version(
        client, resolve(template["Resources"][logical_id]["Properties"], values))
        for logical_id in _layer_ids(template)}


def with_published_layers(client: ClientFactory, template: dict, values: dict[str, str]) -> dict:
    """The template the local cloud's CloudFormation gets: no layer versions, their ARNs in
    place of references to them."""
    local = copy.deepcopy(template)
    for logical_id, arn in published_layers(client, template, values).items():
        del local["Resources"][logical_id]
        local = _replace_refs(local, logical_id, arn)
    return local


def apply_function_layers(client: ClientFactory, template: dict, values: dict[str, str]) -> bool:
    """Give every function its layers, then delete the versions no longer deployed; True if a
    function's layers changed."""
    layers = published_layers(client, template, values)
    values, lam, changed = {**values, **layers}, client("lambda"), False
    for properties in _of_type(template, "AWS::Lambda::Function"):
        name, wanted = resolve(properties["FunctionName"], values), resolve(
            properties.get("Layers", []), values)
        current = lam.get_function_configuration(FunctionName=name).get("Layers", [])
        if [layer["Arn"] for layer in current] != wanted:
            lam.update_function_configuration(FunctionName=name, Layers=wanted)
            changed = True
    for logical_id, arn in layers.items():
        name = resolve(template["Resources"][logical_id]["Properties"]["LayerName"], values)
        for version in _layer_versions(lam, name):
            if version["LayerVersionArn"] != arn:
                lam.delete_layer_version(LayerName=name, VersionNumber=version["Version"])
    return changed


def _lifecycle_rules(rules: list[dict]) -> list[dict]:
    """CloudFormation's rule shape → the S3 API's (Id → ID, an empty filter = every key)."""
    return [{"ID": rule["Id"], "Filter": {"Prefix": ""},
             **{key: value for key, value in rule.items() if key != "Id"}} for rule in rules]


def apply_bucket(s3: Any, properties: dict) -> None:
    name = properties["BucketName"]
    s3.put_public_access_block(
        Bucket=name, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"])
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={
        "Status": properties["VersioningConfiguration"]["Status"]})
    s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=properties["OwnershipControls"])
    s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={
        "Rules": _lifecycle_rules(properties["LifecycleConfiguration"]["Rules"])})
    events = properties["NotificationConfiguration"]["EventBridgeConfiguration"]
    s3.put_bucket_notification_configuration(
        Bucket=name, NotificationConfiguration=(
            {"EventBridgeConfiguration": {}} if events["EventBridgeEnabled"] else {}))


def _of_type(template: dict, kind: str) -> list[dict]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def apply_log_retention(logs: Any, template: dict, values: dict[str, str]) -> None:
    for properties in _of_type(template, "AWS::Logs::LogGroup"):
        logs.put_retention_policy(logGroupName=resolve(properties["LogGroupName"], values),
                                  retentionInDays=int(resolve(properties["RetentionInDays"], values)))


def apply_function_tags(lam: Any, template: dict, values: dict[str, str]) -> None:
    for properties in _of_type(template, "AWS::Lambda::Function"):
        name = resolve(properties["FunctionName"], values)
        arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        tags = resolve(properties["Tags"], values)
        lam.tag_resource(Resource=arn, Tags={t["Key"]: t["Value"] for t in tags})


def outputs(template: dict, values: dict[str, str]) -> dict[str, str]:
    return {key: str(resolve(spec["Value"], values))
            for key, spec in template.get("Outputs", {}).items()}


def apply(client: ClientFactory, template: dict, values: dict[str, str],
          state_machine_arn: str) -> list[str]:
    """Everything above for the full template; what changed, if anything did."""
    bucket = template["Resources"]["ArtifactsBucket"]["Properties"]
    apply_bucket(client("s3"), resolve(bucket, values))
    apply_log_retention(client("logs"), template, values)
    apply_function_tags(client("lambda"), template, values)
    changes = []
    if apply_function_layers(client, template, values):
        changes.append("function layers (through the Lambda API)")
    if ensure_state_machine(client("stepfunctions"), template, values, state_machine_arn):
        changes.append("state machine (through the Step Functions API)")
    if ensure_model_package_group(client("sagemaker"), template, values):
        changes.append("model package group (through the SageMaker API)")
    return changes


def ensure_model_package_group(sagemaker: Any, template: dict, values: dict[str, str]) -> bool:
    """Create the stack's model package group if it is missing; True if this call did."""
    properties = resolve(template["Resources"]["ModelPackageGroup"]["Properties"], values)
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=properties["ModelPackageGroupName"])
        return False
    except ClientError as error:
        if error.response["Error"]["Code"] != "ValidationException":
            raise
    sagemaker.create_model_package_group(**properties)
    return True
