"""Least privilege, measured: which Allow statement (and which of its actions) is the only one
allowing a request that really happened, and in which state of the workflow.

IAM enforcement records, for every authorization, each Allow statement that matched
(``IamEnforcement.decisions``). A statement × action that is the *sole* allow of at least one
request is needed: without it that request gets AccessDenied. One that never is could be removed
without any run noticing. ``needs`` builds the table the mutation test asserts on and the README
prints: statement → the state whose request would fail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from infra_scripts import policies
from statemachine.config import PipelineConfig
from statemachine.workflow import TASK_HANDLERS

# What the local cloud does not do as the role itself, so no local request can need these; AWS
# does them with the role's credentials. (statement Sid → why it is kept)
SERVICE_SIDE = {
    "CreateTrainingLogGroup": "SageMaker creates /aws/sagemaker/TrainingJobs with the job's role; "
                              "locally the training extension stores logs directly",
    "WriteTrainingAndEndpointLogs": "SageMaker writes training and endpoint logs with the role; "
                                    "locally they are stored directly",
    "NoResourceLevelPermissionCloudWatchPutMetricData":
        "SageMaker publishes training metrics with the job's role; locally they are stored directly",
    "SendFailedEventsToOwnDeadLetterQueue":
        "the Lambda service sends a failed asynchronous event to the DLQ with the function's role; "
        "the local runtime does not deliver to dead-letter queues",
}

# Needed on paths the pipeline module does not take; each names the path and the test that runs
# it. (role key, Sid, action) → path. The upload and ListTags rows are asserted by the tests
# named; the others are exercised against moto only (no enforcement) and listed in the README.
OTHER_PATHS = {
    ("handlers-hosting", "RollbackAlarmsOfTheOneEndpoint", "cloudwatch:DescribeAlarms"):
        "SageMaker reads an update's rollback alarms with the caller's permission "
        "(deployment-guardrails-configuration.html); the local cloud reads them itself",
    ("handlers-hosting", "ScaleSageMakerVariants", "application-autoscaling:DeregisterScalableTarget"):
        "an update that changes the instance type deregisters the variant first "
        "(endpoint-scaling-update.html; tests/handlers/test_hosting.py, asserted)",
    ("handlers-training", "DescribeTrainingAndTuningJobs", "sagemaker:ListTags"):
        "a retried StartSageMakerTraining reusing its job (test_pipeline_redrive.py, asserted)",
    ("handlers-hosting", "DescribeModelsAndEndpointConfigs", "sagemaker:ListTags"):
        "a retried CreateModel/CreateEndpointConfig reusing what it made "
        "(test_pipeline_redrive.py, asserted)",
    ("handlers-hosting", "ReadTheOneEndpoint", "sagemaker:ListTags"):
        "a retried DeployEndpoint (test_pipeline_redrive.py, asserted)",
    ("handlers-predict-config", "ConfigureThePredictFunction", "lambda:UpdateFunctionConfiguration"):
        "an execution whose endpoint name differs from the predict function's (handlers tests)",
    ("handlers-cleanup", "StopTaggedTrainingAndTuningJobs", "sagemaker:StopTrainingJob"):
        "Cleanup while a job still runs (a timeout; tests/handlers/test_cleanup.py)",
    ("handlers-cleanup", "StopTaggedTrainingAndTuningJobs", "sagemaker:StopHyperParameterTuningJob"):
        "Cleanup while tuning still runs (TuningTimedOut; tests/handlers/test_cleanup.py)",
    ("handlers-cleanup", "DeleteTaggedModelsAndEndpointConfigs", "sagemaker:DeleteModel"):
        "a failure after CreateModel (tests/handlers/test_cleanup.py, against moto)",
    ("handlers-cleanup", "DeleteTaggedModelsAndEndpointConfigs", "sagemaker:DeleteEndpointConfig"):
        "a failure after CreateEndpointConfig (tests/handlers/test_cleanup.py)",
    ("handlers-cleanup", "DeleteTheOneEndpoint", "sagemaker:DeleteEndpoint"):
        "a failure after this run created the endpoint (test_pipeline_redrive's first attempt)",
    ("handlers-cleanup", "TerminateOnlyTrainingProfileInstances", "ec2:TerminateInstances"):
        "Cleanup of a still-running EC2 training instance (tests/handlers/test_cleanup.py)",
    ("on-upload", "StartOwnStateMachine", "states:StartExecution"):
        "the S3 upload trigger (tests/workflow/test_upload_trigger.py, asserted)",
    ("on-upload", "ListDatasets", "s3:ListBucket"): "the S3 upload trigger (asserted)",
    ("on-upload", "ReadDatasetMarkersAndManifests", "s3:GetObject"):
        "the S3 upload trigger (asserted)",
    ("on-upload", "WriteOwnLogs", "logs:CreateLogStream"): "the S3 upload trigger (asserted)",
    ("on-upload", "WriteOwnLogs", "logs:PutLogEvents"): "the S3 upload trigger (asserted)",
}


@dataclass(frozen=True)
class Need:
    role: str  # the role key (policies.ROLES)
    sid: str
    action: str
    sole_requests: int  # requests this statement × action alone allowed
    state: str  # where the first such request came from ("" when none)
    resource: str  # its resource


def state_of(session: str, resource: str, config: PipelineConfig) -> str:
    """The workflow state (or service) behind an STS session name, as the local cloud names
    sessions: a function's name, ``StepFunctions``, ``SageMaker-<job or endpoint>``, an instance."""
    by_function = {config.function_name(module): state for state, module in TASK_HANDLERS.items()}
    by_function[config.function_name(policies.PREDICT_MODULE)] = "predict function"
    by_function[config.function_name(policies.ON_UPLOAD_MODULE)] = "upload trigger"
    if session in by_function:
        return by_function[session]
    if session == "StepFunctions":  # the state machine invoking a Task: the Task's state
        function = resource.split(":function:", 1)[-1].split(":")[0]
        return f"{by_function.get(function, function)} (invoked by the state machine)"
    if session.startswith("SageMaker-"):
        return "SageMaker training job or endpoint instance"
    if session.startswith("i-"):
        return "EC2 training instance"
    return session


