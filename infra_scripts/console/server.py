"""``stepml console``: a small local web app over the Step Functions API.

State machines, their executions (status, duration), one execution's graph coloured by state
status and refreshed live by polling, each state's input/output/error, the event history and a
Redrive button. Standard library HTTP server on 127.0.0.1; it reads only through the public API,
so the same console works against AWS and the local cloud.

JSON API (errors are ``{"error": CODE, "message": TEXT}`` with a 4xx, never a stack trace):
``GET /api/state-machines``, ``GET /api/executions?stateMachineArn=``,
``GET /api/execution?arn=``, ``POST /api/redrive`` with ``{"executionArn": ...}``.

The ML side, over the stack its ``PipelineConfig`` names: ``GET /api/models`` (the registry's
versions), ``GET /api/models/<version>`` (one version and its evaluation report),
``GET /api/training-curves?job=`` (per-epoch metrics from the job's logs, parsed with its
MetricDefinitions as SageMaker does, else the report's history), ``GET /api/endpoint`` (status,
instances over time, invocations per minute, autoscaling activities) and ``POST /api/predict``
with ``{"image": base64, "top_k": n}`` (the stack's predict function, its ``live`` alias).

Only its own page may use it, as Jupyter guards its server: a token made at each start is in
the URL printed (``/?token=…``) and must come back as the ``X-Stepml-Token`` header on every API
call; the Host must be this server's (no DNS rebinding); a request with another Origin is
refused; a POST must be ``application/json`` (no form can send that without a CORS preflight,
and no CORS is answered). With the user's AWS credentials behind it, a redrive from another
page would otherwise act on real executions.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import traceback
from datetime import UTC, date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from botocore.exceptions import BotoCoreError, ClientError

from handlers.common import sagemaker_describe
from handlers.naming import scaling_resource_id
from infra_scripts import executions as ex
from infra_scripts import model_registry
from infra_scripts.progress import history
from statemachine import graph
from statemachine.config import PipelineConfig

STATIC = Path(__file__).with_name("static")
MAX_BODY = 64 * 1024
HISTORY_LIMIT = 500  # events sent to the page; the CLI's `history` shows them all
MAX_PREDICT_BODY = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
DRAIN_LIMIT = 2 * MAX_PREDICT_BODY  # an oversized body up to this is read away before the 413
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
MAX_LOG_EVENTS = 100_000  # a runaway job's logs must not hold the console
# \Z, not $: a name with a trailing newline is no name (_require matches from the start)
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}\Z")  # SageMaker's TrainingJobName
VERSION = re.compile(r"[1-9][0-9]{0,8}\Z")
EPOCH = re.compile(r"\bepoch=([0-9]+)")  # \b: not inside best_epoch=
CURVE_METRICS = ("train_loss", "valid_loss", "valid_acc")
LIVE_ALIAS = "live"
VARIANT = "AllTraffic"
AUTOSCALING_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
DESIRED = re.compile(r"desired instance count to ([0-9]+)")
WINDOW_MINUTES = 60
TOP_K_DEFAULT, TOP_K_MAX = 5, 100
_NOT_FOUND = ("ExecutionDoesNotExist", "StateMachineDoesNotExist", "ResourceNotFound",
              "ResourceNotFoundException")
_BAD_INPUT = ("InvalidArn", "ValidationException", "InvalidName", "InvalidToken")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _from_client_error(error: ClientError) -> ApiError:
    code = error.response.get("Error", {}).get("Code", "ServiceError")
    message = error.response.get("Error", {}).get("Message", str(error))
    if code in _NOT_FOUND:
        return ApiError(404, code, message)
    if code in _BAD_INPUT:
        return ApiError(400, code, message)
    if code == "ExecutionNotRedrivable":
        return ApiError(409, code, message)
    if code == "RequestEntityTooLargeException":
        return ApiError(413, code, message)
    if "Throttl" in code or code == "TooManyRequestsException":
        return ApiError(503, code, message)
    return ApiError(502, code, message)


class ConsoleApi:
    """The console's operations, independent of HTTP (tested directly and through HTTP)."""

    def __init__(self, clients: ex.Clients, config: PipelineConfig | None = None) -> None:
        self.clients = clients
        # The stack whose registry, endpoint and predict function the ML views show.
        self.config = config or PipelineConfig.load()

    @property
    def sfn(self) -> Any:
        return self.clients.client("stepfunctions")

    def _link(self, arn: str) -> str | None:
        return ex.console_url(self.clients.region, arn) if self.clients.on_aws else None

    def state_machines(self) -> dict:
        machines = [{"name": m["name"], "arn": m["stateMachineArn"], "type": m.get("type"),
                     "creationDate": m.get("creationDate"), "consoleUrl": self._link(m["stateMachineArn"])}
                    for m in ex.list_state_machines(self.sfn)]
        return {"stateMachines": sorted(machines, key=lambda m: m["name"])}

    def executions(self, state_machine_arn: str) -> dict:
        _require(state_machine_arn, ex.STATE_MACHINE_ARN, "stateMachineArn", "a state machine ARN")
        items = ex.list_executions(self.sfn, state_machine_arn)
        return {"executions": [{
            "name": e["name"], "arn": e["executionArn"], "status": e["status"],
            "startDate": e["startDate"], "stopDate": e.get("stopDate"),
            "durationSeconds": round(ex.duration_seconds(e), 1), "redriveCount": e.get("redriveCount", 0),
        } for e in items]}

    def execution(self, arn: str) -> dict:
        _require(arn, ex.EXECUTION_ARN, "arn", "an execution ARN")
        described = self.sfn.describe_execution(executionArn=arn)
        machine = self.sfn.describe_state_machine_for_execution(executionArn=arn)
        events = history(self.sfn, arn)
        runs = ex.state_runs(events)
        definition = json.loads(machine["definition"])
        described.pop("ResponseMetadata", None)
        return {
            "execution": {**described, "durationSeconds": round(ex.duration_seconds(described), 1)},
            "redrivable": described["status"] in ex.REDRIVABLE,
            "stateMachine": {"name": machine["name"], "arn": machine["stateMachineArn"]},
            "states": [run.as_dict() for run in runs.values()],
            "stateTypes": {name: state["Type"] for name, state in definition["States"].items()},
            "svg": graph.to_svg(definition, ex.statuses(runs), title=described["name"]),
            "events": events[-HISTORY_LIMIT:],
            "eventCount": len(events),
            "consoleUrl": self._link(arn),
        }

    def redrive(self, body: Any) -> dict:
        arn = body.get("executionArn") if isinstance(body, dict) else None
        _require(arn, ex.EXECUTION_ARN, "executionArn", "an execution ARN")
        try:
            return {"redriveDate": ex.redrive(self.sfn, arn), "executionArn": arn}
        except ex.WorkflowError as error:
            raise ApiError(error.status, error.code, error.message) from None

    # -- the ML side: registry, training curves, the live endpoint, predictions ---------------
    def _client(self, service: str) -> Any:
        return self.clients.client(service)

    def _versions(self) -> list[model_registry.Version]:
        return model_registry.versions(self._client("sagemaker"), self.config.model_package_group,
                                       self.config.endpoint_name)

    def models(self) -> dict:
        return {"group": self.config.model_package_group, "endpoint": self.config.endpoint_name,
                "versions": [_version_dict(v) for v in self._versions()]}

    def model(self, version: str) -> dict:
        _require(version, VERSION, "version", "a model package version number", "InvalidParameter")
        found = next((v for v in self._versions() if v.version == int(version)), None)
        if found is None:
            raise ApiError(404, "ModelVersionNotFound",
                           f"no version {version} in model package group {self.config.model_package_group}")
        report, problem = self._report(found)
        return {"version": _version_dict(found), "report": report, "reportError": problem}

    def _report(self, version: model_registry.Version) -> tuple[dict | None, str | None]:
        """The evaluation report, or why it cannot be read (the version still shows)."""
        try:
            return model_registry.evaluation_report(self._client("s3"), version), None
        except ClientError as error:
            return None, f"{version.report_uri}: {error.response.get('Error', {}).get('Code')}"
        except ValueError:
            return None, f"{version.report_uri} is not JSON"

    def training_curves(self, job: str) -> dict:
        _require(job, JOB_NAME, "job", "a SageMaker training job name", "InvalidParameter")
        described = sagemaker_describe("describe_training_job", self._client("sagemaker"),
                                       TrainingJobName=job)
        definitions = (described or {}).get("AlgorithmSpecification", {}).get("MetricDefinitions") or []
        lines = self._log_lines(job) if definitions else []
        if lines:
            return {"job": job, "source": "logs", **curves_from_logs(lines, definitions)}
        history_rows = self._report_history(job)  # EC2 runs (no job logs), or logs gone
        if history_rows is not None:
            return {"job": job, "source": "report", **curves_from_history(history_rows)}
        if described is None:
            raise ApiError(404, "TrainingJobNotFound",
                           f"no training job {job} and no registered version trained by it")
        return {"job": job, "source": "logs", **_curves({}, {})}  # not logged anything yet

    def _log_lines(self, job: str) -> list[str]:
        """Every line of the job's streams (``<job>/algo-N-<epoch>``), in order."""
        logs = self._client("logs")
        try:
            pages = logs.get_paginator("describe_log_streams").paginate(
                logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=f"{job}/")
            streams = sorted(s["logStreamName"] for page in pages for s in page.get("logStreams", []))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []  # no job has logged in this region yet
            raise
        lines: list[str] = []
        for stream in streams:
            lines += _stream_lines(logs, stream, MAX_LOG_EVENTS - len(lines))
        return lines

    def _report_history(self, job: str) -> list[dict] | None:
        version = next((v for v in self._versions() if _job_name(v.lineage) == job), None)
        report = self._report(version)[0] if version is not None else None
        return report.get("history") if isinstance(report, dict) else None

    def endpoint(self) -> dict:
        name = self.config.endpoint_name
        sagemaker = self._client("sagemaker")
        described = sagemaker_describe("describe_endpoint", sagemaker, EndpointName=name)
        if described is None:
            return _no_endpoint(name)
        variants = described.get("ProductionVariants") or [{}]
        variant = next((v for v in variants if v.get("VariantName") == VARIANT), variants[0])
        variant_name = variant.get("VariantName", VARIANT)
        config = sagemaker_describe("describe_endpoint_config", sagemaker,
                                    EndpointConfigName=described["EndpointConfigName"]) or {}
        configured = next((v for v in config.get("ProductionVariants", [])
                           if v.get("VariantName") == variant_name), {})
        now = datetime.now(UTC)
        resource_id = scaling_resource_id(name, variant_name)
        activities = self._scaling_activities(resource_id)
        since = max(now - timedelta(minutes=WINDOW_MINUTES), described.get("CreationTime") or now)
        current = variant.get("CurrentInstanceCount")
        initial = configured.get("InitialInstanceCount", current)
        return {
            "endpoint": name, "exists": True, "status": described.get("EndpointStatus"),
            "failureReason": described.get("FailureReason"), "config": described["EndpointConfigName"],
            "created": described.get("CreationTime"), "variant": variant_name,
            "instanceType": configured.get("InstanceType"), "model": configured.get("ModelName"),
            "instances": current, "desiredInstances": variant.get("DesiredInstanceCount"),
            "scalableTarget": self._scalable_target(resource_id),
            "invocationsPerMinute": self._per_minute(name, variant_name, "Invocations", now),
            "errors": {metric: sum(p["value"] for p in self._per_minute(name, variant_name, metric, now))
                       for metric in ("Invocation4XXErrors", "Invocation5XXErrors")},
            "instancesOverTime": instances_over_time(activities, initial, current, since, now),
            "activities": activities,
        }

    def _per_minute(self, endpoint: str, variant: str, metric: str, now: datetime) -> list[dict]:
        """The last hour of an AWS/SageMaker metric, one Sum per minute (0 where none)."""
        start = now.replace(second=0, microsecond=0) - timedelta(minutes=WINDOW_MINUTES - 1)
        end = start + timedelta(minutes=WINDOW_MINUTES)  # the current minute's end: all of it so far
        answer = self._client("cloudwatch").get_metric_statistics(
            Namespace="AWS/SageMaker", MetricName=metric, StartTime=start, EndTime=end, Period=60,
            Statistics=["Sum"], Dimensions=[{"Name": "EndpointName", "Value": endpoint},
                                            {"Name": "VariantName", "Value": variant}])
        return per_minute(answer.get("Datapoints", []), start, WINDOW_MINUTES)

    def _scaling_activities(self, resource: str) -> list[dict]:
        autoscaling = self._client("application-autoscaling")
        pages = autoscaling.get_paginator("describe_scaling_activities").paginate(
            ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=AUTOSCALING_DIMENSION,
            PaginationConfig={"MaxItems": 200})
        return [_activity(a) for page in pages for a in page.get("ScalingActivities", [])]

    def _scalable_target(self, resource: str) -> dict | None:
        targets = self._client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[resource],
            ScalableDimension=AUTOSCALING_DIMENSION).get("ScalableTargets", [])
        return ({"min": targets[0].get("MinCapacity"), "max": targets[0].get("MaxCapacity")}
                if targets else None)

    def predict(self, body: Any) -> dict:
        image, top_k = _predict_request(body)
        # Only the stack's own function: its name comes from the config, never from the request.
        name = self.config.function_name("predict")
        response = self._client("lambda").invoke(
            FunctionName=name, Qualifier=LIVE_ALIAS, Payload=json.dumps({"image": image}).encode())
        payload = _json_or_none(response["Payload"].read())
        if response.get("FunctionError"):  # the function itself crashed (not an answer)
            message = payload.get("errorMessage") if isinstance(payload, dict) else None
            raise ApiError(502, "PredictFunctionError", str(message or response["FunctionError"]))
        status, answer = _function_answer(payload)
        if status >= 400:
            raise ApiError(status if status < 500 else 502, str(answer.get("error", "PredictFailed")),
                           str(answer.get("message", f"the predict function answered {status}")))
        predictions = answer.get("predictions")
        if not isinstance(predictions, list):
            raise ApiError(502, "PredictFunctionError", "the predict function answered no predictions")
        return {"function": name, "qualifier": LIVE_ALIAS, "executedVersion": response.get("ExecutedVersion"),
                "topK": top_k, "predictions": predictions[:top_k], "model": answer.get("model")}


