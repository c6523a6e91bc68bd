"""Lint every permission policy of the stack: parliament (with its community auditors) plus
the project's own rules.

Parliament's findings that are intended are waived here, each for one role, one issue and the
actions it names, with the reason; the README's IAM section lists them. Anything else it
reports is a failure.

Own rules: no wildcard in an action; a ``*`` resource only for actions that (by parliament's
copy of the AWS service authorization reference) have no resource-level permission, and only
in a statement whose Sid starts with ``NoResourceLevelPermission``; ``iam:PassRole`` only for
the SageMaker and EC2 training roles, always with ``iam:PassedToService``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

from infra_scripts import policies
from statemachine.config import PipelineConfig

STAR_SID_PREFIX = "NoResourceLevelPermission"
PASSABLE_ROLES = ("sagemaker", "ec2-training")
LINT_ACCOUNT = "111122223333"


@dataclass(frozen=True)
class Waiver:
    role: str
    issue: str
    actions: frozenset[str]  # lower-case, as parliament reports them
    reason: str


def _waiver(role: str, issue: str, actions: set[str], reason: str) -> Waiver:
    return Waiver(role, issue, frozenset(a.lower() for a in actions), reason)


WAIVERS: tuple[Waiver, ...] = (
    _waiver("handlers-training", "PERMISSIONS_MANAGEMENT_ACTIONS", {"iam:PassRole"},
            "passing the SageMaker role to SageMaker and the EC2 role to EC2 is how training "
            "starts; each PassRole names one role ARN and its iam:PassedToService"),
    _waiver("handlers-training", "PRIVILEGE_ESCALATION", {"iam:PassRole", "ec2:RunInstances"},
            "launching the training instance needs both; the only passable EC2 role is the "
            "training role (read datasets/code, write models) and RunInstances requires that "
            "instance profile"),
    _waiver("handlers-training", "RESOURCE_MISMATCH", {"ec2:RunInstances"},
            "RunInstances is split in two statements so that the tag and instance-profile "
            "conditions apply to the instance only (AWS's documented pattern); parliament checks "
            "each statement alone. Together they cover every resource type it requires"),
    _waiver("handlers-hosting", "PERMISSIONS_MANAGEMENT_ACTIONS",
            {"iam:PassRole", "iam:CreateServiceLinkedRole"},
            "CreateModel passes the SageMaker role (PassedToService sagemaker); the first "
            "autoscaling registration creates Application Auto Scaling's SageMaker service-linked "
            "role, scoped to that role and iam:AWSServiceName"),
)


@dataclass(frozen=True)
class Finding:
    role: str
    issue: str
    detail: str

    def __str__(self) -> str:
        return f"{self.role}: {self.issue}: {self.detail}"


def _actions_of(finding: Any) -> frozenset[str]:
    """The actions a parliament finding is about (its location or its detail)."""
    named = (finding.location or {}).get("actions") or []
    if isinstance(finding.detail, list):
        named = [*named, *(item.get("action", "") for item in finding.detail
                           if isinstance(item, dict))]
    return frozenset(str(action).lower() for action in named)


def waiver_for(role: str, finding: Any) -> Waiver | None:
    actions = _actions_of(finding)
    return next((w for w in WAIVERS if w.role == role and w.issue == finding.issue
                 and actions and actions <= w.actions), None)


def parliament_findings(role: str, document: dict) -> list[Finding]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources
        from parliament import analyze_policy_string

    analysed = analyze_policy_string(json.dumps(document), filepath=f"{role}.json",
                                     include_community_auditors=True)
    return [Finding(role, f.issue, json.dumps(f.detail, default=str))
            for f in analysed.findings if waiver_for(role, f) is None]


def _listed(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _privilege(action: str) -> dict | None:
    from parliament.statement import get_privilege_info

    service, name = action.split(":", 1)
    try:
        return get_privilege_info(service, name)
    except Exception:  # parliament raises for unknown actions; reported as UNKNOWN_ACTION
        return None


def has_resource_level_permission(action: str) -> bool:
    info = _privilege(action)
    kinds = [r["resource_type"] for r in (info or {}).get("resource_types", [])]
    return any(kinds)


def own_rule_findings(role: str, document: dict, values: dict[str, str]) -> list[Finding]:
    found: list[Finding] = []
    for statement in document["Statement"]:
        sid, actions = statement.get("Sid", "?"), _listed(statement["Action"])
        resources = _listed(statement["Resource"])
        found += [Finding(role, "WILDCARD_ACTION", f"{sid}: {a}") for a in actions if "*" in a]
        if "*" in resources:
            if not sid.startswith(STAR_SID_PREFIX):
                found.append(Finding(role, "STAR_RESOURCE_WITHOUT_REASON", sid))
            found += [Finding(role, "STAR_RESOURCE_BUT_RESOURCE_LEVEL_EXISTS", f"{sid}: {a}")
                      for a in actions if has_resource_level_permission(a)]
        if "iam:PassRole" in actions:
            found += _pass_role_findings(role, statement, resources, values)
    return found


def _pass_role_findings(role: str, statement: dict, resources: list[str],
                        values: dict[str, str]) -> list[Finding]:
    allowed = {policies.render(policies.role_arn(key), values) for key in PASSABLE_ROLES}
    condition = statement.get("Condition", {}).get("StringEquals", {})
    problems = [f"{statement['Sid']}: passes {r}" for r in resources if r not in allowed]
    if "iam:PassedToService" not in condition:
        problems.append(f"{statement['Sid']}: no iam:PassedToService condition")
    return [Finding(role, "PASS_ROLE", problem) for problem in problems]


def lint(config: PipelineConfig | None = None) -> list[Finding]:
    """Every unwaived finding on every role's permission policy (empty when clean)."""
    config = config or PipelineConfig()
    values = policies.placeholder_values(config, LINT_ACCOUNT)
    found: list[Finding] = []
    for role, document in policies.concrete_policies(config, LINT_ACCOUNT).items():
        found += parliament_findings(role, document)
        found += own_rule_findings(role, document, values)
    return found
