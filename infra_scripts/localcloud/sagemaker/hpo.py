"""SageMaker hyperparameter tuning on the local cloud: real training jobs, the best one reported.

``CreateHyperParameterTuningJob`` (moto's backend method, wrapped; moto answers a canned
"Completed") starts a tuner thread that creates up to ``MaxNumberOfTrainingJobs`` training jobs
through the local cloud's own ``CreateTrainingJob`` (so they run as local processes, see
``sagemaker_training``), at most ``MaxParallelTrainingJobs`` at a time, named
``<tuning-job>-NNN-<8 hex>`` and carrying ``TuningJobArn``.

Search: ``Random`` samples each range (``Linear``/``Auto`` uniform, ``Logarithmic``
log-uniform, ``ReverseLogarithmic`` log-uniform in 1-x; integers rounded; categorical uniform),
seeded by the tuning job name (option ``seed``). ``Bayesian`` and ``Hyperband`` run as Random
locally. ``Grid`` walks every combination of the categorical ranges.
Objective: the training job's ``FinalMetricDataList`` entry named by the objective metric (one
of the definition's ``MetricDefinitions``); ``BestTrainingJob`` is the best Completed job with
an objective value. ``TargetObjectiveMetricValue`` (completion criteria) stops launching early.

``DescribeHyperParameterTuningJob``/``ListHyperParameterTuningJobs`` stay moto's and show the
live status and counters. ``StopHyperParameterTuningJob`` and
``ListTrainingJobsForHyperParameterTuningJob`` (absent in moto) are routes.
Status: InProgress → Completed (some job succeeded), Failed (none did; FailureReason), or
Stopping → Stopped.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import random
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.core.moto_fields import set_fields, utcnow
from infra_scripts.localcloud.core.requests import request_region
from infra_scripts.localcloud.core.server import (
    LocalCloud,
    aws_error,
    json_response,
    match_target,
)
from infra_scripts.localcloud.sagemaker.training import LocalTraining

OPTIONS_KEY = "sagemaker_hpo"
TERMINAL_TRAINING = frozenset({"Completed", "Failed", "Stopped"})
TERMINAL_TUNING = frozenset({"Completed", "Failed", "Stopped"})
POLL_S = 0.2
TUNING_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}")


@dataclass
class Trial:
    name: str
    arn: str
    tuned: dict[str, str]
    status: str = "InProgress"
    described: dict[str, Any] = field(default_factory=dict)
    objective: float | None = None


@dataclass
class TuningRun:
    job: Any  # moto's HyperParameterTuningJob; the tuner writes its describe() fields
    region: str
    stop_requested: threading.Event = field(default_factory=threading.Event)
    trials: list[Trial] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return str(self.job.hyper_parameter_tuning_job_name)


# -- the search space -----------------------------------------------------------------------------
def sample(ranges: dict[str, Any], rng: random.Random) -> dict[str, str]:
    """One random point of SageMaker ``ParameterRanges`` (values as SageMaker passes them)."""
    point: dict[str, str] = {}
    for spec in ranges.get("IntegerParameterRanges") or []:
        low, high = int(spec["MinValue"]), int(spec["MaxValue"])
        value = _scaled(float(low), float(high), spec.get("ScalingType"), rng)
        point[spec["Name"]] = str(min(high, max(low, round(value))))
    for spec in ranges.get("ContinuousParameterRanges") or []:
        low, high = float(spec["MinValue"]), float(spec["MaxValue"])
        point[spec["Name"]] = str(_scaled(low, high, spec.get("ScalingType"), rng))
    for spec in ranges.get("CategoricalParameterRanges") or []:
        point[spec["Name"]] = rng.choice(list(spec["Values"]))
    return point


def _scaled(low: float, high: float, scaling: str | None, rng: random.Random) -> float:
    if scaling == "Logarithmic":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if scaling == "ReverseLogarithmic":
        return 1.0 - math.exp(rng.uniform(math.log(1.0 - high), math.log(1.0 - low)))
    return rng.uniform(low, high)


def candidates(ranges: dict[str, Any], strategy: str, rng: random.Random) -> Iterator[dict]:
    if strategy == "Grid":
        specs = ranges.get("CategoricalParameterRanges") or []
        names = [s["Name"] for s in specs]
        for values in itertools.product(*(s["Values"] for s in specs)):
            yield dict(zip(names, values, strict=True))
        return
    seen: set[str] = set()
    for _ in range(10_000):  # small discrete spaces run out of new points
        point = sample(ranges, rng)
        key = json.dumps(point, sort_keys=True)
        if key not in seen:
            seen.add(key)
            yield point


def validate(name: str, config: dict[str, Any], definition: dict[str, Any] | None) -> None:
    from moto.sagemaker.exceptions import ValidationError

    if not TUNING_JOB_NAME.fullmatch(name or ""):
        raise ValidationError(message=f"Invalid tuning job name {name!r}: 1-32 letters, digits "
                              "and hyphens")
    if not definition:
        raise ValidationError(message="TrainingJobDefinition is required")
    objective = _objective(config, definition)
    names = {d.get("Name") for d in (definition.get("AlgorithmSpecification") or {}).get(
        "MetricDefinitions") or []}
    if objective.get("MetricName") not in names:
        raise ValidationError(message=f"The objective metric {objective.get('MetricName')!r} "
                              f"is not one of the metric definitions {sorted(names)}")
    ranges = _ranges(config, definition)
    if config.get("Strategy") == "Grid" and (ranges.get("IntegerParameterRanges")
                                             or ranges.get("ContinuousParameterRanges")):
        raise ValidationError(message="The Grid strategy supports categorical ranges only")
    try:
        sample(ranges, random.Random(0))
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise ValidationError(message=f"Invalid ParameterRanges: {error!r}") from None


def _definition(job: Any) -> dict[str, Any] | None:
    return job.training_job_definition or (job.training_job_definitions or [None])[0]


def _objective(config: dict[str, Any], definition: dict[str, Any]) -> dict[str, Any]:
    return definition.get("TuningObjective") or config.get("HyperParameterTuningJobObjective") or {}


def _ranges(config: dict[str, Any], definition: dict[str, Any]) -> dict[str, Any]:
    return definition.get("HyperParameterRanges") or config.get("ParameterRanges") or {}


# -- the tuner --------------------------------------------------------------------------------------
class LocalTuning:
    """Runs tuning jobs; ``cloud.extensions['sagemaker.hpo']``."""

    def __init__(self, cloud: LocalCloud, training: LocalTraining) -> None:
        self.cloud = cloud
        self.training = training
        self.runs: dict[str, TuningRun] = {}  # by tuning job name+region
        self._closing = threading.Event()

    def run_for(self, name: str, region: str | None = None) -> TuningRun | None:
        return self.runs.get(f"{region or self.cloud.region}/{name}")

    def wait(self, name: str, timeout_s: float = 120.0, region: str | None = None) -> str:
        run = self.run_for(name, region)
        if run is None:
            raise KeyError(name)
        if run.thread is not None:
            run.thread.join(timeout_s)
        return str(run.job.hyper_parameter_tuning_job_status)

    def start(self, job: Any, region: str) -> TuningRun:
        run = TuningRun(job=job, region=region)
        _prepare_job(job)
        self.runs[f"{region}/{run.name}"] = run
        run.thread = threading.Thread(target=self._execute, args=(run,),
                                      name=f"tuning-{run.name}", daemon=True)
        run.thread.start()
        return run

    def request_stop(self, run: TuningRun) -> None:
        with run.lock:
            if run.job.hyper_parameter_tuning_job_status in TERMINAL_TUNING:
                return
            set_fields(run.job, hyper_parameter_tuning_job_status="Stopping")
        run.stop_requested.set()

    def shutdown(self) -> None:
        self._closing.set()
        for run in list(self.runs.values()):
            run.stop_requested.set()
        for run in list(self.runs.values()):
            if run.thread is not None:
                run.thread.join(timeout=10)

    def _execute(self, run: TuningRun) -> None:
        try:
            self._search(run)
            if not self._closing.is_set():
                self._finish(run)
        except Exception as error:  # never leave a tuning job InProgress forever
            if not self._closing.is_set():
                self._finish(run, failure=f"InternalServerError: {error!r}")

    def _search(self, run: TuningRun) -> None:
        job = run.job
        config = job.hyper_parameter_tuning_job_config
        definition = _definition(job) or {}
        limits = config.get("ResourceLimits") or {}
        max_jobs = int(limits.get("MaxNumberOfTrainingJobs") or 1)
        parallel = max(1, int(limits.get("MaxParallelTrainingJobs") or 1))
        seed = self.cloud.settings.option(OPTIONS_KEY, "seed", None)
        rng = random.Random(zlib.crc32(run.name.encode()) if seed is None else seed)
        points = candidates(_ranges(config, definition), config.get("Strategy", "Bayesian"), rng)
        sm = self._client("sagemaker")
        exhausted = False
        while not run.stop_requested.is_set():
            self._refresh(run, sm)
            busy = sum(t.status not in TERMINAL_TRAINING for t in run.trials)
            done_launching = exhausted or len(run.trials) >= max_jobs or self._target_met(run)
            if not done_launching and busy < parallel:
                point = next(points, None)
                if point is None:
                    exhausted = True
                else:
                    self._launch(run, sm, definition, point, rng)
                continue
            if done_launching and busy == 0:
                return
            run.stop_requested.wait(POLL_S)
        self._stop_trials(run, sm)

    def _launch(self, run: TuningRun, sm: Any, definition: dict[str, Any],
                point: dict[str, str], rng: random.Random) -> None:
        name = f"{run.name}-{len(run.trials) + 1:03d}-{rng.getrandbits(32):08x}"
        request = {
            "TrainingJobName": name,
            "HyperParameters": {**(definition.get("StaticHyperParameters") or {}), **point},
            **{key: definition[key] for key in (
                "AlgorithmSpecification", "RoleArn", "InputDataConfig", "OutputDataConfig",
                "ResourceConfig", "StoppingCondition", "VpcConfig", "EnableNetworkIsolation",
                "CheckpointConfig", "Environment") if definition.get(key) is not None},
        }
        response = sm.create_training_job(**request)
        trial = Trial(name=name, arn=response["TrainingJobArn"], tuned=dict(point))
        backend_job = self.cloud.backend("sagemaker", run.region).training_jobs[name]
        set_fields(backend_job, tuning_job_arn=run.job.arn)
        with run.lock:
            run.trials.append(trial)
            self._publish(run)

    def _refresh(self, run: TuningRun, sm: Any) -> None:
        objective = _objective(run.job.hyper_parameter_tuning_job_config, _definition(run.job) or {})
        changed = False
        for trial in run.trials:
            if trial.status in TERMINAL_TRAINING:
                continue
            trial.described = sm.describe_training_job(TrainingJobName=trial.name)
            trial.status = trial.described["TrainingJobStatus"]
            if trial.status == "Completed":
                metrics = {m["MetricName"]: m["Value"]
                           for m in trial.described.get("FinalMetricDataList") or []}
                trial.objective = metrics.get(objective.get("MetricName"))
            changed = True
        if changed:
            with run.lock:
                self._publish(run)

    def _stop_trials(self, run: TuningRun, sm: Any) -> None:
        if self._closing.is_set():
            return  # the training extension kills every job on cloud.stop
        for trial in run.trials:
            if trial.status not in TERMINAL_TRAINING:
                try:
                    sm.stop_training_job(TrainingJobName=trial.name)
                except Exception:  # finished meanwhile
                    pass
        for trial in run.trials:
            self.training.wait(trial.name, timeout_s=60, region=run.region)
        self._refresh(run, sm)

    def _target_met(self, run: TuningRun) -> bool:
        config = run.job.hyper_parameter_tuning_job_config
        target = (config.get("TuningJobCompletionCriteria") or {}).get(
            "TargetObjectiveMetricValue")
        best = self._best(run)
        if target is None or best is None:
            return False
        maximize = _objective(config, _definition(run.job) or {}).get("Type") != "Minimize"
        value = float(best.objective or 0.0)
        return value >= float(target) if maximize else value <= float(target)

    def _best(self, run: TuningRun) -> Trial | None:
        scored = [t for t in run.trials if t.status == "Completed" and t.objective is not None]
        if not scored:
            return None
        config = run.job.hyper_parameter_tuning_job_config
        minimize = _objective(config, _definition(run.job) or {}).get("Type") == "Minimize"
        return (min if minimize else max)(scored, key=lambda t: float(t.objective or 0.0))

    def _publish(self, run: TuningRun) -> None:
        """Counters and BestTrainingJob onto moto's job (what DescribeHyperParameterTuningJob
        shows)."""
        trials = run.trials
        statuses = [t.status for t in trials]
        objective_done = [t for t in trials if t.status in TERMINAL_TRAINING]
        best = self._best(run)
        set_fields(run.job,
             training_job_status_counters={
                 "Completed": statuses.count("Completed"),
                 "InProgress": sum(s in ("InProgress", "Stopping") for s in statuses),
                 "RetryableError": 0,
                 "NonRetryableError": statuses.count("Failed"),
                 "Stopped": statuses.count("Stopped")},
             objective_status_counters={
                 "Succeeded": sum(t.objective is not None for t in objective_done),
                 "Pending": len(trials) - len(objective_done),
                 "Failed": sum(t.objective is None for t in objective_done)},
             best_training_job=self._summary(run, best) if best else None)

    def _summary(self, run: TuningRun, trial: Trial) -> dict[str, Any]:
        """A HyperParameterTrainingJobSummary."""
        described = trial.described
        config = run.job.hyper_parameter_tuning_job_config
        definition = _definition(run.job) or {}
        objective = _objective(config, definition)
        summary: dict[str, Any] = {
            "TrainingJobName": trial.name,
            "TrainingJobArn": trial.arn,
            "TuningJobName": run.name,
            "CreationTime": described.get("CreationTime", utcnow()),
            "TrainingJobStatus": trial.status,
            "TunedHyperParameters": trial.tuned,
            "ObjectiveStatus": _objective_status(trial),
        }
        for key in ("TrainingStartTime", "TrainingEndTime", "FailureReason"):
            if described.get(key) is not None:
                summary[key] = described[key]
        if definition.get("DefinitionName"):
            summary["TrainingJobDefinitionName"] = definition["DefinitionName"]
        if trial.objective is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": objective.get("Type", "Maximize"),
                "MetricName": objective.get("MetricName"), "Value": trial.objective}
        return summary

    def _finish(self, run: TuningRun, failure: str | None = None) -> None:
        with run.lock:
            job = run.job
            self._publish(run)
            now = utcnow()
            status = "Completed"
            if job.hyper_parameter_tuning_job_status == "Stopping":
                status = "Stopped"
            elif failure or self._best(run) is None:
                status = "Failed"
                reasons = [t.described.get("FailureReason") for t in run.trials]
                first = next((r for r in reasons if r), "no objective metric was reported")
                set_fields(job, failure_reason=failure or (
                    f"All training jobs failed or reported no objective metric; first: {first}"))
            seconds = int((now - job.creation_time).total_seconds())
            set_fields(job, hyper_parameter_tuning_end_time=now,
                 consumed_resources={"RuntimeInSeconds": max(1, seconds)},
                 hyper_parameter_tuning_job_status=status)

    def _client(self, service: str) -> Any:

        return self.cloud.boto3_client(service)

    def summaries(self, run: TuningRun) -> list[dict[str, Any]]:
        with run.lock:
            return [self._summary(run, trial) for trial in run.trials]


def _objective_status(trial: Trial) -> str:
    if trial.status not in TERMINAL_TRAINING:
        return "Pending"
    return "Succeeded" if trial.objective is not None else "Failed"


def _prepare_job(job: Any) -> None:
    """Replace moto's canned 'Completed' tuning job with one that is starting."""
    job.hyper_parameter_tuning_job_status = "InProgress"
    job.hyper_parameter_tuning_end_time = None
    job.training_job_status_counters = {"Completed": 0, "InProgress": 0, "RetryableError": 0,
                                        "NonRetryableError": 0, "Stopped": 0}
    job.objective_status_counters = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    job.best_training_job = None
    job.OverallBestTrainingJob = None  # moto's attribute name; only for warm starts on AWS
    job.tuning_job_completion_details = None
    job.consumed_resources = None
    job.failure_reason = None


