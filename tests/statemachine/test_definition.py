"""The state machine's ASL: snapshot, interface (state names), error handling, routing."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from handlers import errors
from statemachine.config import PipelineConfig
from statemachine.workflow import SNAPSHOT_PATH, TASK_HANDLERS, definition_dict, definition_json

# Names from issue 5: part of the interface (CLI progress, dashboards, redrive), keep them stable.
TASK_STATES = ["ValidateInput", "Tune", "CheckTuning", "StartSageMakerTraining", "StartEC2Training",
               "CheckTraining", "RegisterModel", "EvaluationGate", "CreateModel", "CreateEndpointConfig",
               "DeployEndpoint",
               "CheckEndpoint", "RegisterAutoscaling", "ConfigurePredictFunction", "SmokeTest",
               "Cleanup"]
OTHER_STATES = {"ChooseTrainingBackend": "Choice", "WaitForTraining": "Wait",
                "WaitForEndpoint": "Wait", "PipelineSucceeded": "Succeed", "PipelineFailed": "Fail"}


@pytest.fixture(scope="module")
def built() -> str:
    """The ASL from the builder (default config); building takes seconds, so once per module."""
    return definition_json()


@pytest.fixture(scope="module")
def asl(built: str) -> dict[str, Any]:
    return json.loads(built)


@pytest.fixture(scope="module")
def states(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return asl["States"]


def tasks(states: dict[str, dict]) -> Iterator[tuple[str, dict]]:
    return ((name, state) for name, state in states.items() if state["Type"] == "Task")


def test_snapshot_matches_the_builder(built: str) -> None:
    assert SNAPSHOT_PATH.read_text() == built, (
        "statemachine/definition.asl.json is out of date: run `stepml definition --write`")


def test_state_names_are_stable(states: dict[str, dict]) -> None:
    for name in TASK_STATES:
        assert states.get(name, {}).get("Type") == "Task", name
    for name, kind in OTHER_STATES.items():
        assert states.get(name, {}).get("Type") == kind, name
    assert sorted(TASK_HANDLERS) == sorted(TASK_STATES)


def test_starts_with_validation(asl: dict[str, Any], states: dict[str, dict]) -> None:
    assert asl["StartAt"] == "ValidateInput"
    assert states["ValidateInput"]["Parameters"]["Payload"] == {
        "input.$": "$", "execution_name.$": "$$.Execution.Name", "execution_arn.$": "$$.Execution.Id"}


def test_every_task_invokes_its_handler_lambda(states: dict[str, dict]) -> None:
    config = PipelineConfig()
    for name, state in tasks(states):
        assert state["Resource"] == "arn:aws:states:::lambda:invoke", name
        assert state["Parameters"]["FunctionName"] == config.function_arn(TASK_HANDLERS[name]), name
        assert state["OutputPath"] == "$.Payload", name
        assert state["TimeoutSeconds"] > config.handler_timeout_seconds, name
        if name != "ValidateInput":
            assert state["Parameters"]["Payload.$"] == "$", name


def deterministic_errors() -> set[str]:
    """Every named failure a handler raises as final (handlers.errors.PipelineError's family)."""
    return {name for name, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, errors.PipelineError) and cls is not errors.PipelineError}


def test_every_task_is_caught_into_cleanup(states: dict[str, dict]) -> None:
    """Named final failures go through Cleanup into PipelineFailed with the original error;
    anything else fails at its state, where a redrive can resume."""
    for name, state in tasks(states):
        if name == "Cleanup":
            continue
        [catch] = state["Catch"]
        assert (catch["Next"], catch["ResultPath"]) == ("Cleanup", "$.error"), name
        assert set(catch["ErrorEquals"]) == deterministic_errors(), name
    assert "Catch" not in states["Cleanup"]
    assert states["Cleanup"]["Next"] == "PipelineFailed"
    assert states["PipelineFailed"] == {"Type": "Fail", "ErrorPath": "$.error.Error",
                                        "CausePath": "$.error.Cause"}