def _require(value: Any, pattern: Any, name: str, what: str, code: str = "InvalidArn") -> None:
    if not isinstance(value, str) or not value:
        raise ApiError(400, "MissingParameter", f"{name} is required")
    if not pattern.match(value):
        raise ApiError(400, code, f"{name} must be {what}, got {value[:200]!r}")


def _job_name(lineage: dict[str, str]) -> str:
    """The training job's name from the lineage's ARN (an EC2 run records its instance id)."""
    return lineage.get("training-job-arn", "").rsplit("/", 1)[-1]


def _version_dict(version: model_registry.Version) -> dict:
    return {**version.to_dict(), "decision": version.lineage.get("gate-decision", ""),
            "gate_reason": version.lineage.get("gate-reason", ""), "training_job": _job_name(version.lineage)}


def _stream_lines(logs: Any, stream: str, budget: int) -> list[str]:
    lines: list[str] = []
    token = None
    while len(lines) < budget:
        page = logs.get_log_events(logGroupName=TRAINING_LOG_GROUP, logStreamName=stream, startFromHead=True,
                                   **({"nextToken": token} if token else {}))
        lines += [event["message"] for event in page.get("events", [])]
        if not page.get("events") or page.get("nextForwardToken") in (None, token):
            break  # the forward token repeats at the end of the stream
        token = page["nextForwardToken"]
    return lines[:budget]


