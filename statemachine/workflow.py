"""The pipeline as a Step Functions state machine, built with the Data Science SDK.

Every Task is a LambdaStep whose handler receives the whole execution document and returns it
with its own section added (``OutputPath: $.Payload``), so each state's input and output in the
console read as the pipeline's state at that point. Final failures are caught into ``$.error``
and routed through Cleanup to a Fail state that carries the original error and cause; anything
else fails the execution at its state, where RedriveExecution can resume it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pkg_resources deprecation inside the SDK's import
    from stepfunctions import steps
    from stepfunctions.steps import integration_resources
    from stepfunctions.steps.choice_rule import ChoiceRule
    from stepfunctions.workflow import Workflow

from handlers.errors import PipelineError
from statemachine.config import PipelineConfig

SNAPSHOT_PATH = Path(__file__).with_name("definition.asl.json")

# Errors worth another attempt: throttling and service hiccups, never a deterministic failure.
TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "TransientAwsError",
]

# Caught into Cleanup → Fail: the failures handlers diagnose as final (PipelineError's family).
# Anything else (transient errors that exhausted their retries, timeouts, permissions, bugs) is
# not caught: the execution fails at that state with its resources in place, and a redrive
# resumes there once the cause is fixed. Caught, it would resume at PipelineFailed and fail again.
DETERMINISTIC_ERRORS = sorted(error.__name__ for error in PipelineError.__subclasses__())

# Handler module (in handlers/) for each Task state; names are part of the interface.
TASK_HANDLERS = {
    "ValidateInput": "validate_input",
    "Tune": "tune",
    "CheckTuning": "check_tuning",
    "StartSageMakerTraining": "start_sagemaker_training",
    "StartEC2Training": "start_ec2_training",
    "CheckTraining": "check_training",
    "RegisterModel": "register_model",
    "EvaluationGate": "evaluation_gate",
    "CreateModel": "create_model",
    "CreateEndpointConfig": "create_endpoint_config",
    "DeployEndpoint": "deploy_endpoint",
    "CheckEndpoint": "check_endpoint",
    "RegisterAutoscaling": "register_autoscaling",
    "ConfigurePredictFunction": "configure_predict_function",
    "SmokeTest": "smoke_test",
    "Cleanup": "cleanup",
}


class FailWithCause(steps.Fail):
    """A Fail state whose error and cause come from the input (ASL ErrorPath/CausePath).

    The SDK's Fail only takes literal strings; the execution should fail with the error that
    actually happened, not a generic one.
    """

    def __init__(self, state_id: str, error_path: str, cause_path: str, **kwargs: Any) -> None:
        super().__init__(state_id, **kwargs)
        self._paths = {"ErrorPath": error_path, "CausePath": cause_path}

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), **self._paths}


def _task(state_id: str, config: PipelineConfig, payload: Any = "$") -> steps.LambdaStep:
    parameters: dict[str, Any] = {"FunctionName": config.function_arn(TASK_HANDLERS[state_id])}
    if payload == "$":
        parameters["Payload.$"] = "$"
    else:
        parameters["Payload"] = payload
    task = steps.LambdaStep(
        state_id,
        parameters=parameters,
        output_path="$.Payload",
        timeout_seconds=config.handler_timeout_seconds + 30,
    )
    task.add_retry(steps.Retry(error_equals=TRANSIENT_ERRORS, interval_seconds=1,
                               max_attempts=4, backoff_rate=2.0))
    return task


def _poll_loop(check: steps.LambdaStep, wait: steps.Wait, done_state: steps.State,
               choice_id: str, status_path: str, done_value: str) -> steps.Choice:
    """check → choice: done → next, otherwise wait → check again."""
    choice = steps.Choice(choice_id)
    choice.add_choice(ChoiceRule.StringEquals(variable=status_path, value=done_value), done_state)
    choice.default_choice(wait)
    wait.next(check)
    check.next(choice)
    return choice


def partition_of(region: str) -> str:
    """The ARN partition of a region, from the config rather than the shell's AWS settings."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@contextmanager
def _partition_for(region: str) -> Iterator[None]:
    """The SDK asks boto3 for the partition once per Task (slow, and from the shell's region);
    answer from the config instead while the definition is built."""
    original = integration_resources.get_aws_partition
    integration_resources.get_aws_partition = lambda: partition_of(region)
    try:
        yield
    finally:
        integration_resources.get_aws_partition = original


def build_workflow(config: PipelineConfig | None = None, client: Any = None) -> Workflow:
    """The pipeline; pass a Step Functions ``client`` to create/update/execute it with the SDK."""
    config = config or PipelineConfig()
    with _partition_for(config.region):
        return _build_workflow(config, client)


