"""ConfigurePredictFunction: point the predict Lambda at the endpoint, publish a version, move
the ``live`` alias to it, and apply reserved and provisioned concurrency."""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from handlers.common import client, error_code, setting, state_handler, with_section
from handlers.errors import TransientAwsError

ALIAS = "live"


def point_at_endpoint(function: str, endpoint: str) -> None:
    lam = client("lambda")
    current = lam.get_function_configuration(FunctionName=function)
    variables = current.get("Environment", {}).get("Variables", {})
    if variables.get("ENDPOINT_NAME") != endpoint:
        lam.update_function_configuration(
            FunctionName=function, Environment={"Variables": {**variables, "ENDPOINT_NAME": endpoint}})
    for _ in range(30):
        status = lam.get_function_configuration(FunctionName=function).get("LastUpdateStatus")
        if status in (None, "Successful"):
            return
        time.sleep(1)
    raise TransientAwsError(f"{function} configuration update still {status}")


def publish(function: str, description: str) -> str:
    """Publish a version, or reuse the one this run published before a retry or redrive (the
    local cloud, like moto, publishes a new version on every call)."""
    lam = client("lambda")
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=function):
        for version in page["Versions"]:
            if version["Version"] != "$LATEST" and version.get("Description") == description:
                return version["Version"]
    return lam.publish_version(FunctionName=function, Description=description)["Version"]


def move_alias(function: str, version: str) -> str:
    lam = client("lambda")
    try:
        return lam.update_alias(FunctionName=function, Name=ALIAS, FunctionVersion=version)["AliasArn"]
    except ClientError as error:
        if error_code(error) != "ResourceNotFoundException":
            raise
        return lam.create_alias(FunctionName=function, Name=ALIAS, FunctionVersion=version)["AliasArn"]


def apply_concurrency(function: str, reserved: int, provisioned: int) -> str:
    lam = client("lambda")
    if reserved > 0:
        lam.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=reserved)
    else:  # 0: no reservation (a new account's limit of 10 leaves nothing to reserve)
        lam.delete_function_concurrency(FunctionName=function)
    if provisioned <= 0:
        return "NONE"
    return lam.put_provisioned_concurrency_config(
        FunctionName=function, Qualifier=ALIAS, ProvisionedConcurrentExecutions=provisioned)["Status"]


@state_handler
def handler(doc: dict) -> dict:
    function = setting("PREDICT_FUNCTION_NAME")
    predict = doc["predict"]
    point_at_endpoint(function, doc["endpoint"]["name"])
    version = publish(function, f"serves {doc['endpoint']['name']} ({doc['run_id']})")
    alias_arn = move_alias(function, version)
    status = apply_concurrency(function, int(predict["reserved_concurrency"]),
                               int(predict["provisioned_concurrency"]))
    return with_section(doc, "predict", {"function": function, "version": version,
                                         "alias_arn": alias_arn, "provisioned_status": status})
