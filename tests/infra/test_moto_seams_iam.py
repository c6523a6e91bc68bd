"""The moto 5.2 internals the IAM enforcement and the local deploy rely on. If one of these
fails after a moto upgrade, read the message: it names what moved and which module to adapt."""

from __future__ import annotations

import inspect

import moto
import pytest


def test_moto_version_is_the_one_these_seams_were_read_from() -> None:
    assert moto.__version__.startswith("5.2."), (
        f"moto {moto.__version__}: re-check infra_scripts/localcloud/iam_enforcement.py and "
        "infra_scripts/cfn/local_gaps.py against this version's internals")


def test_access_key_lookup_names_users_and_assumed_roles() -> None:
    from moto.iam import access_control

    parameters = list(inspect.signature(access_control.create_access_key).parameters)
    assert parameters == ["account_id", "partition", "access_key_id", "headers"], (
        "moto.iam.access_control.create_access_key moved: iam_enforcement.principal() calls it")
    for kind in (access_control.IAMUserAccessKey, access_control.AssumedRoleAccessKey):
        assert hasattr(kind, "collect_policies") and hasattr(kind, "arn"), kind
    with pytest.raises(access_control.CreateAccessKeyFailure):
        access_control.create_access_key("123456789012", "aws", "AKIAUNKNOWN", {})


def test_statement_evaluation_matches_resource_arns() -> None:
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    statement = IAMPolicyStatement({"Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
                                    "Resource": "arn:aws:sagemaker:us-east-1:1:endpoint/a"})
    assert statement.is_action_permitted(
        "sagemaker:InvokeEndpoint", "arn:aws:sagemaker:us-east-1:1:endpoint/a") \
        is PermissionResult.PERMITTED
    assert statement.is_action_permitted(
        "sagemaker:InvokeEndpoint", "arn:aws:sagemaker:us-east-1:1:endpoint/b") \
        is PermissionResult.NEUTRAL


def test_a_failed_condition_is_answered_as_deny() -> None:
    """Why iam_enforcement.statement_result re-checks conditions: moto says DENIED for an Allow
    statement whose condition does not hold (IAM: the statement simply does not apply)."""
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    statement = IAMPolicyStatement({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
                                    "Condition": {"StringEquals": {"aws:SourceVpc": "vpc-1"}}})
    verdict = statement.is_action_permitted("s3:GetObject", "*", None, {"aws:SourceVpc": "vpc-2"})
    assert verdict is PermissionResult.DENIED


def test_cloudformation_state_machines_land_where_the_interpreter_does_not_look() -> None:
    """Why local_gaps makes the state machine through the Step Functions API."""
    from moto.stepfunctions import models
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    source = inspect.getsource(models.StateMachine.create_from_cloudformation_json)
    assert "stepfunctions_backends" in source
    assert stepfunctions_parser_backends is not models.stepfunctions_backends


def test_executing_a_change_set_does_not_refresh_outputs() -> None:
    """Why local_gaps resolves the outputs itself."""
    from moto.cloudformation.models import CloudFormationBackend

    source = inspect.getsource(CloudFormationBackend.execute_change_set)
    assert "output_map" not in source, "moto now refreshes outputs: local_gaps.outputs can go"
