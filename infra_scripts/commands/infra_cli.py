"""`stepml deploy`, `stepml destroy` and `stepml template`: the stack as code.

Targets: ``--local`` deploys to a running local cloud (``stepml local-cloud``; its URL from
``--endpoint-url``, else ``AWS_ENDPOINT_URL``, else http://127.0.0.1:4566); otherwise AWS, with
the standard resolution of credentials and region (``--profile``/``AWS_PROFILE``, ``--region``/
``AWS_REGION``/the profile's region, then the config's). Credentials are never printed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

DEFAULT_LOCAL_URL = "http://127.0.0.1:4566"
console = Console(highlight=False)


def _target_options(command: Callable) -> Callable:
    options = [
        click.option("--local", is_flag=True, help="Target a running local cloud."),
        click.option("--endpoint-url", default=None,
                     help=f"Local cloud URL (default $AWS_ENDPOINT_URL or {DEFAULT_LOCAL_URL})."),
        click.option("--region", default=None, help="AWS region (standard resolution if unset)."),
        click.option("--profile", default=None, help="AWS named profile (default: AWS_PROFILE)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def make_deployer(ctx: click.Context, local: bool, endpoint_url: str | None,
                  region: str | None, profile: str | None, upload_trigger: bool = True) -> Any:
    from infra_scripts.cli import load_config
    from infra_scripts.deploy import Deployer

    config = load_config(ctx, region=region)

    def report(message: str) -> None:
        console.print(message, markup=False)

    if local:
        url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_LOCAL_URL
        return Deployer.for_local_cloud(config, url, report=report, upload_trigger=upload_trigger)
    return Deployer.for_aws(config, region=region, profile=profile, report=report,
                            upload_trigger=upload_trigger)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}")
    sys.exit(1)


def _where(deployer: Any) -> str:
    target = f"local cloud {deployer.endpoint_url}" if deployer.local else "AWS"
    return f"{target}, account {deployer.account_id()}, region {deployer.config.region}"


@click.command()
@_target_options
@click.option("--upload-trigger/--no-upload-trigger", default=True, show_default=True,
              help="Whether uploading a dataset's completion marker starts the pipeline.")
@click.option("--skip-preflight", is_flag=True, help="Deploy without running `stepml preflight` first.")
@click.pass_context
def deploy(ctx: click.Context, local: bool, endpoint_url: str | None, region: str | None,
           profile: str | None, upload_trigger: bool, skip_preflight: bool) -> None:
    """Run preflight, then create or update the stack by CloudFormation change set; print its
    outputs."""
    from infra_scripts.cfn.validation import DeployError
    from infra_scripts.commands.preflight_cli import run_preflight

    try:
        deployer = make_deployer(ctx, local, endpoint_url, region, profile, upload_trigger)
        if not skip_preflight and not run_preflight(deployer):
            _fail("preflight failed: nothing was created (fix the above, or --skip-preflight)")
        console.print(f"deploying stack [bold]{deployer.stack_name}[/] to {_where(deployer)}")
        result = deployer.deploy()
    except DeployError as error:
        _fail(str(error))
    except (ClientError, BotoCoreError) as error:
        _fail(f"AWS call failed: {error}")
    if not result.changed:
        console.print(f"No changes: stack {deployer.stack_name} is up to date.")
    table = Table(title=f"stack {deployer.stack_name} outputs", show_header=False)
    for key, value in sorted(result.outputs.items()):
        table.add_row(key, value)
    console.print(table)


@click.command()
@_target_options
@click.option("--yes", is_flag=True, help="Do not ask before deleting.")
@click.option("--delete-data", is_flag=True,
              help="Also delete the bucket (datasets, models, every object version).")
@click.pass_context
def destroy(ctx: click.Context, local: bool, endpoint_url: str | None, region: str | None,
            profile: str | None, yes: bool, delete_data: bool) -> None:
    """Delete the stack and what its executions created: endpoints, endpoint configs, models,
    running training and tuning jobs, training instances, autoscaling targets, provisioned
    concurrency."""
    from infra_scripts.cfn.teardown import execute

    try:
        deployer = make_deployer(ctx, local, endpoint_url, region, profile)
        plan = deployer.teardown_plan(delete_data=delete_data)
    except (ClientError, BotoCoreError) as error:
        _fail(f"AWS call failed: {error}")
    where = _where(deployer)
    if plan.stack is None:
        console.print(f"stack {plan.stack_name} does not exist in {where}.")
    if plan.empty:
        console.print("Nothing to delete.")
        for note in plan.notes:
            console.print(note)
        return
    console.print(f"In {where}, destroy will:")
    for item in plan.items:
        console.print(f"  {item.line()}", markup=False)
    for note in plan.notes:
        console.print(note)
    if not yes:
        click.confirm(f"Delete these {len(plan.items)} resources?", abort=True)
    failures = execute(plan, lambda message: console.print(f"  {message}", markup=False))
    if failures:
        _fail(f"{len(failures)} of {len(plan.items)} could not be deleted:\n  "
              + "\n  ".join(failures))
    console.print(f"Destroyed: {len(plan.items)} resources.")


@click.command("template")
@click.option("--bootstrap", is_flag=True, help="The bootstrap template (the bucket alone).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to a file.")
@click.pass_context
def template(ctx: click.Context, bootstrap: bool, out: str | None) -> None:
    """Print the stack's CloudFormation template (JSON)."""
    import json

    from infra_scripts.cfn.template import build_template
    from infra_scripts.cli import load_config

    text = json.dumps(build_template(load_config(ctx), bootstrap), indent=1, sort_keys=True) + "\n"
    if out:
        with open(out, "w") as handle:
            handle.write(text)
        console.print(f"wrote {out}")
    else:
        click.echo(text, nl=False)


def register(group: click.Group) -> None:
    for command in (deploy, destroy, template):
        group.add_command(command)