# -- routes and wiring ----------------------------------------------------------------------------
def _find(tuning: LocalTuning, request: Request) -> tuple[TuningRun | None, str]:
    name = json.loads(request.get_data() or b"{}").get("HyperParameterTuningJobName", "")
    return tuning.run_for(name, request_region(request, tuning.cloud.region)), name


def _handle_stop(tuning: LocalTuning, request: Request) -> Response:
    run, name = _find(tuning, request)
    if run is None:
        return aws_error(400, "ResourceNotFound", f"Amazon SageMaker can't find a tuning job "
                         f"named {name}.")
    status = run.job.hyper_parameter_tuning_job_status
    if status in TERMINAL_TUNING:
        return aws_error(400, "ValidationException", "The request was rejected because the "
                         f"tuning job is in status {status}.")
    tuning.request_stop(run)
    return json_response(200, {})


def _handle_list_trials(tuning: LocalTuning, request: Request) -> Response:
    body = json.loads(request.get_data() or b"{}")
    run, name = _find(tuning, request)
    if run is None:
        return aws_error(400, "ResourceNotFound", f"Amazon SageMaker can't find a tuning job "
                         f"named {name}.")
    summaries = tuning.summaries(run)
    if body.get("StatusEquals"):
        summaries = [s for s in summaries if s["TrainingJobStatus"] == body["StatusEquals"]]
    summaries.sort(key=_sort_key(body.get("SortBy", "CreationTime")),
                   reverse=body.get("SortOrder", "Descending") == "Descending")
    limit = int(body.get("MaxResults") or 100)
    start = int(body.get("NextToken") or 0)
    page = summaries[start:start + limit]
    result: dict[str, Any] = {"TrainingJobSummaries": _epoch_times(page)}
    if start + limit < len(summaries):
        result["NextToken"] = str(start + limit)
    return json_response(200, result)