def _metric_patterns(definitions: list[dict]) -> list[tuple[str, re.Pattern[str]]]:
    patterns = []
    for definition in definitions:
        try:
            patterns.append((definition["Name"], re.compile(definition["Regex"])))
        except (KeyError, TypeError, re.error):
            continue  # SageMaker validated them; a bad one must not hide the others
    return patterns


def _metric_values(line: str, patterns: list[tuple[str, re.Pattern[str]]]) -> dict[str, float]:
    """What SageMaker records from one line: each definition's first group, as a float."""
    values = {}
    for name, pattern in patterns:
        found = pattern.search(line)
        try:
            values[name] = float(found.group(1)) if found else None
        except (IndexError, ValueError):
            values[name] = None
    return {name: value for name, value in values.items() if value is not None}


def curves_from_logs(lines: list[str], definitions: list[dict]) -> dict:
    """Per-epoch series from a job's log lines: a line with ``epoch=N`` gives that epoch's points;
    metrics on other lines (best_*, test_*) are the summary, last value wins."""
    patterns = _metric_patterns(definitions)
    rows: dict[int, dict[str, float]] = {}
    summary: dict[str, float] = {}
    for line in lines:
        values = _metric_values(line, patterns)
        epoch = EPOCH.search(line) if values else None
        if epoch:
            rows.setdefault(int(epoch.group(1)), {}).update(values)
        else:
            summary.update(values)
    return _curves(rows, summary)


