"""stepml command-line interface."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

if TYPE_CHECKING:
    from infra_scripts.localcloud.core.server import LocalCloud

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")


class _DropUnusedDefaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Not applying SDK defaults")


def _route_sagemaker_config_log() -> None:
    """The SageMaker SDK logs its config-file lookups to *stdout* unless its logger already has
    a handler (sagemaker.config.config_utils.get_sagemaker_config_logger), which broke
    `stepml template > t.json` and the progress display. Give it one on stderr that keeps what
    matters (defaults that were applied) and drops the "not applying" lines."""
    logger = logging.getLogger("sagemaker.config")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)-4s - %(message)s"))
    handler.addFilter(_DropUnusedDefaults())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


_route_sagemaker_config_log()

# Command groups that live beside the code they drive; each module exposes register(group).
COMMAND_MODULES: tuple[str, ...] = (
    "infra_scripts.commands.training_cli",
    "infra_scripts.commands.workflow_cli",
    "infra_scripts.commands.infra_cli",
    "infra_scripts.commands.preflight_cli",
    "infra_scripts.commands.models_cli",
)

console = Console()


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config file (default: ./stepml.toml if present, or $STEPML_CONFIG).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """stepml: train, deploy and serve an image classifier with AWS Step Functions."""
    ctx.obj = {"config_path": config_path}


def load_config(ctx: click.Context, **overrides: object):
    from statemachine.config import PipelineConfig

    try:
        return PipelineConfig.load(ctx.obj.get("config_path"), **overrides)
    except ValueError as error:
        raise click.UsageError(str(error)) from error


@main.command()
@click.option("--backend", type=click.Choice(["sagemaker", "ec2"]), default=None,
              help="Training backend for this execution (default from config: sagemaker).")
@click.option("--aws", is_flag=True, help="Run against AWS instead of the local cloud.")
@click.option("--region", default=None, help="AWS region (with --aws).")
@click.option("--dataset", "dataset_dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Local ImageFolder dataset (train/valid/test) instead of the generated sample.")
@click.option("--skip-preflight", is_flag=True, help="With --aws: skip `stepml preflight`.")
@click.option("--no-iam", is_flag=True,
              help="Local cloud, debugging only: accept unsigned requests and check no permissions.")
@click.pass_context
def run(ctx: click.Context, backend: str | None, aws: bool, region: str | None,
        dataset_dir: str | None, skip_preflight: bool, no_iam: bool) -> None:
    """Deploy the pipeline, upload a dataset, run one execution and follow it to the end."""
    from infra_scripts.commands.preflight_cli import run_preflight
    from infra_scripts.run import PreflightFailed, run_pipeline

    config = load_config(ctx)
    if no_iam and not aws:
        warn_no_iam()
    try:
        outcome = run_pipeline(config, backend or config.training_backend, console, aws=aws,
                               cloud_options=NO_IAM if no_iam else None,
                               dataset_dir=Path(dataset_dir) if dataset_dir else None, region=region,
                               preflight=run_preflight if aws and not skip_preflight else None)
    except PreflightFailed as error:
        console.print(f"[red]error:[/] {error}")
        sys.exit(1)
    sys.exit(0 if outcome.status == "SUCCEEDED" else 1)


@main.command("local-cloud")
@click.option("--port", type=int, default=4566, show_default=True)
@click.option("--account-profile", type=click.Choice(["default", "new"]), default=None,
              help="Quotas of the emulated account: today's generous ones, or a new AWS account's "
                   "(Lambda concurrency 10, SageMaker instance quotas 0). Default: config "
                   "local_account_profile.")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the export lines to this file (mode 600) instead of printing them.")
@click.option("--no-iam", is_flag=True,
              help="Debugging only: accept unsigned requests and check no permissions.")
@click.pass_context
def local_cloud(ctx: click.Context, port: int, account_profile: str | None,
                env_file: Path | None, no_iam: bool) -> None:
    """Run the local cloud on 127.0.0.1 until interrupted. Its credentials are made at each
    start and printed as shell lines to paste or `eval` (or written to --env-file)."""
    from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings

    profile = account_profile or load_config(ctx).local_account_profile
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    options: dict = {"account": {"profile": profile}}
    if no_iam:
        options.update(NO_IAM)
        warn_no_iam()
    settings = LocalCloudSettings(options=options)
    with LocalCloud(port=port, settings=settings) as cloud:
        exports = export_lines(cloud)
        if env_file is not None:
            env_file.touch(mode=0o600)
            env_file.chmod(0o600)
            env_file.write_text(exports)
            console.print(f"local cloud on [bold]{cloud.url}[/] (account profile {profile}); "
                          f"its credentials: `source {env_file}`", soft_wrap=True)
        else:
            print(f"# local cloud on {cloud.url} (account profile {profile}); paste or eval:")
            print(exports, end="", flush=True)  # plain lines: no terminal wrapping of the secret
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


@main.command()
@click.option("--write", is_flag=True, help="Regenerate statemachine/definition.asl.json.")
@click.pass_context
def definition(ctx: click.Context, write: bool) -> None:
    """Print the state machine's ASL (Amazon States Language) definition."""
    from statemachine.workflow import definition_json, write_snapshot

    if write:
        console.print(f"wrote {write_snapshot()}")
        return
    click.echo(definition_json(load_config(ctx)), nl=False)


NO_IAM = {"signatures": {"verify": False}, "iam": {"enforce": False}}


def warn_no_iam() -> None:
    click.echo("warning: --no-iam: the local cloud accepts unsigned requests and checks no "
               "permissions; for debugging only, never what AWS does", err=True)


def export_lines(cloud: LocalCloud) -> str:
    """One ``export NAME=value`` line per variable, values shell-quoted."""
    import shlex

    values = {"AWS_ENDPOINT_URL": cloud.url, **cloud.credentials, "AWS_DEFAULT_REGION": cloud.region}
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())


def _register_command_modules() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(main)


_register_command_modules()