def test_retry_only_on_transient_errors(states: dict[str, dict]) -> None:
    deterministic = deterministic_errors() | {"PipelineError"}
    assert {"InvalidInput", "TrainingFailed", "EndpointFailed"} <= deterministic
    for name, state in tasks(states):
        [retry] = state["Retry"]
        retried = set(retry["ErrorEquals"])
        assert {"TransientAwsError", "Lambda.TooManyRequestsException",
                "Lambda.ServiceException"} <= retried, name
        assert not retried & {"States.ALL", "States.TaskFailed", "States.Timeout"}, name
        assert not retried & deterministic, name
        assert all(error.startswith("Lambda.") or error == "TransientAwsError" for error in retried), name
        assert retry["BackoffRate"] > 1 and retry["MaxAttempts"] >= 2, name


def test_choice_routes_on_the_training_backend(states: dict[str, dict]) -> None:
    choice = states["ChooseTrainingBackend"]
    routes = {rule["StringEquals"]: rule["Next"] for rule in choice["Choices"]
              if rule["Variable"] == "$.training.backend"}
    assert routes == {"sagemaker": "StartSageMakerTraining", "ec2": "StartEC2Training"}
    assert states[choice["Default"]]["Type"] == "Fail"


def test_training_and_endpoint_poll_loops(states: dict[str, dict]) -> None:
    for start in ("StartSageMakerTraining", "StartEC2Training"):
        assert states[start]["Next"] == "WaitForTraining"
    for wait, check in (("WaitForTraining", "CheckTraining"), ("WaitForEndpoint", "CheckEndpoint"),
                        ("WaitForTuning", "CheckTuning")):
        assert states[wait] == {"Type": "Wait", "SecondsPath": "$.poll_seconds", "Next": check}
    loops = {"CheckTraining": ("$.training_job.status", "Completed", "RegisterModel", "WaitForTraining"),
             "CheckEndpoint": ("$.endpoint.status", "InService", "RegisterAutoscaling", "WaitForEndpoint"),
             "CheckTuning": ("$.tuning_job.status", "Completed", "ChooseTrainingBackend", "WaitForTuning")}
    for check, (variable, done, then, again) in loops.items():
        choice = states[states[check]["Next"]]
        assert choice["Choices"] == [{"Variable": variable, "StringEquals": done, "Next": then}], check
        assert choice["Default"] == again, check


def test_the_main_path(states: dict[str, dict]) -> None:
    path = ["RegisterModel", "EvaluationGate", "CreateModel", "CreateEndpointConfig", "DeployEndpoint",
            "WaitForEndpoint"]
    for here, there in zip(path, path[1:], strict=False):
        assert states[here]["Next"] == there
    path = ["RegisterAutoscaling", "ConfigurePredictFunction", "SmokeTest", "PipelineSucceeded"]
    for here, there in zip(path, path[1:], strict=False):
        assert states[here]["Next"] == there
    should_tune = states[states["ValidateInput"]["Next"]]
    assert should_tune["Choices"] == [{"Variable": "$.tuning.max_jobs", "IsPresent": True, "Next": "Tune"}]
    assert should_tune["Default"] == "ChooseTrainingBackend"


def test_every_state_is_reachable_and_every_target_exists(asl: dict[str, Any],
                                                          states: dict[str, dict]) -> None:
    def targets(state: dict) -> list[str]:
        found = [state[key] for key in ("Next", "Default") if key in state]
        found += [rule["Next"] for rule in state.get("Choices", [])]
        return found + [catch["Next"] for catch in state.get("Catch", [])]

    seen, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(targets(states[name]))
    assert seen == set(states)


def test_config_parameterises_the_definition() -> None:
    config = PipelineConfig(prefix="other", handler_timeout_seconds=120)
    states = definition_dict(config)["States"]
    assert states["CreateModel"]["Parameters"]["FunctionName"] == config.function_arn("create_model")
    assert ":function:other-create-model" in states["CreateModel"]["Parameters"]["FunctionName"]
    assert states["CreateModel"]["TimeoutSeconds"] == 150


def test_moto_accepts_the_definition(built: str, asl: dict[str, Any],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    config = PipelineConfig()
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name=config.region)
        arn = sfn.create_state_machine(name=config.state_machine_name, definition=built,
                                       roleArn=config.role_arn("state-machine"))["stateMachineArn"]
        assert arn == config.state_machine_arn
        described = sfn.describe_state_machine(stateMachineArn=arn)
        assert json.loads(described["definition"]) == asl
