"""S3 → EventBridge → Lambda / Step Functions on the local cloud.

moto 5.2 already does half of it: a bucket with ``EventBridgeConfiguration`` turns object
events into EventBridge events (``s3/notifications.py``) and hands them to every rule's
``Rule.send_to_targets``, which matches the rule's pattern (moto's ``EventPattern``: prefix,
suffix, wildcard, …) but delivers only to logs/SQS/archive/bus/API-destination targets. This
module wraps ``send_to_targets`` to also deliver to Lambda functions (an asynchronous Invoke, as
EventBridge does, over HTTP to this cloud so it runs on the real Lambda runtime and counts like
any invocation) and to state machines (StartExecution), and to skip DISABLED rules. The same
wrapper serves PutEvents.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from infra_scripts.localcloud.core.server import LocalCloud

# moto stamps every S3-originated event with this constant id and a Unix time.
_MOTO_CONSTANT_ID = "17793124-05d4-b198-2fde-7ededc63b103"
OUR_SERVICES = ("lambda", "states")  # target types moto's events backend does not deliver to


class Deliverer:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.delivered: list[tuple[str, str]] = []  # (target ARN, event id), for tests and debugging

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.cloud.boto3_client(service)
            return self._clients[service]

    def deliver(self, rule: Any, event: dict) -> None:
        """Send ``event`` to the rule's Lambda and Step Functions targets, off the caller's thread."""
        event = normalise(event)
        for target in rule.targets:
            if _service(target) in OUR_SERVICES:
                threading.Thread(target=self._send, args=(_service(target), target, event),
                                 daemon=True).start()

    def _send(self, service: str, target: dict, event: dict) -> None:
        payload = target_input(target, event)
        try:
            if service == "lambda":
                self.client("lambda").invoke(FunctionName=target["Arn"], InvocationType="Event",
                                             Payload=payload)
            else:
                self.client("stepfunctions").start_execution(stateMachineArn=target["Arn"],
                                                             input=payload)
            self.delivered.append((target["Arn"], event["id"]))
        except Exception as error:  # EventBridge delivery is asynchronous: log, never raise
            print(f"localcloud.s3_events: delivery to {target['Arn']} failed: {error!r}")


def _service(target: dict) -> str:
    return target["Arn"].split(":")[2]


def normalise(event: dict) -> dict:
    """AWS's shape for what moto leaves rough: a unique id, an ISO-8601 time and, in S3 events,
    ``etag`` (moto writes ``eTag``) and no ``version-id`` for an unversioned object."""
    event = json.loads(json.dumps(event, default=str))
    obj = event.get("detail", {}).get("object") if event.get("source") == "aws.s3" else None
    if isinstance(obj, dict):
        if "eTag" in obj:
            obj["etag"] = obj.pop("eTag")
        if obj.get("version-id") in (None, "null"):
            obj.pop("version-id", None)
    if event.get("id") in (None, "", _MOTO_CONSTANT_ID):
        event["id"] = str(uuid.uuid4())
    if isinstance(event.get("time"), int | float):
        event["time"] = datetime.fromtimestamp(event["time"], tz=UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    return event


def target_input(target: dict, event: dict) -> str:
    """The payload a target receives: Input, InputPath, InputTransformer or the whole event."""
    from moto.events.utils import EventTemplateParser

    if "Input" in target:
        return target["Input"]
    if "InputPath" in target:
        return json.dumps(_simple_path(target["InputPath"], event))
    transformer = target.get("InputTransformer")
    if transformer:
        rendered = EventTemplateParser.parse(input_template=transformer.get("InputTemplate"),
                                             input_paths_map=transformer.get("InputPathsMap", {}),
                                             event={"ingestion-time": event.get("time"), **event})
        return rendered if isinstance(rendered, str) else json.dumps(rendered)
    return json.dumps(event)


def _simple_path(path: str, document: Any) -> Any:
    """``$`` or ``$.a.b``: the InputPath forms rules use in practice."""
    for part in [p for p in path.removeprefix("$").split(".") if p]:
        document = document.get(part) if isinstance(document, dict) else None
    return document


def install(cloud: LocalCloud) -> Deliverer:
    from moto.events.models import Rule

    deliverer = Deliverer(cloud)
    original = Rule.send_to_targets

    @functools.wraps(original)  # keeps moto's method reachable as __wrapped__ (seam test)
    def send_to_targets(rule: Any, original_event: dict, transform_input: bool = True) -> None:
        if rule.state != "ENABLED":
            return
        # moto raises NotImplementedError on target types it lacks: give it only its own.
        others = [t for t in rule.targets if _service(t) not in OUR_SERVICES]
        if others:
            theirs = copy.copy(rule)
            theirs.targets = others
            original(theirs, original_event, transform_input)
        if len(others) < len(rule.targets) and rule.event_pattern.matches_event(original_event):
            deliverer.deliver(rule, original_event)

    cloud.patch(Rule, "send_to_targets", send_to_targets)
    return deliverer