def _build_workflow(config: PipelineConfig, client: Any) -> Workflow:
    tasks = {
        state_id: _task(state_id, config)
        for state_id in TASK_HANDLERS
        if state_id not in ("ValidateInput",)
    }
    tasks["ValidateInput"] = _task("ValidateInput", config, payload={
        "input.$": "$", "execution_name.$": "$$.Execution.Name", "execution_arn.$": "$$.Execution.Id",
    })
    failed = FailWithCause("PipelineFailed", error_path="$.error.Error", cause_path="$.error.Cause")
    succeeded = steps.Succeed("PipelineSucceeded")
    tasks["Cleanup"].next(failed)
    for state_id, task in tasks.items():
        if state_id != "Cleanup":
            task.add_catch(steps.Catch(error_equals=DETERMINISTIC_ERRORS, next_step=tasks["Cleanup"],
                                       result_path="$.error"))

    def wait(state_id: str) -> steps.Wait:
        return steps.Wait(state_id, seconds_path="$.poll_seconds")

    # Hosting: model → config → endpoint (poll) → autoscaling → predict Lambda → smoke test.
    hosting_chain = steps.Chain([tasks["CreateModel"], tasks["CreateEndpointConfig"],
                                 tasks["DeployEndpoint"]])
    wait_for_endpoint = wait("WaitForEndpoint")
    tasks["DeployEndpoint"].next(wait_for_endpoint)
    wait_for_endpoint.next(tasks["CheckEndpoint"])
    _poll_loop(tasks["CheckEndpoint"], wait_for_endpoint, tasks["RegisterAutoscaling"],
               "IsEndpointInService", "$.endpoint.status", "InService")
    steps.Chain([tasks["RegisterAutoscaling"], tasks["ConfigurePredictFunction"],
                 tasks["SmokeTest"], succeeded])

    # Training on either backend, then one shared poll loop.
    wait_for_training = wait("WaitForTraining")
    tasks["StartSageMakerTraining"].next(wait_for_training)
    tasks["StartEC2Training"].next(wait_for_training)
    wait_for_training.next(tasks["CheckTraining"])
    # Registry and gate between training and hosting: a rejected candidate never reaches hosting.
    steps.Chain([tasks["RegisterModel"], tasks["EvaluationGate"], hosting_chain.steps[0]])
    _poll_loop(tasks["CheckTraining"], wait_for_training, tasks["RegisterModel"],
               "IsTrainingComplete", "$.training_job.status", "Completed")

    choose_backend = steps.Choice("ChooseTrainingBackend")
    choose_backend.add_choice(ChoiceRule.StringEquals("$.training.backend", "sagemaker"),
                              tasks["StartSageMakerTraining"])
    choose_backend.add_choice(ChoiceRule.StringEquals("$.training.backend", "ec2"),
                              tasks["StartEC2Training"])
    choose_backend.default_choice(steps.Fail("UnknownTrainingBackend", error="InvalidInput",
                                             cause="training.backend must be sagemaker or ec2"))

    # Optional HPO first: its best hyperparameters feed the training run.
    wait_for_tuning = wait("WaitForTuning")
    tasks["Tune"].next(wait_for_tuning)
    wait_for_tuning.next(tasks["CheckTuning"])
    _poll_loop(tasks["CheckTuning"], wait_for_tuning, choose_backend,
               "IsTuningComplete", "$.tuning_job.status", "Completed")
    should_tune = steps.Choice("ShouldTune")
    should_tune.add_choice(ChoiceRule.IsPresent("$.tuning.max_jobs", True), tasks["Tune"])
    should_tune.default_choice(choose_backend)

    definition = steps.Chain([tasks["ValidateInput"], should_tune])
    return Workflow(
        name=config.state_machine_name,
        definition=definition,
        role=config.role_arn("state-machine"),
        client=client or _offline_client(config.region),
    )


def _offline_client(region: str) -> Any:
    """Building a client makes no call; the SDK insists on one even to render the ASL."""
    import boto3

    return boto3.client("stepfunctions", region_name=region)


def definition_dict(config: PipelineConfig | None = None) -> dict[str, Any]:
    return json.loads(build_workflow(config).definition.to_json())


def definition_json(config: PipelineConfig | None = None) -> str:
    return json.dumps(definition_dict(config), indent=2, sort_keys=True) + "\n"


def write_snapshot(path: Path = SNAPSHOT_PATH) -> Path:
    """Regenerate the checked-in ASL (default config) that the drift test compares against."""
    path.write_text(definition_json(PipelineConfig()))
    return path