def _sort_key(sort_by: str) -> Any:
    if sort_by == "Name":
        return lambda s: s["TrainingJobName"]
    if sort_by == "Status":
        return lambda s: s["TrainingJobStatus"]
    if sort_by == "FinalObjectiveMetricValue":
        return lambda s: s.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get(
            "Value", float("-inf"))
    return lambda s: _utc_seconds(s["CreationTime"])


def _utc_seconds(value: Any) -> float:
    """A trial's time as UTC epoch seconds: moto's records hold naive UTC datetimes and the
    run's own fields aware ones, which cannot be compared with each other."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def _epoch_times(value: Any) -> Any:
    """JSON protocol timestamps are epoch seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _epoch_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_epoch_times(v) for v in value]
    return value


def _wrap_create(tuning: LocalTuning, original: Any) -> Any:
    signature = inspect.signature(original)

    def create_hyper_parameter_tuning_job(backend: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(backend, *args, **kwargs).arguments
        name = arguments["hyper_parameter_tuning_job_name"]
        definition = arguments.get("training_job_definition") or (
            arguments.get("training_job_definitions") or [None])[0]
        validate(name, arguments["hyper_parameter_tuning_job_config"] or {}, definition)
        arn = original(backend, *args, **kwargs)
        tuning.start(backend.hyper_parameter_tuning_jobs[name], backend.region_name)
        return arn

    return create_hyper_parameter_tuning_job


def install(cloud: LocalCloud) -> LocalTuning:
    from moto.sagemaker.models import SageMakerModelBackend

    training = cloud.extensions.get("sagemaker.training")
    if training is None:
        raise RuntimeError("sagemaker_hpo needs the sagemaker_training extension listed before it")
    tuning = LocalTuning(cloud, training)
    cloud.patch(SageMakerModelBackend, "create_hyper_parameter_tuning_job",
                _wrap_create(tuning, SageMakerModelBackend.create_hyper_parameter_tuning_job))
    cloud.add_route(match_target("SageMaker.StopHyperParameterTuningJob"),
                    lambda request: _handle_stop(tuning, request))
    cloud.add_route(match_target("SageMaker.ListTrainingJobsForHyperParameterTuningJob"),
                    lambda request: _handle_list_trials(tuning, request))
    cloud.on_stop(tuning.shutdown)
    return tuning
