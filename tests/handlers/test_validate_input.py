"""ValidateInput: defaults applied, every field checked, bad input named, nothing created."""

from __future__ import annotations

import re
from typing import Any

import pytest

from handlers import common, input_schema, validate_input
from handlers.errors import InvalidInput
from tests.handlers.conftest import (
    BUCKET,
    CONFIG,
    DATASET_URI,
    EXECUTION_NAME,
    Counts,
    call,
    call_twice,
    dataset_keys,
    run_input,
)


def test_applies_defaults_and_names_the_run(aws: Counts) -> None:
    doc = call(validate_input, run_input(endpoint={"instance_count": 2},
                                         training={"backend": "ec2", "hyperparameters": {"lr": "0.01"}}))

    defaults = CONFIG.execution_defaults()
    assert doc["dataset"] == {"s3_uri": DATASET_URI}
    assert doc["training"]["backend"] == "ec2"
    assert doc["training"]["hyperparameters"] == {**defaults["training"]["hyperparameters"], "lr": "0.01"}
    assert doc["training"]["instance_type"] == defaults["training"]["instance_type"]
    assert doc["endpoint"] == {**defaults["endpoint"], "instance_count": 2}
    assert doc["autoscaling"] == defaults["autoscaling"]
    assert doc["predict"] == {"reserved_concurrency": 100, "provisioned_concurrency": 80}
    assert doc["poll_seconds"] == 0
    assert doc["bucket"] == BUCKET
    assert doc["execution_name"] == EXECUTION_NAME
    assert doc["run_id"] == validate_input.run_id(EXECUTION_NAME)
    assert doc["run_id"].startswith("exec-1-") and len(doc["run_id"]) <= 63


def test_dataset_without_trailing_slash_and_as_object(aws: Counts) -> None:
    plain = call(validate_input, run_input(dataset=DATASET_URI.rstrip("/")))
    as_object = call(validate_input, run_input(dataset={"s3_uri": DATASET_URI}))
    assert plain["dataset"] == as_object["dataset"] == {"s3_uri": DATASET_URI}


def test_idempotent(aws: Counts) -> None:
    before = aws.objects()
    doc = call_twice(validate_input, run_input())
    assert doc["run_id"] == validate_input.run_id(EXECUTION_NAME)
    assert aws.objects() == before


def test_run_id_is_stable_and_a_valid_sagemaker_name() -> None:
    name = "Execution_with:odd.characters-and-a-very-long-name-that-keeps-going-on-and-on"
    run_id = validate_input.run_id(name)
    assert run_id == validate_input.run_id(name)
    assert run_id != validate_input.run_id(name + "x")
    assert len(run_id) <= 63
    endpoint_name = input_schema.schema()["properties"]["endpoint"]["properties"]["name"]["pattern"]
    assert re.fullmatch(endpoint_name, run_id)  # a valid SageMaker resource name


BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("missing dataset", {"dataset": None}, "dataset"),
    ("dataset not s3", {"dataset": "/local/path"}, "dataset"),
    ("unknown backend", {"training": {"backend": "tpu"}}, "training.backend"),
    ("non-numeric hyperparameter", {"training": {"hyperparameters": {"lr": "fast"}}},
     "training.hyperparameters.lr"),
    ("list hyperparameter", {"training": {"hyperparameters": {"epochs": [1, 2]}}},
     "training.hyperparameters.epochs"),
    ("negative hyperparameter", {"training": {"hyperparameters": {"epochs": -1}}},
     "training.hyperparameters.epochs"),
    ("hyperparameters not an object", {"training": {"hyperparameters": "lr=0.1"}},
     "training.hyperparameters"),
    ("training not an object", {"training": "ec2"}, "training"),
    ("boolean instance count", {"training": {"instance_count": True}}, "training.instance_count"),
    ("zero instance count", {"training": {"instance_count": 0}}, "training.instance_count"),
    ("endpoint name with underscore", {"endpoint": {"name": "bad_name"}}, "endpoint.name"),
    ("endpoint name too long", {"endpoint": {"name": "a" * 64}}, "endpoint.name"),
    ("endpoint name starting with a hyphen", {"endpoint": {"name": "-abc"}}, "endpoint.name"),
    ("endpoint name with a trailing newline", {"endpoint": {"name": "abc\n"}}, "endpoint.name"),
    ("provisioned above reserved",
     {"predict": {"reserved_concurrency": 10, "provisioned_concurrency": 11}},
     "predict.provisioned_concurrency"),
    ("autoscaling min above max", {"autoscaling": {"min": 3, "max": 2}}, "autoscaling.min"),
    ("autoscaling target not a number", {"autoscaling": {"target": "lots"}}, "autoscaling.target"),
    ("poll seconds not a number", {"poll_seconds": "soon"}, "poll_seconds"),
    ("tuning without max_jobs", {"tuning": {}}, "tuning.max_jobs"),
    ("unknown top-level field", {"datset": DATASET_URI}, "datset"),
    ("unknown nested field", {"autoscaling": {"maximum": 4}}, "autoscaling.maximum"),
]


