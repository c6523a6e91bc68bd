"""Create or update a stack through a change set, wait, and report; the same calls on AWS and
on the local cloud."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from infra_scripts.cfn.validation import DeployError

Report = Callable[[str], None]
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
REPLACEABLE = ("ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS")  # a failed or never-executed create
DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE")


@dataclass
class Applied:
    changed: bool
    changes: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Waiting:
    poll_s: float = 5.0
    timeout_s: float = 3600.0


def _quiet(_: str) -> None:
    pass


def describe_stack(cfn: Any, name: str) -> dict | None:
    """The live stack, or None (never created, or deleted)."""
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    live = [s for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    return live[0] if live else None


def outputs_of(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def stack_resources(cfn: Any, name: str) -> dict[str, tuple[str, str]]:
    """logical id → (type, physical id) of the stack's resources."""
    found = {}
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=name):
        for item in page["StackResourceSummaries"]:
            found[item["LogicalResourceId"]] = (item["ResourceType"],
                                                item.get("PhysicalResourceId", ""))
    return found


def failure_reasons(cfn: Any, name: str, limit: int = 5) -> list[str]:
    try:
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    except ClientError:
        return []
    failed = [e for e in events if e.get("ResourceStatus", "").endswith("_FAILED")]
    return [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', e['ResourceStatus'])}"
            for e in failed[:limit]]


def wait_for_stack(cfn: Any, name: str, waiting: Waiting) -> dict | None:
    """Poll until the stack leaves every *_IN_PROGRESS status (None once deleted)."""
    deadline = time.monotonic() + waiting.timeout_s
    while True:
        stack = describe_stack(cfn, name)
        if stack is None or not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        if time.monotonic() > deadline:
            raise DeployError(f"stack {name} still {stack['StackStatus']} after "
                              f"{waiting.timeout_s:.0f} s")
        time.sleep(waiting.poll_s)


def _wait_for_change_set(cfn: Any, arn: str, waiting: Waiting) -> dict:
    deadline = time.monotonic() + waiting.timeout_s
    while True:
        described = cfn.describe_change_set(ChangeSetName=arn)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED") or time.monotonic() > deadline:
            return described
        time.sleep(waiting.poll_s)


def _changes(described: dict) -> list[str]:
    rows = []
    for change in described.get("Changes", []):
        item = change.get("ResourceChange", {})
        rows.append(f"{item.get('Action', '?'):7} {item.get('ResourceType', '?'):36} "
                    f"{item.get('LogicalResourceId', '?')}")
    return rows


def delete_stack(cfn: Any, name: str, waiting: Waiting) -> None:
    cfn.delete_stack(StackName=name)
    stack = wait_for_stack(cfn, name, waiting)
    if stack is not None:
        reasons = "; ".join(failure_reasons(cfn, name)) or stack["StackStatus"]
        raise DeployError(f"stack {name} was not deleted: {reasons}")


def unchanged(cfn: Any, name: str, body: str, parameters: dict[str, str]) -> bool:
    """The live stack already has this template and these parameter values."""
    current = cfn.get_template(StackName=name)["TemplateBody"]
    current = json.loads(current) if isinstance(current, str) else current
    stack = describe_stack(cfn, name) or {}
    values = {p["ParameterKey"]: str(p.get("ParameterValue")) for p in stack.get("Parameters", [])}
    return current == json.loads(body) and values == parameters


def apply(cfn: Any, name: str, body: str, parameters: dict[str, str], waiting: Waiting,
          report: Report = _quiet, url: str | None = None) -> Applied:
    """Create or update ``name`` with the template ``body`` (sent as ``url`` when given)."""
    stack = describe_stack(cfn, name)
    if stack and stack["StackStatus"] in REPLACEABLE:
        report(f"removing stack {name} left in {stack['StackStatus']} by an earlier attempt")
        delete_stack(cfn, name, waiting)
        stack = None
    if stack and stack["StackStatus"].endswith("_IN_PROGRESS"):
        raise DeployError(f"stack {name} is busy ({stack['StackStatus']}); try again later")
    if stack and unchanged(cfn, name, body, parameters):
        return Applied(changed=False, outputs=outputs_of(stack))
    kind = "UPDATE" if stack else "CREATE"
    template = {"TemplateURL": url} if url else {"TemplateBody": body}
    try:
        created = cfn.create_change_set(
            StackName=name, ChangeSetName=f"stepml-{time.strftime('%Y%m%d%H%M%S')}",
            ChangeSetType=kind, Capabilities=["CAPABILITY_NAMED_IAM"],
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Tags=[{"Key": "stepml:stack", "Value": name}], **template)
    except ClientError as error:
        if kind == "CREATE":
            _remove_failed_create(cfn, name, waiting)
        raise DeployError(f"CloudFormation refused the change set: "
                          f"{error.response['Error'].get('Message', error)}") from error
    try:
        return _execute(cfn, name, created["Id"], kind, waiting, report)
    except DeployError:
        if kind == "CREATE":  # nothing half-made: AWS leaves ROLLBACK_COMPLETE, moto leftovers
            _remove_failed_create(cfn, name, waiting)
        raise


def _remove_failed_create(cfn: Any, name: str, waiting: Waiting) -> None:
    try:
        if describe_stack(cfn, name) is not None:
            delete_stack(cfn, name, waiting)
    except (ClientError, DeployError):
        pass  # the original error is the one worth reporting


def _execute(cfn: Any, name: str, change_set: str, kind: str, waiting: Waiting,
             report: Report) -> Applied:
    described = _wait_for_change_set(cfn, change_set, waiting)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        cfn.delete_change_set(ChangeSetName=change_set)
        if any(marker in reason for marker in NO_CHANGES):
            return Applied(changed=False, outputs=outputs_of(describe_stack(cfn, name) or {}))
        raise DeployError(f"change set for {name} failed: {reason}")
    changes = _changes(described) or ["(parameter values only)"]
    for row in changes:
        report(f"  {row}")
    try:
        cfn.execute_change_set(ChangeSetName=change_set)
    except ClientError as error:  # moto applies synchronously and answers errors here
        raise DeployError(f"{kind.lower()} of stack {name} failed: "
                          f"{error.response['Error'].get('Message', error)}") from error
    stack = wait_for_stack(cfn, name, waiting)
    if stack is None or stack["StackStatus"] not in DONE:
        reasons = "; ".join(failure_reasons(cfn, name)) or (stack or {}).get("StackStatus")
        raise DeployError(f"{kind.lower()} of stack {name} failed: {reasons}")
    return Applied(changed=True, changes=changes, outputs=outputs_of(stack))
