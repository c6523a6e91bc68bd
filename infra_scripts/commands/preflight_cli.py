"""`stepml preflight` and `stepml cost`: before anything is created, will it run and what will
it cost? (``infra_scripts/preflight.py``, ``infra_scripts/cost.py``)."""

from __future__ import annotations

import sys
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from infra_scripts.commands.infra_cli import _target_options, make_deployer

console = Console(highlight=False)
VERDICT_STYLE = {"pass": "green", "FAIL": "bold red", "warn": "yellow"}


def print_checks(checks: list[Any], title: str) -> None:
    from infra_scripts.preflight import table_rows

    table = Table(title=title, show_lines=False)
    for column in ("check", "found", "needed", "result", "fix"):
        table.add_column(column, overflow="fold")
    for name, found, needed, verdict, fix in table_rows(checks):
        table.add_row(name, found, needed, f"[{VERDICT_STYLE[verdict]}]{verdict}[/]", fix)
    console.print(table)


def cost_lines(deployer: Any, tuning_trials: int = 0) -> list[str]:
    from infra_scripts import cost

    if deployer.local:
        prices = cost.SnapshotPrices(deployer.config.region)
    else:
        prices = cost.PriceListPrices(deployer.config.region,
                                      deployer.session.client("pricing", region_name="us-east-1"))
    return cost.render(cost.estimate(deployer.config, prices, tuning_trials=tuning_trials))


def run_preflight(deployer: Any, with_cost: bool = True) -> bool:
    """Print the checks (and the cost preview); True when nothing blocks."""
    from infra_scripts.preflight import Preflight, failed

    where = f"local cloud {deployer.endpoint_url}" if deployer.local else "AWS"
    checks = Preflight(deployer).run()
    print_checks(checks, f"preflight: {where}, region {deployer.config.region}")
    if with_cost:
        try:
            for line in cost_lines(deployer):
                console.print(line, markup=False)
        except (LookupError, ClientError, BotoCoreError) as error:
            console.print(f"cost preview unavailable: {error}", markup=False)
    blocking = failed(checks)
    if blocking:
        console.print(f"[bold red]{len(blocking)} blocking check(s) failed:[/]")
        for check in blocking:  # unwrapped, so a fix can be copied whole
            console.print(f"  {check.name}: {check.found}\n    fix: {check.fix}", markup=False,
                          soft_wrap=True)
    return not blocking


@click.command()
@_target_options
@click.pass_context
def preflight(ctx: click.Context, local: bool, endpoint_url: str | None, region: str | None,
              profile: str | None) -> None:
    """Check identity, quotas, images, bucket and AMI for this config; print the cost preview.
    Exits 1 on a blocking failure."""
    try:
        deployer = make_deployer(ctx, local, endpoint_url, region, profile)
        ok = run_preflight(deployer)
    except (ClientError, BotoCoreError) as error:
        console.print(f"[red]error:[/] AWS call failed: {error}")
        sys.exit(1)
    sys.exit(0 if ok else 1)


@click.command()
@_target_options
@click.option("--tuning-trials", default=0, show_default=True, type=click.IntRange(0),
              help="Tuning trials to include in one run's cost.")
@click.pass_context
def cost(ctx: click.Context, local: bool, endpoint_url: str | None, region: str | None,
         profile: str | None, tuning_trials: int) -> None:
    """The cost of one run and of a month of serving, and which settings dominate. Prices: the
    Price List API on AWS, the shipped snapshot with --local."""
    deployer = make_deployer(ctx, local, endpoint_url, region, profile)
    try:
        for line in cost_lines(deployer, tuning_trials):
            console.print(line, markup=False)
    except (LookupError, ClientError, BotoCoreError) as error:
        console.print(f"[red]error:[/] {error}")
        sys.exit(1)


def register(group: click.Group) -> None:
    for command in (preflight, cost):
        group.add_command(command)
