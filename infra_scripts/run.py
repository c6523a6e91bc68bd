"""`stepml run`: sample data → deploy → upload → execution → live progress → summary.

On the local cloud (default) everything happens on this machine; with ``aws=True`` the same
steps run against the account and region boto3 resolves.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from infra_scripts.deploy import Deployer, DeployResult
from infra_scripts.progress import ExecutionView, follow_execution
from infra_scripts.training_progress import TrainingProgress
from infra_scripts.trigger import upload_dataset
from statemachine.config import PipelineConfig

SAMPLE_DATASET = "sample"


@dataclass
class RunOutcome:
    status: str
    execution_arn: str
    output: dict[str, Any]
    view: ExecutionView
    description: dict[str, Any]
    seconds: float


def make_sample_dataset(target: Path) -> Path:
    from training.config import defaults
    from training.dataset import make_dataset

    make_dataset(target, classes=defaults.classes, per_class=defaults.per_class,
                 size=defaults.dataset_size, seed=defaults.dataset_seed)
    return target


class PreflightFailed(Exception):
    pass


def execution_input(dataset_uri: str, backend: str, local: bool) -> dict[str, Any]:
    # The sample's synthetic shapes need no pretrained backbone (and local jobs have no network).
    document: dict[str, Any] = {"dataset": dataset_uri, "training": {"backend": backend, "weights": "none"}}
    if local:
        document["poll_seconds"] = 1  # the local cloud answers in seconds, not minutes
        # Shortened windows: a 5 s canary bake under 10 s alarm periods (AWS: minutes, 60 s).
        document["rollout"] = dict(LOCAL_ROLLOUT)
    return document


LOCAL_ROLLOUT = {"wait_seconds": 5, "alarm_period_seconds": 10}


def start_execution(sfn: Any, state_machine_arn: str, document: dict, name: str | None = None) -> str:
    """StartExecution of a document that passes the execution input's schema (else InvalidInput,
    and nothing runs)."""
    from handlers.input_schema import check_input

    check_input(document)
    name = name or f"run-{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"
    return sfn.start_execution(stateMachineArn=state_machine_arn, name=name,
                               input=json.dumps(document))["executionArn"]


def run_pipeline(config: PipelineConfig, backend: str, console: Console, aws: bool = False,
                 dataset_dir: Path | None = None, cloud_options: dict | None = None,
                 region: str | None = None,
                 preflight: Callable[[Deployer], bool] | None = None) -> RunOutcome:
    """``region``: with ``aws``, overrides standard AWS region resolution. ``preflight``: run
    before anything is created; False stops the run (PreflightFailed)."""
    started = time.monotonic()
    with ExitStack() as stack:
        endpoint_url = None
        if not aws:
            from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings

            options = {"account": {"profile": config.local_account_profile}, **(cloud_options or {})}
            settings = LocalCloudSettings(region=config.region, options=options)
            cloud = stack.enter_context(LocalCloud(settings=settings))
            endpoint_url = cloud.url
            console.print(f"local cloud on [bold]{cloud.url}[/]")
        # On AWS the stack keeps its upload trigger on, as `stepml deploy` leaves it, so later
        # uploads still start the pipeline; this run's own upload then writes no completion
        # marker, or the trigger would start a second execution beside the one started below.
        deployer = (Deployer.for_local_cloud(config, endpoint_url) if endpoint_url
                    else Deployer.for_aws(config, region=region, upload_trigger=True))
        if preflight is not None and not preflight(deployer):
            raise PreflightFailed("preflight failed: nothing was created (fix the above, or "
                                  "--skip-preflight)")
        with console.status("deploying the stack"):
            deployed = deployer.deploy()
        console.print(f"deployed {len(deployed.functions)} functions and {deployed.state_machine_arn}")
        data = dataset_dir or make_sample_dataset(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        with console.status("uploading the dataset"):
            dataset_uri = upload_dataset(deployer.client("s3"), config.bucket, data, SAMPLE_DATASET,
                                         config.dataset_prefix, marker=not deployer.upload_trigger)
        sfn = deployer.client("stepfunctions")
        arn = start_execution(sfn, deployed.state_machine_arn, execution_input(dataset_uri, backend, not aws))
        console.print(f"execution [bold]{arn}[/]")
        progress = TrainingProgress(deployer.client, arn.rsplit(":", 1)[-1], backend)
        description, view = follow_execution(sfn, arn, console, extra_status=progress)
        output = json.loads(description.get("output") or "{}")
        outcome = RunOutcome(description["status"], arn, output, view, description,
                             time.monotonic() - started)
        print_summary(console, outcome, deployed, deployer)
        return outcome


def print_summary(console: Console, outcome: RunOutcome, deployed: DeployResult, deployer: Deployer) -> None:
    console.print(f"\n[bold]{outcome.status}[/] in {outcome.seconds:.1f}s — states: "
                  + " → ".join(outcome.view.order))
    if outcome.status != "SUCCEEDED":
        description = outcome.description
        console.print(f"[red]failed[/]: {description.get('error')}: {description.get('cause')}")
        failed = [r for r in outcome.view.states.values() if r.status == "failed"]
        if failed:
            console.print(f"failed state: [bold]{failed[0].name}[/] {failed[0].error}")
        return
    doc = outcome.output
    table = Table(title="summary", show_header=False)
    metrics = doc.get("training_job", {}).get("metrics", {})
    rows = [
        ("training backend", doc.get("training_job", {}).get("backend")),
        ("backbone weights", _weights_summary(doc.get("training", {}).get("weights"))),
        ("test accuracy", metrics.get("test_acc")),
        ("model artifact", doc.get("training_job", {}).get("model_artifact")),
        ("endpoint", f"{doc['endpoint']['name']} ({doc['endpoint'].get('status')}, "
                     f"{doc['endpoint'].get('instance_count')} instance)"),
        ("autoscaling", f"min {doc['autoscaling']['min']}, max {doc['autoscaling']['max']}, "
                        f"target {doc['autoscaling']['target']} invocations/instance/min"),
        ("predict function", f"{doc['predict'].get('alias_arn')} (version {doc['predict'].get('version')})"),
        ("concurrency", f"reserved {doc['predict']['reserved_concurrency']}, provisioned "
                        f"{doc['predict']['provisioned_concurrency']} on alias live"),
        ("smoke prediction", f"{doc['smoke_test']['label']} (p={doc['smoke_test']['probability']:.2f}, "
                             f"expected {doc['smoke_test']['expected']})"),
        ("upload trigger", "on: uploading a dataset's marker starts the pipeline (this run's own "
                           "upload wrote none)" if deployer.upload_trigger
         else "off on this stack (`stepml deploy` turns it on)"),
        ("graph", f"stepml graph --execution {outcome.execution_arn} --out graph.svg"),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)


def _weights_summary(weights: str | None) -> str:
    if weights == "none":
        return "none (randomly initialised backbone; training.weights=imagenet fine-tunes ImageNet's)"
    return str(weights)
