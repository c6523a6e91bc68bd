"""The checkov findings the stack keeps on purpose, each with the reason it is right here.

``tests/infra/test_checkov.py`` runs checkov (its own venv: ``make checkov``) on both templates:
it must report no failed check, every skip must be one of these waivers, and each waiver must
still be needed (checkov fails that check on the resource once the waiver is taken away). The
template attaches waivers by scope, as checkov's documented CloudFormation ``Metadata``
(``{"checkov": {"skip": [{"id": …, "comment": …}]}}``); the README's "Infrastructure posture"
table is rendered from here (``python -m infra_scripts.cfn.posture``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from statemachine.workflow import TASK_HANDLERS


@dataclass(frozen=True)
class Waiver:
    check: str  # checkov's id
    name: str  # checkov's name for the check, as its report gives it
    reason: str


# -- scopes: the resources a set of waivers applies to (the README's "resources" column) --------
FUNCTION_COUNT = len(TASK_HANDLERS) + 2  # the task functions, predict and on-upload
FUNCTIONS = f"every Lambda function ({FUNCTION_COUNT})"
TASK_FUNCTIONS = f"the {len(TASK_HANDLERS)} task functions the state machine invokes"
PREDICT = "`PredictFunction`"
ON_UPLOAD = "`OnUploadFunction`"
DEAD_LETTER_QUEUE = "`OnUploadDeadLetterQueue`"
LOG_GROUPS = f"every log group ({FUNCTION_COUNT} functions' and the endpoint's)"
BUCKET = "`ArtifactsBucket` (stack and bootstrap)"

_VPC = "Ensure that AWS Lambda function is configured inside a VPC"
_ENV_KMS = "Check encryption settings for Lambda environment variable"
_DLQ = "Ensure that AWS Lambda function is configured for a Dead Letter Queue(DLQ)"
_CONCURRENCY = ("Ensure that AWS Lambda function is configured for function-level concurrent "
                "execution limit")
_UNUSED_POOL = ("a reservation is carved out of the account's concurrency, of which Lambda keeps "
                "min(100, limit) unreserved, so on a new account (limit 10) any reservation fails "
                "the deploy (see `stepml preflight`)")

WAIVERS: dict[str, tuple[Waiver, ...]] = {
    FUNCTIONS: (
        Waiver("CKV_AWS_117", _VPC,
               "The stack has no VPC and its functions reach nothing private: they call only AWS "
               "APIs (S3, Step Functions, SageMaker and SageMaker Runtime, EC2, SSM, Lambda, "
               "Application Auto Scaling, CloudWatch) on their public HTTPS endpoints, "
               "SigV4-signed and authorised by IAM. In a VPC they would need a NAT gateway "
               "(about $32/month per AZ) or an interface endpoint per service to reach the same "
               "APIs, with no access control that IAM does not already give."),
        Waiver("CKV_AWS_173", _ENV_KMS,
               "Lambda encrypts environment variables at rest with the AWS managed key "
               "(aws/lambda) already; checkov asks for a customer managed key. These hold no "
               "secrets, only names, ARNs, S3 URIs, key prefixes and EXECUTION_DEFAULTS (the "
               "config's tunables): stack parameters, config values and the stack's own ARNs "
               "(tests/infra/test_checkov.py holds the names to that). A CMK would add $1/month "
               "and a key policy and grants to maintain, without hiding anything more."),
    ),
    TASK_FUNCTIONS: (
        Waiver("CKV_AWS_116", _DLQ,
               "Invoked synchronously by the state machine (arn:aws:states:::lambda:invoke, "
               "RequestResponse), and a dead-letter queue only receives failed asynchronous "
               "invocations, so it would stay empty: a failure returns to the state machine as "
               "the Task's error, for its Retry and Catch rules, and the execution history "
               "keeps it."),
        Waiver("CKV_AWS_115", _CONCURRENCY,
               "The state machine bounds their concurrency: an execution runs one Task at a "
               "time, so it follows the number of executions, not traffic; " + _UNUSED_POOL
               + ", and elsewhere it takes capacity the predict function may need."),
    ),
    PREDICT: (
        Waiver("CKV_AWS_116", _DLQ,
               "Invoked synchronously (RequestResponse) through its `live` alias, by clients and "
               "by SmokeTest: errors go back to the caller. A dead-letter queue only receives "
               "failed asynchronous invocations, so it would stay empty."),
        Waiver("CKV_AWS_115", _CONCURRENCY,
               "Its reserved concurrency is the pipeline's to set, not the template's: "
               "ConfigurePredictFunction applies the execution's predict.reserved_concurrency "
               "(default: the ReservedConcurrency parameter) with PutFunctionConcurrency, with "
               "provisioned concurrency on the alias, after preflight has checked the account's "
               "unreserved minimum; 0 means no reservation on purpose (new accounts can reserve "
               "none). A template value would be a second source, and would fail the deploy "
               "itself where nothing can be reserved."),
    ),
    ON_UPLOAD: (
        Waiver("CKV_AWS_115", _CONCURRENCY,
               "Invoked asynchronously by EventBridge once per dataset completion marker (a "
               "repeated event maps to the same execution name). A reservation would not bound "
               "what it starts, since Lambda queues throttled asynchronous events and retries "
               "them for up to 6 hours, and " + _UNUSED_POOL + "."),
    ),
    DEAD_LETTER_QUEUE: (
        Waiver("CKV_AWS_27", "Ensure all data stored in the SQS queue is encrypted",
               "It is encrypted at rest: SqsManagedSseEnabled (SSE-SQS, SQS-owned keys), which "
               "checkov's check does not recognise, as it looks only for KmsMasterKeyId. A KMS "
               "key would add kms:GenerateDataKey and kms:Decrypt to the upload role and KMS "
               "request charges, for messages that hold S3 object-created events (bucket, key, "
               "ETag) and nothing secret."),
    ),
    LOG_GROUPS: (
        Waiver("CKV_AWS_158", "Ensure that CloudWatch Log Group is encrypted by KMS",
               "CloudWatch Logs encrypts every log group at rest already (service-managed keys); "
               "checkov asks for a customer managed KMS key. The handlers log resource names, "
               "statuses and errors, not the events they get (log_event=False), images or "
               "credentials; the endpoint, its model server's lines; all kept LogRetentionDays "
               "(default 30). A CMK would cost $1/month plus requests and need a key policy "
               "granting logs.<region>.amazonaws.com, for logs that hold no secret."),
    ),
    BUCKET: (
        Waiver("CKV_AWS_18", "Ensure the S3 bucket has access logging enabled",
               "Server access logs need a second bucket (one logging into itself logs its own log "
               "writes), which would fail this same check and outlive the stack as this one "
               "does. The bucket is private (public access blocked, BucketOwnerEnforced), "
               "encrypted, versioned with noncurrent versions kept 30 days, and written only by "
               "the stack's roles and whoever uploads datasets; where an audit of object access "
               "is required, CloudTrail S3 data events record each request with no stack "
               "resource."),
    ),
}


def skips(*scopes: str) -> list[dict[str, str]]:
    return [{"id": waiver.check, "comment": waiver.reason}
            for scope in scopes for waiver in WAIVERS[scope]]


def waived(resource: dict[str, Any], *scopes: str) -> dict[str, Any]:
    """``resource`` with checkov skips in its Metadata for every waiver of ``scopes``."""
    return {**resource, "Metadata": {"checkov": {"skip": skips(*scopes)}}}


def waiver_of(check: str, comment: str) -> Waiver | None:
    """The waiver a skip in a template came from (None: the skip is not one of ours)."""
    return next((w for ws in WAIVERS.values() for w in ws
                 if (w.check, w.reason) == (check, comment)), None)


def readme_table() -> str:
    """The README's table of waivers: check → resources → reason, by check id."""
    rows = sorted(((w.check, w.name, scope, w.reason)
                   for scope, waivers in WAIVERS.items() for w in waivers),
                  key=lambda row: int(row[0].rsplit("_", 1)[1]))  # CKV_AWS_18 before _115
    lines = ["| check | resources | why it is waived |", "|---|---|---|"]
    lines += [f"| {check} ({name}) | {scope} | {reason} |" for check, name, scope, reason in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(readme_table(), end="")