def _role_and_session(principal: str) -> tuple[str, str]:
    if ":assumed-role/" not in principal:
        return principal, ""
    role, _, session = principal.split(":assumed-role/", 1)[1].partition("/")
    return role, session


def needs(config: PipelineConfig, decisions: Iterable) -> list[Need]:
    """One row per role × Allow statement × action of the stack's policies."""
    sole: dict[tuple[str, str, str], list] = {}
    for decided in decisions:
        if not decided.allowed or len(decided.decision.statements) != 1:
            continue
        role, _ = _role_and_session(decided.principal)
        sid = decided.decision.statements[0].split("/", 1)[1]
        sole.setdefault((role, sid, decided.request.action.lower()), []).append(decided)
    rows = []
    for spec in policies.ROLES:
        role_name = f"{config.prefix}-{spec.key}"
        for statement in spec.policy()["Statement"]:
            for action in statement["Action"]:
                found = sole.get((role_name, statement["Sid"], action.lower()), [])
                first = found[0] if found else None
                state = state_of(_role_and_session(first.principal)[1], first.request.resource,
                                 config) if first else ""
                rows.append(Need(spec.key, statement["Sid"], action, len(found), state,
                                 first.request.resource if first else ""))
    return rows


def unneeded(rows: Iterable[Need]) -> list[Need]:
    """Rows no request needed, less the service-side statements (SERVICE_SIDE) and those of
    other paths (OTHER_PATHS)."""
    return [row for row in rows if row.sole_requests == 0 and row.sid not in SERVICE_SIDE
            and (row.role, row.sid, row.action) not in OTHER_PATHS]


def markdown(rows: Iterable[Need]) -> str:
    lines = ["| role | statement | action | requests only it allowed | state that fails without it |",
             "|---|---|---|---|---|"]
    for row in rows:
        other = OTHER_PATHS.get((row.role, row.sid, row.action))
        where = row.state or (f"— (AWS-side: {SERVICE_SIDE[row.sid]})" if row.sid in SERVICE_SIDE
                              else f"— (other path: {other})" if other else "—")
        lines.append(f"| {row.role} | {row.sid} | `{row.action}` | {row.sole_requests} | {where} |")
    return "\n".join(lines) + "\n"
