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


class PredictFunctionNotReady(PipelineError):
    pass


class SmokeTestFailed(PipelineError):
    pass


class TransientAwsError(Exception):
    """Throttling or a 5xx from an AWS API: the state machine retries these with backoff."""