@pytest.mark.parametrize(("overrides", "field"), [(o, f) for _, o, f in BAD_INPUTS],
                         ids=[case for case, _, _ in BAD_INPUTS])
def test_bad_input_names_the_field_and_creates_nothing(aws: Counts, overrides: dict, field: str) -> None:
    event = run_input(**overrides)
    event["input"] = {k: v for k, v in event["input"].items() if v is not None}
    before = aws.objects()

    with pytest.raises(InvalidInput) as raised:
        call(validate_input, event)

    assert field in str(raised.value)
    assert aws.objects() == before
    assert aws.training_jobs() == 0
    assert aws.endpoints() == 0


@pytest.mark.parametrize("empty_split", ["train", "valid", "test"])
def test_prefix_without_data(aws: Counts, empty_split: str) -> None:
    for key in dataset_keys(empty_split):
        common.client("s3").delete_object(Bucket=BUCKET, Key=key)

    with pytest.raises(InvalidInput, match=rf"dataset .*{empty_split}/"):
        call(validate_input, run_input())
    with pytest.raises(InvalidInput, match="dataset"):
        call(validate_input, run_input(dataset=f"s3://{BUCKET}/datasets/nothing-here/"))


def test_dataset_bucket_that_does_not_exist(aws: Counts) -> None:
    with pytest.raises(InvalidInput, match="dataset"):
        call(validate_input, run_input(dataset="s3://no-such-bucket-stepml/data/"))


def test_input_that_is_not_an_object(aws: Counts) -> None:
    with pytest.raises(InvalidInput, match="execution input"):
        call(validate_input, {"input": ["dataset"], "execution_name": EXECUTION_NAME})


@pytest.mark.parametrize("override, field", [
    ({"endpoint": {"name": "another-endpoint"}}, "endpoint.name"),
    ({"bucket": "someone-elses-bucket"}, "bucket"),
    ({"model_prefix": "elsewhere/"}, "model_prefix"),
    ({"dataset": "s3://someone-elses-bucket/datasets/x/"}, "dataset"),
    ({"dataset": f"s3://{BUCKET}/not-datasets/x/"}, "dataset"),
])
def test_execution_cannot_point_outside_the_stack(aws: Counts, override: dict, field: str) -> None:
    """The stack's roles reach one bucket and one endpoint; say so instead of AccessDenied later."""
    with pytest.raises(InvalidInput, match=field):
        call(validate_input, run_input(**override))


def test_weights_default_to_imagenet_and_take_none(aws: Counts) -> None:
    assert call(validate_input, run_input())["training"]["weights"] == "imagenet"
    given = run_input(training={"weights": "none", "hyperparameters": {}})
    assert call(validate_input, given)["training"]["weights"] == "none"


def test_weights_file_must_exist_where_the_training_roles_read(aws: Counts) -> None:
    key = f"{CONFIG.model_prefix}backbones/resnet18.pth"
    common.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"weights")
    given = run_input(training={"weights": f"s3://{BUCKET}/{key}", "hyperparameters": {}})
    assert call(validate_input, given)["training"]["weights"] == f"s3://{BUCKET}/{key}"
    for weights, message in [
        ("imagenet1k", "training.weights must be one of"),
        (f"s3://{BUCKET}/{CONFIG.model_prefix}backbones/", "training.weights must be one of"),
        (f"s3://elsewhere/{key}", "the training roles read only there"),
        (f"s3://{BUCKET}/private/resnet18.pth", "the training roles read only there"),
        (f"s3://{BUCKET}/{CONFIG.model_prefix}backbones/missing.pth", "does not exist"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            call(validate_input, run_input(training={"weights": weights, "hyperparameters": {}}))
