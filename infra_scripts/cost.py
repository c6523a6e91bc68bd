"""The cost preview (``stepml cost``, and part of ``stepml preflight``): what one run and a month
of serving cost for a config, and which settings dominate.

Prices come from the AWS Price List API (``--aws``: SageMaker and EC2 instance prices, each
falling back to the snapshot when the API has no match) or from the snapshot shipped in
``infra_scripts/prices/<region>.json``, whose date is printed. Per run: training (the training
deadline bounds the hours), tuning trials, Step Functions transitions, S3 requests. Per month:
the endpoint at its minimum and maximum instance counts, provisioned concurrency (billed around
the clock), S3 storage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra_scripts.cfn.template import PREDICT_MEMORY_MB
from statemachine.config import PipelineConfig

PRICES_DIR = Path(__file__).with_name("prices")
HOURS_PER_MONTH = 730  # AWS's pricing pages price a month as 730 hours
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
STATES_PER_RUN = 16  # transitions of a successful run outside its poll loops (definition.asl.json)
ENDPOINT_START_SECONDS = 600  # a typical Creating → InService, polled by CheckEndpoint


@dataclass(frozen=True)
class Line:
    item: str
    quantity: str
    cost: float
    period: str  # "run" or "month"
    setting: str  # the config setting that drives it


@dataclass
class Estimate:
    region: str
    source: str
    lines: list[Line] = field(default_factory=list)

    def total(self, period: str) -> float:
        return sum(line.cost for line in self.lines if line.period == period)

    def dominant(self, period: str, top: int = 2) -> list[tuple[Line, float]]:
        """The lines that make most of a period's total, with their share."""
        total = self.total(period) or 1.0
        ranked = sorted((line for line in self.lines if line.period == period),
                        key=lambda line: line.cost, reverse=True)
        return [(line, line.cost / total) for line in ranked[:top]]


class SnapshotPrices:
    """The shipped price snapshot of one region."""

    def __init__(self, region: str) -> None:
        path = PRICES_DIR / f"{region}.json"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in PRICES_DIR.glob("*.json")))
            raise LookupError(f"no price snapshot for {region} (snapshots: {known}); "
                              "use --aws for the Price List API")
        self.table: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        self.source = f"price snapshot of {self.table['date']} ({path.name})"

    def hourly(self, table: str, instance_type: str) -> float:
        try:
            return float(self.table[table][instance_type])
        except KeyError:
            raise LookupError(f"the price snapshot has no {table} price for {instance_type}; "
                              "use --aws for the Price List API") from None

    def scalar(self, name: str) -> float:
        return float(self.table[name])


class PriceListPrices(SnapshotPrices):
    """Instance prices from the AWS Price List API (``pricing`` in us-east-1), the snapshot for
    the rest and for any instance the API does not answer."""

    FILTERS = {
        "sagemaker_training_per_hour": ("AmazonSageMaker", "instanceName", {"component": "Training"}),
        "sagemaker_hosting_per_hour": ("AmazonSageMaker", "instanceName", {"component": "Hosting"}),
        "ec2_per_hour": ("AmazonEC2", "instanceType", {
            "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
            "capacitystatus": "Used"}),
    }

    def __init__(self, region: str, pricing_client: Any) -> None:
        super().__init__(region)
        self.region, self.client = region, pricing_client
        self.source = f"AWS Price List API (else {self.source})"

    def hourly(self, table: str, instance_type: str) -> float:
        service, field_name, extra = self.FILTERS[table]
        filters = [{"Type": "TERM_MATCH", "Field": key, "Value": value} for key, value in
                   {"regionCode": self.region, field_name: instance_type, **extra}.items()]
        answer = self.client.get_products(ServiceCode=service, Filters=filters, MaxResults=10)
        prices = [on_demand_usd(json.loads(item)) for item in answer.get("PriceList", [])]
        prices = [price for price in prices if price]
        return min(prices) if prices else super().hourly(table, instance_type)


def on_demand_usd(product: dict) -> float:
    """The first non-zero OnDemand USD price of a Price List product document."""
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            value = float(dimension.get("pricePerUnit", {}).get("USD", 0) or 0)
            if value:
                return value
    return 0.0


