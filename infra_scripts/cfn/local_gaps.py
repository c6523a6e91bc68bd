"""The template's properties that moto's CloudFormation accepts but does not apply, applied on
the local cloud with the boto3 calls AWS itself would make. Each is read from the template, so
the template stays the one source. Idempotent: runs after every local deploy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infra_scripts.policies import render

ClientFactory = Callable[[str], Any]


def _resolved(value: Any, values: dict[str, str]) -> Any:
    """The few intrinsic shapes the template uses in these properties: Fn::Sub and Ref."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return render(value["Fn::Sub"], values)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return values[value["Ref"]]
    if isinstance(value, list):
        return [_resolved(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _resolved(item, values) for key, item in value.items()}
    return value


def _lifecycle_rules(rules: list[dict]) -> list[dict]:
    """CloudFormation's rule shape → the S3 API's (Id → ID, an empty filter = every key)."""
    converted = []
    for rule in rules:
        api = {key: value for key, value in rule.items() if key != "Id"}
        converted.append({"ID": rule["Id"], "Filter": {"Prefix": ""}, **api})
    return converted


def apply_bucket(s3: Any, name: str, properties: dict) -> None:
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


def apply_log_retention(logs: Any, resources: dict[str, dict], values: dict[str, str]) -> None:
    for resource in resources.values():
        if resource["Type"] == "AWS::Logs::LogGroup":
            properties = resource["Properties"]
            logs.put_retention_policy(
                logGroupName=_resolved(properties["LogGroupName"], values),
                retentionInDays=int(_resolved(properties["RetentionInDays"], values)))


def apply_function_tags(lam: Any, resources: dict[str, dict], values: dict[str, str]) -> None:
    for resource in resources.values():
        if resource["Type"] == "AWS::Lambda::Function":
            name = _resolved(resource["Properties"]["FunctionName"], values)
            tags = _resolved(resource["Properties"]["Tags"], values)
            arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
            lam.tag_resource(Resource=arn, Tags={t["Key"]: t["Value"] for t in tags})


def apply(client: ClientFactory, template: dict, values: dict[str, str]) -> None:
    """``values``: every template parameter and pseudo parameter, as strings."""
    resources = template["Resources"]
    bucket = _resolved(resources["ArtifactsBucket"]["Properties"], values)
    apply_bucket(client("s3"), bucket["BucketName"], bucket)
    apply_log_retention(client("logs"), resources, values)
    apply_function_tags(client("lambda"), resources, values)
