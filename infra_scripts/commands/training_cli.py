"""`stepml make-dataset` and `stepml tune`: training helpers on the command line.

Wire into the main CLI with `register(main)`.
"""
from __future__ import annotations

import json

import click

from training.config import InputError, defaults


def _splits(value: str) -> tuple[float | int, ...]:
    """'0.7,0.15,0.15' (fractions) or '20,5,5' (images per class in each split)."""
    parts = [p.strip() for p in value.split(",")]
    try:
        if all(p.isdigit() for p in parts):
            return tuple(int(p) for p in parts)
        return tuple(float(p) for p in parts)
    except ValueError:
        raise click.BadParameter(f"expected three numbers like 0.7,0.15,0.15, got {value!r}"
                                 ) from None


@click.command("make-dataset")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--classes", default=defaults.classes, show_default=True, type=click.IntRange(2))
@click.option("--per-class", default=defaults.per_class, show_default=True,
              type=click.IntRange(3), help="images per class over all splits")
@click.option("--size", default=defaults.dataset_size, show_default=True,
              type=click.IntRange(8, 4096), help="image side in pixels")
@click.option("--seed", default=defaults.dataset_seed, show_default=True, type=click.IntRange(0))
@click.option("--splits", "splits", default="0.7,0.15,0.15", show_default=True,
              help="train,valid,test fractions, or integer images per class")
def make_dataset_cmd(out: str, classes: int, per_class: int, size: int, seed: int,
                     splits: str) -> None:
    """Write a deterministic synthetic ImageFolder dataset (train/valid/test) to OUT."""
    from training.dataset import class_names, make_dataset, split_counts

    parsed = _splits(splits)
    try:
        counts = split_counts(per_class, parsed)
        root = make_dataset(out, classes=classes, per_class=per_class, size=size, seed=seed,
                            splits=parsed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    total = sum(counts.values()) * classes
    click.echo(f"wrote {total} images ({classes} classes, {counts}) to {root}")
    click.echo(f"classes: {', '.join(class_names(classes))}")


@click.command("tune")
@click.option("--data", required=True, help="dataset dir or s3:// URI with train/valid/test")
@click.option("--trials", default=4, show_default=True, type=click.IntRange(1))
@click.option("--epochs", default=defaults.epochs, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=defaults.seed, show_default=True, type=click.IntRange(0))
@click.option("--image-size", default=defaults.image_size, show_default=True,
              type=click.IntRange(16))
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="where trial model dirs and logs go (default: a temp dir)")
@click.option("--json", "as_json", is_flag=True, help="print the full result as JSON")
def tune_cmd(data: str, trials: int, epochs: int, seed: int, image_size: int,
             workdir: str | None, as_json: bool) -> None:
    """Local hyperparameter search (lr, batch size), the SageMaker tuner's local twin."""
    from rich.console import Console
    from rich.table import Table

    from training.hpo import OBJECTIVE_METRIC, run_local_tuning

    console = Console(stderr=as_json)

    def progress(trial: dict) -> None:
        value = trial["metrics"].get(OBJECTIVE_METRIC)
        shown = f"{value:.4f}" if value is not None else trial["reason"]
        console.print(f"trial {trial['trial']}: {trial['hyperparameters']} -> "
                      f"{OBJECTIVE_METRIC}={shown}")

    try:
        result = run_local_tuning(data, trials=trials, epochs=epochs, seed=seed,
                                  workdir=workdir, on_trial=progress,
                                  extra_args=["--image-size", str(image_size)])
    except InputError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"tuning: {OBJECTIVE_METRIC} ({result['objective']['type']})")
    for column in ("trial", "lr", "batch-size", OBJECTIVE_METRIC, "best_valid_acc", "status"):
        table.add_column(column)
    for t in result["trials"]:
        m = t["metrics"]
        table.add_row(str(t["trial"]), str(t["hyperparameters"]["lr"]),
                      str(t["hyperparameters"]["batch-size"]),
                      f"{m.get(OBJECTIVE_METRIC, float('nan')):.4f}",
                      f"{m.get('best_valid_acc', float('nan')):.4f}", t["status"])
    console.print(table)
    best = result["best"]
    console.print(f"best: trial {best['trial']} {json.dumps(best['hyperparameters'])} "
                  f"model_dir={best['model_dir']}")


def register(group: click.Group) -> None:
    """Add the training commands to the `stepml` group."""
    group.add_command(make_dataset_cmd)
    group.add_command(tune_cmd)