def estimate(config: PipelineConfig, prices: SnapshotPrices, tuning_trials: int = 0,
             dataset_gb: float = 1.0, dataset_objects: int = 10_000) -> Estimate:
    result = Estimate(config.region, prices.source)
    add = result.lines.append
    hours = config.training_max_wait_seconds / 3600
    if config.training_backend == "ec2":
        rate = prices.hourly("ec2_per_hour", config.ec2_instance_type)
        add(Line(f"EC2 training {config.ec2_instance_type}", f"≤ {hours:g} h × ${rate:g}/h",
                 hours * rate, "run", "ec2_instance_type, training_max_wait_seconds"))
    else:
        rate = prices.hourly("sagemaker_training_per_hour", config.training_instance_type)
        count = config.training_instance_count
        add(Line(f"SageMaker training {config.training_instance_type}",
                 f"≤ {count} × {hours:g} h × ${rate:g}/h", count * hours * rate, "run",
                 "training_instance_type, training_instance_count, training_max_wait_seconds"))
        if tuning_trials:
            add(Line(f"tuning trials {config.training_instance_type}",
                     f"≤ {tuning_trials} × {count} × {hours:g} h × ${rate:g}/h",
                     tuning_trials * count * hours * rate, "run", "tuning.max_jobs (execution input)"))
    polls = (config.training_max_wait_seconds + ENDPOINT_START_SECONDS) / max(config.poll_seconds, 1)
    transitions = STATES_PER_RUN + 2 * polls  # each poll is a Wait and a Check
    step_rate = prices.scalar("stepfunctions_per_1000_transitions")
    add(Line("Step Functions transitions", f"≤ {transitions:,.0f} × ${step_rate:g}/1000",
             transitions * step_rate / 1000, "run", "poll_seconds"))
    put_rate = prices.scalar("s3_put_per_1000")
    add(Line("S3 requests (dataset upload, job reads)", f"{dataset_objects:,} PUT + GET",
             dataset_objects * (put_rate + prices.scalar("s3_get_per_1000")) / 1000, "run",
             "the dataset"))
    hosting = prices.hourly("sagemaker_hosting_per_hour", config.endpoint_instance_type)
    for label, count in (("min", config.autoscaling_min), ("max", config.autoscaling_max)):
        add(Line(f"endpoint {config.endpoint_instance_type} at {label}",
                 f"{count} × {HOURS_PER_MONTH} h × ${hosting:g}/h", count * HOURS_PER_MONTH * hosting,
                 f"month-{label}", f"endpoint_instance_type, autoscaling_{label}"))
    provisioned_rate = prices.scalar("lambda_provisioned_per_gb_second")
    gigabytes = PREDICT_MEMORY_MB / 1024
    add(Line("predict provisioned concurrency",
             f"{config.provisioned_concurrency} × {gigabytes:g} GB × {SECONDS_PER_MONTH:,} s × "
             f"${provisioned_rate:g}/GB-s",
             config.provisioned_concurrency * gigabytes * SECONDS_PER_MONTH * provisioned_rate,
             "month", "provisioned_concurrency"))
    storage = prices.scalar("s3_standard_per_gb_month")
    add(Line("S3 storage (dataset, models, code)", f"{dataset_gb:g} GB × ${storage:g}/GB-month",
             dataset_gb * storage, "month", "the dataset"))
    return result


def monthly_totals(result: Estimate) -> dict[str, float]:
    """A month of serving at the endpoint's minimum and at its maximum."""
    base = result.total("month")
    return {"min": base + result.total("month-min"), "max": base + result.total("month-max")}


def render(result: Estimate) -> list[str]:
    """Plain lines (the CLI prints them, preflight appends them)."""
    lines = [f"cost preview for {result.region} — {result.source}"]
    for period, title in (("run", "one run"), ("month-min", "per month, endpoint at min"),
                          ("month-max", "per month, endpoint at max"), ("month", "per month, always")):
        for line in (x for x in result.lines if x.period == period):
            lines.append(f"  {title:<28} {line.item:<44} ${line.cost:>9,.2f}  ({line.quantity})")
    months = monthly_totals(result)
    lines.append(f"  one run ≤ ${result.total('run'):,.2f}; a month of serving "
                 f"${months['min']:,.2f} (min) to ${months['max']:,.2f} (max)")
    share = {line.item: (line, line.cost / months["max"]) for line in result.lines
             if line.period in ("month", "month-max") and months["max"]}
    top = sorted(share.values(), key=lambda pair: pair[1], reverse=True)[:2]
    lines.append("  dominated by: " + "; ".join(f"{line.item} {fraction:.0%} (set {line.setting})"
                                               for line, fraction in top))
    return lines