def curves_from_history(history_rows: list[dict]) -> dict:
    rows = {}
    for row in history_rows:
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows[row["epoch"]] = {k: float(v) for k, v in row.items()
                                  if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)}
    return _curves(rows, {})


def _curves(rows: dict[int, dict[str, float]], summary: dict[str, float]) -> dict:
    epochs = sorted(rows)
    found = {name for row in rows.values() for name in row}
    names = [n for n in CURVE_METRICS if n in found] + sorted(found - set(CURVE_METRICS))
    return {"epochs": epochs, "series": {n: [rows[e].get(n) for e in epochs] for n in names},
            "summary": summary}


def per_minute(datapoints: list[dict], start: datetime, minutes: int) -> list[dict]:
    buckets = [0.0] * minutes
    for point in datapoints:
        index = int((point["Timestamp"] - start).total_seconds() // 60)
        if 0 <= index < minutes:
            buckets[index] += float(point.get("Sum", 0.0))
    return [{"time": start + timedelta(minutes=i), "value": value} for i, value in enumerate(buckets)]


def _activity(item: dict) -> dict:
    desired = DESIRED.search(item.get("Description", "") + " " + item.get("StatusMessage", ""))
    return {"time": item.get("StartTime"), "end": item.get("EndTime"), "status": item.get("StatusCode"),
            "description": item.get("Description", ""), "cause": item.get("Cause", ""),
            "message": item.get("StatusMessage", ""), "desired": int(desired.group(1)) if desired else None}


def instances_over_time(activities: list[dict], initial: int | None, current: int | None,
                        since: datetime, now: datetime) -> list[dict]:
    """A step series of the instance count from ``since`` to now: each successful scaling activity
    sets it; before the first one it is the endpoint config's initial count (the activities say
    only what they set, not what was)."""
    done = sorted((a for a in activities if a["status"] == "Successful" and a["desired"] is not None),
                  key=lambda a: a["end"] or a["time"])
    count = initial
    points: list[dict] = []
    for item in done:
        at = item["end"] or item["time"]
        if at > since and not points:
            points.append({"time": since, "count": count})
        if at > since:
            points.append({"time": at, "count": item["desired"]})
        count = item["desired"]
    if not points:
        points.append({"time": since, "count": count if count is not None else current})
    points.append({"time": now, "count": current if current is not None else count})
    return points


def _no_endpoint(name: str) -> dict:
    return {"endpoint": name, "exists": False, "status": None, "failureReason": None, "config": None,
            "created": None, "variant": None, "instanceType": None, "model": None, "instances": 0,
            "desiredInstances": 0, "scalableTarget": None, "invocationsPerMinute": [],
            "errors": {}, "instancesOverTime": [], "activities": []}


def _predict_request(body: Any) -> tuple[str, int]:
    if not isinstance(body, dict) or body.get("image") in (None, ""):
        raise ApiError(400, "MissingParameter", 'expected {"image": "<base64>", "top_k": n}')
    image, top_k = body["image"], body.get("top_k", TOP_K_DEFAULT)
    if not isinstance(image, str):
        raise ApiError(400, "InvalidParameter", "image must be a base64 string")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= TOP_K_MAX:
        raise ApiError(400, "InvalidParameter", f"top_k must be an integer from 1 to {TOP_K_MAX}")
    return image, top_k


def _json_or_none(data: bytes | str | None) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def _function_answer(payload: Any) -> tuple[int, dict]:
    """The predict function's ``{"statusCode", "body": JSON}`` as (status, parsed body)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("statusCode"), int):
        raise ApiError(502, "PredictFunctionError", "the predict function answered no statusCode")
    body = _json_or_none(payload.get("body"))
    return payload["statusCode"], body if isinstance(body, dict) else {}


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


class _Handler(BaseHTTPRequestHandler):
    api: ConsoleApi  # set on the subclass the server builds
    server_version = "stepml-console"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: the console is interactive

    token: str  # set on the subclass the server builds
    hosts: frozenset[str] = frozenset()

    def _refusal(self, page: bool = False) -> ApiError | None:
        """Why this request is not from the console's own page, or None."""
        host = self.headers.get("Host", "")
        if host not in self.hosts:
            return ApiError(403, "ForbiddenHost", f"Host {host!r} is not this console's")
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.hosts:
            return ApiError(403, "ForbiddenOrigin", f"requests from {origin} are refused")
        query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        given = query.get("token", "") if page else self.headers.get("X-Stepml-Token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return ApiError(403, "InvalidToken", "open the URL `stepml console` printed (it "
                            "carries this start's token)")
        return None

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        refused = self._refusal(page=url.path in ("/", "/index.html"))
        if refused is not None:
            return self._answer(lambda: _raise(refused))
        if url.path in ("/", "/index.html"):
            return self._static("index.html", "text/html; charset=utf-8")
        routes = {"/api/state-machines": lambda: self.api.state_machines(),
                  "/api/executions": lambda: self.api.executions(query.get("stateMachineArn", "")),
                  "/api/execution": lambda: self.api.execution(query.get("arn", "")),
                  "/api/models": lambda: self.api.models(),
                  "/api/training-curves": lambda: self.api.training_curves(query.get("job", "")),
                  "/api/endpoint": lambda: self.api.endpoint()}
        if url.path.startswith("/api/models/"):
            return self._answer(lambda: self.api.model(url.path.removeprefix("/api/models/")))
        self._answer(routes.get(url.path))

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        refused = self._refusal()
        if refused is None and self.headers.get_content_type() != "application/json":
            refused = ApiError(415, "UnsupportedMediaType", "POST bodies must be application/json")
        if refused is not None:
            return self._answer(lambda: _raise(refused))
        routes = {"/api/redrive": lambda: self.api.redrive(self._body()),
                  "/api/predict": lambda: self.api.predict(self._body(MAX_PREDICT_BODY))}
        self._answer(routes.get(urlparse(self.path).path))

    def _body(self, limit: int = MAX_BODY) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError(400, "InvalidContentLength", "Content-Length must be a number") from None
        if length > limit:
            self._discard(length)
            raise ApiError(413, "PayloadTooLarge", f"request body over {limit} bytes")
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise ApiError(400, "InvalidJSON", "request body must be a JSON object") from None

    def _discard(self, length: int) -> None:
        """Read an oversized body away (up to a bound) so that the client, still sending, gets the
        413 rather than a connection reset; the connection closes after the answer either way."""
        self.close_connection = True
        left = length if length <= DRAIN_LIMIT else 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def _answer(self, operation: Any) -> None:
        try:
            if operation is None:
                raise ApiError(404, "NotFound", f"no such path: {urlparse(self.path).path}")
            self._send(200, operation())
        except ApiError as error:
            self._send(error.status, {"error": error.code, "message": error.message})
        except ClientError as error:
            api_error = _from_client_error(error)
            self._send(api_error.status, {"error": api_error.code, "message": api_error.message})
        except BotoCoreError as error:  # endpoint unreachable, no credentials...
            self._send(502, {"error": type(error).__name__, "message": str(error)})
        except Exception:  # a bug here, not bad input: log it, answer without the trace
            traceback.print_exc()
            self._send(500, {"error": "InternalError", "message": "unexpected console error (logged)"})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body, default=_json_default).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _static(self, name: str, content_type: str) -> None:
        data = (STATIC / name).read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _raise(error: ApiError) -> Any:
    raise error


class ConsoleServer:
    """The console on 127.0.0.1; ``port=0`` picks a free port. ``url_with_token`` is what to open."""

    def __init__(self, clients: ex.Clients, port: int = 0, host: str = "127.0.0.1",
                 config: PipelineConfig | None = None) -> None:
        self.token = secrets.token_urlsafe(24)  # per start: a page of another origin cannot know it
        handler = type("ConsoleHandler", (_Handler,), {"api": ConsoleApi(clients, config),
                                                        "token": self.token})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        bound = self.httpd.server_address[1]
        handler.hosts = frozenset({f"{host}:{bound}", f"localhost:{bound}"})
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url_with_token(self) -> str:
        return f"{self.url}/?token={self.token}"

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="stepml-console")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
