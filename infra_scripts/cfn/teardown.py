"""`stepml destroy`: the stack, and what its executions created outside it.

Executions create SageMaker models, endpoint configs, the endpoint, training and tuning jobs,
EC2 training instances, an autoscaling target and provisioned concurrency on the predict alias;
none of those are stack resources (nor, on the local cloud, the state machine and the handlers'
layer versions: see local_gaps). They are found from the stack's own facts: its executions
(each run's resources are named after the run id ValidateInput derives from the execution name
and tagged ``stepml:run-id``), its endpoint name, its EC2 instance profile and its predict
function. The plan lists everything first; ``execute`` deletes in dependency order (stop what
runs, then hosting, then the stack) and reports each failure instead of stopping at it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from handlers.naming import resource_name, run_id, run_instance_filter, run_of, scales_endpoint
from handlers.rollout import ALARMS as ROLLBACK_ALARMS
from handlers.rollout import alarm_name
from infra_scripts.cfn import changeset
from infra_scripts.cfn.template import DEPENDENCIES_LAYER, DEPENDENCIES_LAYER_SUFFIX
from infra_scripts.policies import PREDICT_MODULE

ClientFactory = Callable[[str], Any]
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
RUNNING_JOB_STATES = ("InProgress", "Stopping")
GONE = ("ValidationException", "ResourceNotFoundException", "ResourceNotFound",
        "ObjectNotFoundException", "NoSuchBucket", "ProvisionedConcurrencyConfigNotFoundException",
        "StateMachineDoesNotExist", "ExecutionDoesNotExist")


@dataclass
class Item:
    kind: str
    name: str
    action: str  # what happens to it: delete, stop, terminate, deregister
    run: Callable[[], None] = field(repr=False)

    def line(self) -> str:
        return f"{self.action:10} {self.kind:24} {self.name}"


@dataclass
class Plan:
    stack_name: str
    stack: dict | None
    items: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.items


def gone(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    return code in GONE or "not found" in message.lower() or "does not exist" in message.lower()


def _exists(call: Callable[[], Any]) -> Any | None:
    try:
        return call()
    except ClientError as error:
        if gone(error):
            return None
        raise


def _pages(client: Any, operation: str, key: str, **arguments: Any) -> Iterator[dict]:
    for page in client.get_paginator(operation).paginate(**arguments):
        yield from page.get(key, [])


def empty_and_delete_bucket(s3: Any, bucket: str) -> None:
    """Every object version and delete marker, then the bucket; absent is fine."""
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if doomed:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
    except ClientError as error:
        if not gone(error):
            raise


class Planner:
    """Finds what to delete. ``facts``: prefix, bucket, endpoint, region, account, partition."""

    def __init__(self, client: ClientFactory, stack_name: str, facts: dict[str, str],
                 waiting: changeset.Waiting) -> None:
        self.client, self.stack_name, self.facts, self.waiting = client, stack_name, facts, waiting

    # -- what the stack's executions touched ------------------------------------------------
    def state_machine_arn(self, stack: dict | None) -> str:
        outputs = changeset.outputs_of(stack or {})
        f = self.facts
        return outputs.get("StateMachineArn") or (
            f"arn:{f['partition']}:states:{f['region']}:{f['account']}:stateMachine:"
            f"{f['prefix']}-pipeline")

    def executions(self, state_machine_arn: str) -> list[dict]:
        sfn = self.client("stepfunctions")
        found = _exists(lambda: list(_pages(sfn, "list_executions", "executions",
                                            stateMachineArn=state_machine_arn)))
        return found or []

    def endpoint_names(self, executions: list[dict]) -> set[str]:
        names = {self.facts["endpoint"]}
        sfn = self.client("stepfunctions")
        for execution in executions:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            try:
                given = json.loads(described.get("input") or "{}").get("endpoint", {})
            except (ValueError, AttributeError):
                continue
            if isinstance(given, dict) and isinstance(given.get("name"), str):
                names.add(given["name"])
        return names

    # -- plan -----------------------------------------------------------------------------------
    def plan(self, delete_data: bool = False) -> Plan:
        cfn = self.client("cloudformation")
        stack = changeset.describe_stack(cfn, self.stack_name)
        plan = Plan(self.stack_name, stack)
        executions = self.executions(self.state_machine_arn(stack))
        run_ids = {run_id_of(e["name"]) for e in executions}
        endpoints = self.endpoint_names(executions)
        plan.items += self.running_executions(executions)
        plan.items += self.training(run_ids)
        plan.items += self.instances(run_ids)
        plan.items += self.autoscaling_targets(endpoints)
        hosting = self.hosting(endpoints, run_ids)
        plan.items += hosting
        plan.items += self.provisioned_concurrency()
        plan.items += self.unmanaged_state_machine(stack)
        plan.items += self.unmanaged_layer_versions(stack)
        if stack is not None:
            plan.items.append(Item("stack", f"{self.stack_name} ({stack['StackStatus']})", "delete",
                                   lambda: changeset.delete_stack(cfn, self.stack_name,
                                                                  self.waiting)))
        plan.items += self.rollback_alarms(endpoints)
        plan.items += self.registry(delete_data, plan)
        plan.items += self.bucket(delete_data, plan)
        return plan

    def rollback_alarms(self, endpoints: set[str]) -> list[Item]:
        cloudwatch = self.client("cloudwatch")
        names = [alarm_name(e, kind) for e in sorted(endpoints) for kind in ROLLBACK_ALARMS]
        found = _exists(lambda: cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]) or []
        return [Item("alarm", a["AlarmName"], "delete", lambda n=a["AlarmName"]: _ignore_gone(
            lambda: cloudwatch.delete_alarms(AlarmNames=[n]))) for a in found]

    def registry(self, delete_data: bool, plan: Plan) -> list[Item]:
        """The model package group (kept by the stack, DeletionPolicy Retain) and its versions."""
        sagemaker, group = self.client("sagemaker"), f"{self.facts['prefix']}-models"
        if _exists(lambda: sagemaker.describe_model_package_group(ModelPackageGroupName=group)) is None:
            return []
        if not delete_data:
            plan.notes.append(f"model package group {group} is kept (the registry's versions and "
                              "lineage); --delete-data deletes it")
            return []
        packages = list(_pages(sagemaker, "list_model_packages", "ModelPackageSummaryList",
                               ModelPackageGroupName=group))
        items = [Item("model package", p["ModelPackageArn"].split("/", 1)[1], "delete",
                      lambda a=p["ModelPackageArn"]: _ignore_gone(
                          lambda: sagemaker.delete_model_package(ModelPackageName=a)))
                 for p in packages]
        items.append(Item("model package group", group, "delete", lambda: _ignore_gone(
            lambda: sagemaker.delete_model_package_group(ModelPackageGroupName=group))))
        return items

    def running_executions(self, executions: list[dict]) -> list[Item]:
        sfn = self.client("stepfunctions")
        return [Item("execution", e["name"], "stop",
                     lambda arn=e["executionArn"]: sfn.stop_execution(
                         executionArn=arn, error="StackDestroyed", cause="stepml destroy"))
                for e in executions if e["status"] == "RUNNING"]

    def training(self, run_ids: set[str]) -> list[Item]:
        sagemaker, items = self.client("sagemaker"), []
        for name in sorted({resource_name(run) for run in run_ids}):
            job = _exists(lambda n=name: sagemaker.describe_training_job(TrainingJobName=n))
            if job and job["TrainingJobStatus"] in RUNNING_JOB_STATES:
                items.append(Item("training job", name, "stop",
                                  lambda n=name: self._stop_training_job(n)))
        for job in self.tuning_jobs(run_ids):
            name = job["HyperParameterTuningJobName"]
            items.append(Item("tuning job", name, "stop", lambda n=name: _ignore_gone(
                lambda: sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=n))))
        return items

    def _stop_training_job(self, name: str, timeout_s: float = 120) -> None:
        """Stop, then wait until it has stopped: 'nothing left running' means not Stopping."""
        sagemaker = self.client("sagemaker")
        _ignore_gone(lambda: sagemaker.stop_training_job(TrainingJobName=name))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = _exists(lambda: sagemaker.describe_training_job(TrainingJobName=name))
            if not job or job["TrainingJobStatus"] not in RUNNING_JOB_STATES:
                return
            time.sleep(1)

    def tuning_jobs(self, run_ids: set[str]) -> Iterable[dict]:
        sagemaker = self.client("sagemaker")
        for status in ("InProgress",):
            for job in _pages(sagemaker, "list_hyper_parameter_tuning_jobs",
                              "HyperParameterTuningJobSummaries", StatusEquals=status):
                tags = sagemaker.list_tags(ResourceArn=job["HyperParameterTuningJobArn"])["Tags"]
                if run_of(tags) in run_ids:
                    yield job

    def instances(self, run_ids: set[str]) -> list[Item]:
        """Live instances tagged with one of our run ids or launched with our profile."""
        ec2, f = self.client("ec2"), self.facts
        profile = f"arn:{f['partition']}:iam::{f['account']}:instance-profile/{f['prefix']}-ec2-training"
        reservations = _pages(ec2, "describe_instances", "Reservations", Filters=[
            run_instance_filter(),
            {"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}])
        ours = []
        for reservation in reservations:
            for instance in reservation["Instances"]:
                if run_of(instance.get("Tags", [])) in run_ids or \
                        instance.get("IamInstanceProfile", {}).get("Arn") == profile:
                    ours.append(instance["InstanceId"])
        return [Item("EC2 instance", iid, "terminate",
                     lambda i=iid: ec2.terminate_instances(InstanceIds=[i])) for iid in ours]

    def autoscaling_targets(self, endpoints: set[str]) -> list[Item]:
        scaling = self.client("application-autoscaling")
        targets = _pages(scaling, "describe_scalable_targets", "ScalableTargets",
                         ServiceNamespace="sagemaker")
        mine = [t for t in targets if any(scales_endpoint(t["ResourceId"], e) for e in endpoints)]
        return [Item("autoscaling target", t["ResourceId"], "deregister",
                     lambda t=t: scaling.deregister_scalable_target(
                         ServiceNamespace="sagemaker", ResourceId=t["ResourceId"],
                         ScalableDimension=t["ScalableDimension"])) for t in mine]

    def hosting(self, endpoints: set[str], run_ids: set[str]) -> list[Item]:
        sagemaker = self.client("sagemaker")
        configs = {resource_name(run) for run in run_ids}
        models = set(configs)
        items = []
        for name in sorted(endpoints):
            endpoint = _exists(lambda n=name: sagemaker.describe_endpoint(EndpointName=n))
            if endpoint:
                configs.add(endpoint["EndpointConfigName"])
                items.append(Item("endpoint", name, "delete", lambda n=name: self.delete_endpoint(n)))
        for name in sorted(configs):
            config = _exists(lambda n=name: sagemaker.describe_endpoint_config(EndpointConfigName=n))
            if config:
                models.update(v["ModelName"] for v in config.get("ProductionVariants", []))
                items.append(Item("endpoint config", name, "delete", lambda n=name: _ignore_gone(
                    lambda: sagemaker.delete_endpoint_config(EndpointConfigName=n))))
        for name in sorted(models):
            if _exists(lambda n=name: sagemaker.describe_model(ModelName=n)):
                items.append(Item("model", name, "delete", lambda n=name: _ignore_gone(
                    lambda: sagemaker.delete_model(ModelName=n))))
        return items

    def delete_endpoint(self, name: str) -> None:
        """Delete and wait until it is gone: a deleting endpoint still bills."""
        sagemaker = self.client("sagemaker")
        _ignore_gone(lambda: sagemaker.delete_endpoint(EndpointName=name))
        deadline = time.monotonic() + self.waiting.timeout_s
        while _exists(lambda: sagemaker.describe_endpoint(EndpointName=name)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"endpoint {name} still exists")
            time.sleep(self.waiting.poll_s)

    def unmanaged_state_machine(self, stack: dict | None) -> list[Item]:
        """The state machine when the stack does not hold it (the local cloud makes it through
        the Step Functions API, see local_gaps; or the stack is gone)."""
        managed = stack is not None and "StateMachine" in changeset.stack_resources(
            self.client("cloudformation"), self.stack_name)
        sfn, arn = self.client("stepfunctions"), self.state_machine_arn(stack)
        if managed or not _exists(lambda: sfn.describe_state_machine(stateMachineArn=arn)):
            return []
        return [Item("state machine", arn.rsplit(":", 1)[-1], "delete",
                     lambda: sfn.delete_state_machine(stateMachineArn=arn))]

    def unmanaged_layer_versions(self, stack: dict | None) -> list[Item]:
        """Versions of the handlers' layer when the stack does not hold it (the local cloud
        publishes it through the Lambda API, see local_gaps; or the stack is gone)."""
        managed = stack is not None and DEPENDENCIES_LAYER in changeset.stack_resources(
            self.client("cloudformation"), self.stack_name)
        lam, name = self.client("lambda"), f"{self.facts['prefix']}-{DEPENDENCIES_LAYER_SUFFIX}"
        if managed:
            return []
        versions = _exists(lambda: list(_pages(lam, "list_layer_versions", "LayerVersions",
                                               LayerName=name))) or []
        return [Item("layer version", f"{name}:{v['Version']}", "delete",
                     lambda n=v["Version"]: _ignore_gone(lambda: lam.delete_layer_version(
                         LayerName=name, VersionNumber=n))) for v in versions]

    def provisioned_concurrency(self) -> list[Item]:
        lam = self.client("lambda")
        function = f"{self.facts['prefix']}-{PREDICT_MODULE}"
        configs = _exists(lambda: lam.list_provisioned_concurrency_configs(
            FunctionName=function).get("ProvisionedConcurrencyConfigs", [])) or []
        items = []
        for config in configs:
            qualifier = config["FunctionArn"].rsplit(":", 1)[-1]
            items.append(Item("provisioned concurrency", f"{function}:{qualifier}", "delete",
                              lambda q=qualifier: _ignore_gone(
                                  lambda: lam.delete_provisioned_concurrency_config(
                                      FunctionName=function, Qualifier=q))))
        return items

    def bucket(self, delete_data: bool, plan: Plan) -> list[Item]:
        s3, name = self.client("s3"), self.facts["bucket"]
        if _exists(lambda: s3.head_bucket(Bucket=name)) is None:
            return []
        if not delete_data:
            plan.notes.append(f"bucket {name} is kept (datasets and models); "
                              "--delete-data deletes it and every object version")
            return []
        return [Item("bucket", name, "delete", lambda: empty_and_delete_bucket(s3, name))]


def _ignore_gone(call: Callable[[], Any]) -> None:
    _exists(call)


def run_id_of(execution_name: str) -> str:
    """The run id ValidateInput gave the execution's resources."""
    return run_id(execution_name)


def execute(plan: Plan, report: Callable[[str], None]) -> list[str]:
    """Carry out the plan in order; every failure is reported and returned, none stops it."""
    failures = []
    for item in plan.items:
        try:
            item.run()
            report(f"{item.action}: {item.kind} {item.name}")
        except Exception as error:  # keep going: the rest may still cost money
            failures.append(f"{item.kind} {item.name}: {error}")
            report(f"FAILED to {item.action} {item.kind} {item.name}: {error}")
    return failures
