"""Named errors: their class names are the ``errorType`` Step Functions' Retry/Catch match."""


class PipelineError(Exception):
    """Base for deterministic failures: caught into Cleanup, never retried."""


class InvalidInput(PipelineError):
    """The execution input is unusable; nothing was created."""


class TrainingFailed(PipelineError):
    pass


class TrainingTimedOut(PipelineError):
    pass


class TuningFailed(PipelineError):
    pass


class EndpointFailed(PipelineError):
    pass


class EndpointTimedOut(PipelineError):
    """The endpoint was still not InService when endpoint.max_wait_seconds ran out."""


class TuningTimedOut(PipelineError):
    """The tuning job was still running when tuning.max_wait_seconds ran out."""


class PredictFunctionNotReady(PipelineError):
    pass


class SmokeTestFailed(PipelineError):
    pass


class RequestRefused(PipelineError):
    """AWS refused a create request for a reason a retry cannot change (a bad instance type, a
    MaxRuntime over the limit, a name another run owns); the cause carries AWS's code and text."""


class QuotaExceeded(PipelineError):
    """An account quota refused the request (SageMaker ResourceLimitExceeded, Lambda's unreserved
    concurrency minimum, EC2's vCPU limit); the message names the quota and how to raise it."""


class ModelRejected(PipelineError):
    """The evaluation gate rejected the candidate; the cause is JSON with both scores and why."""


class RolloutRolledBack(PipelineError):
    """The guarded update's alarms tripped and SageMaker rolled the endpoint back to the old fleet."""


class TransientAwsError(Exception):
    """Throttling or a 5xx from an AWS API: the state machine retries these with backoff."""
