"""The latest epoch line of a run's training, for the live view of `stepml run`.

Reads what AWS exposes: the SageMaker job's CloudWatch log stream, or the EC2 instance's
console output. Names come from the run id ValidateInput derives from the execution name.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from handlers.naming import resource_name, run_id, run_instance_filter

EPOCH_LINE = re.compile(r"^epoch=\d+\b[^\n]*", re.MULTILINE)
KEEP = ("epoch", "valid_loss", "valid_acc")


class TrainingProgress:
    def __init__(self, clients: Any, execution_name: str, backend: str, every_s: float = 2.0) -> None:
        self.client = clients
        self.run = run_id(execution_name)
        self.job_name = resource_name(self.run)
        self.backend = backend
        self.every_s = every_s
        self._checked = 0.0
        self._last = ""

    def __call__(self) -> str:
        """A short 'epoch=7 valid_acc=0.98' or the previous answer between polls."""
        if time.monotonic() - self._checked >= self.every_s:
            self._checked = time.monotonic()
            try:
                text = self._sagemaker_log() if self.backend == "sagemaker" else self._ec2_console()
            except Exception:  # progress is decoration: never break the run for it
                text = ""
            lines = EPOCH_LINE.findall(text)
            if lines:
                fields = dict(part.split("=", 1) for part in lines[-1].split() if "=" in part)
                self._last = " ".join(f"{k}={fields[k]}" for k in KEEP if k in fields)
        return f"· training {self._last}" if self._last else ""

    def _sagemaker_log(self) -> str:
        events = self.client("logs").filter_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=self.job_name)["events"]
        return "\n".join(event["message"] for event in events)

    def _ec2_console(self) -> str:
        ec2 = self.client("ec2")
        reservations = ec2.describe_instances(Filters=[
            run_instance_filter([self.run])])["Reservations"]
        instances = [i for r in reservations for i in r["Instances"]]
        if not instances:
            return ""
        output = ec2.get_console_output(InstanceId=instances[0]["InstanceId"]).get("Output", "")
        try:  # EC2 returns it base64-encoded
            return base64.b64decode(output, validate=True).decode("utf-8", "replace")
        except ValueError:
            return output
