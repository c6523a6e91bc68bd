"""Model registry commands: models, models show, promote, rollback.

They read the stack's Model Package Group and drive the endpoint through the same guarded
rollout as the pipeline (blue/green canary, rollback alarms): on AWS by default, or a local cloud
with ``--endpoint-url`` / ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from infra_scripts.commands.workflow_cli import aws_options

console = Console()
STATUS_STYLE = {"Approved": "green", "Rejected": "red", "PendingManualApproval": "yellow"}


def _config(ctx: click.Context) -> Any:
    from infra_scripts.cli import load_config

    return load_config(ctx)


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


@click.group(invoke_without_command=True)
@aws_options
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@click.pass_context
def models(ctx: click.Context, clients: Any, as_json: bool) -> None:
    """The registry's versions: status, scores, lineage, and which one is live."""
    if ctx.invoked_subcommand is not None:
        return
    from infra_scripts import model_registry

    config = _config(ctx)
    found = model_registry.versions(clients.client("sagemaker"), config.model_package_group,
                                    config.endpoint_name)
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in found], indent=1, default=str))
        return
    if not found:
        console.print(f"No versions in {config.model_package_group} yet.")
        return
    table = Table(title=f"model package group {config.model_package_group}")
    for column in ("version", "status", "rollout", "test acc", "live acc then", "dataset", "run",
                   "git", "gate"):
        table.add_column(column, overflow="fold")
    for v in found:
        style = STATUS_STYLE.get(v.status, "")
        table.add_row(f"{v.version}{' (live)' if v.live else ''}", f"[{style}]{v.status}[/]",
                      v.rollout, _score(v.accuracy), _score(v.live_accuracy),
                      v.lineage.get("dataset-uri", ""),
                      v.lineage.get("run-id", ""), v.lineage.get("git-commit", "")[:10], v.reason)
    console.print(table)


@models.command("show")
@aws_options
@click.argument("version", type=int)
@click.pass_context
def show(ctx: click.Context, clients: Any, version: int) -> None:
    """One version in full: lineage, hyperparameters, the gate's decision and its evaluation
    report (per-class precision and recall, confusion matrix)."""
    from infra_scripts import model_registry

    config = _config(ctx)
    try:
        found = model_registry.find(clients.client("sagemaker"), config.model_package_group,
                                    config.endpoint_name, version)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    report = model_registry.evaluation_report(clients.client("s3"), found)
    click.echo(json.dumps({**found.to_dict(), "evaluation": report}, indent=1, default=str))


def _rollout(ctx: click.Context, clients: Any, version: int, wait_seconds: int | None) -> None:
    from infra_scripts import model_registry

    config = _config(ctx)
    settings = config.execution_defaults()["rollout"]
    if wait_seconds is not None:
        settings["wait_seconds"] = wait_seconds
    console.print(f"promoting version {version} to {config.endpoint_name} (canary "
                  f"{settings['canary_percent']}%, baking {settings['wait_seconds']} s, rollback alarms)")
    try:
        outcome = model_registry.promote(clients, config.model_package_group, config.endpoint_name,
                                         version, settings)
    except (LookupError, ValueError, TimeoutError) as error:
        raise click.ClickException(str(error)) from None
    if outcome.rolled_back:
        console.print(f"[red]rolled back[/] after {outcome.seconds:.0f} s: {outcome.rolled_back}")
        raise SystemExit(1)
    console.print(f"[green]version {version} is live[/] ({outcome.config}, {outcome.seconds:.0f} s)")


@click.command()
@aws_options
@click.argument("version", type=int)
@click.option("--wait-seconds", type=click.IntRange(0, 3600), default=None,
              help="Baking period with the canary live (default: rollout_wait_seconds).")
@click.pass_context
def promote(ctx: click.Context, clients: Any, version: int, wait_seconds: int | None) -> None:
    """Serve an Approved VERSION through the guarded blue/green rollout."""
    _rollout(ctx, clients, version, wait_seconds)


@click.command()
@aws_options
@click.argument("version", type=int, required=False)
@click.option("--wait-seconds", type=click.IntRange(0, 3600), default=None,
              help="Baking period with the canary live (default: rollout_wait_seconds).")
@click.pass_context
def rollback(ctx: click.Context, clients: Any, version: int | None, wait_seconds: int | None) -> None:
    """Serve VERSION again (default: the newest Approved version before the live one), through
    the same guarded rollout."""
    from infra_scripts import model_registry

    if version is None:
        config = _config(ctx)
        try:
            version = model_registry.rollback_target(clients.client("sagemaker"),
                                                     config.model_package_group, config.endpoint_name)
        except LookupError as error:
            raise click.ClickException(str(error)) from None
    _rollout(ctx, clients, version, wait_seconds)


def register(group: click.Group) -> None:
    for command in (models, promote, rollback):
        group.add_command(command)
