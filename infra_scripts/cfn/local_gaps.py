"""Where moto 5.2.5's CloudFormation falls short of AWS, the local deploy makes the boto3 calls
AWS itself would make. Everything is read from the template, so it stays the one source, and
every call is idempotent (it runs after each local deploy).

* The bucket: moto applies only its name, encryption and tags; the public access block,
  versioning, ownership controls, lifecycle rules and EventBridge notifications are applied here.
* Log groups: moto has no log-group update, so retention is (re)applied here.
* Functions: moto ignores a function's Tags.
* The state machine: moto's CloudFormation model writes it to the plain Step Functions backend,
  while the local cloud serves (and executes) state machines from moto's interpreter backend, so
  a stack-made state machine would be invisible. Locally the stack is deployed without it and it
  is created or updated here through the Step Functions API, from the same resource definition.
* Outputs: moto does not refresh a stack's outputs when it executes a change set; they are
  resolved here from the stack's resources.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from infra_scripts.policies import render

ClientFactory = Callable[[str], Any]
STATE_MACHINE = "StateMachine"


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
          state_machine_arn: str) -> bool:
    """Everything above for the full template; True if the state machine changed."""
    bucket = template["Resources"]["ArtifactsBucket"]["Properties"]
    apply_bucket(client("s3"), resolve(bucket, values))
    apply_log_retention(client("logs"), template, values)
    apply_function_tags(client("lambda"), template, values)
    return ensure_state_machine(client("stepfunctions"), template, values, state_machine_arn)
