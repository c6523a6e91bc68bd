"""The moto 5.2 facts behind how the local deploy handles the handlers' layer
(``infra_scripts/cfn/local_gaps.py``) and where the local cloud finds a function's layers. If
one fails after a moto upgrade, the message says what to adapt."""

from __future__ import annotations

import inspect

import boto3
from moto import mock_aws

from infra_scripts.packaging import deterministic_zip

REGION, ACCOUNT = "us-east-1", "123456789012"


def test_cloudformation_layer_versions_have_no_physical_id_update_or_delete() -> None:
    """Why local_gaps publishes layer versions through the Lambda API: a Ref to moto's
    LayerVersion yields the Python object (clean_json falls back to it without a
    physical_resource_id), a changed one cannot be updated and a deleted stack leaves it."""
    from moto.awslambda.models import LayerVersion

    assert not hasattr(LayerVersion, "physical_resource_id"), "moto's Ref to a layer may work now"
    assert hasattr(LayerVersion.update_from_cloudformation_json, "__isabstractmethod__")
    assert hasattr(LayerVersion.delete_from_cloudformation_json, "__isabstractmethod__")


def test_cloudformation_functions_ignore_layers_on_create() -> None:
    """Why local_gaps.apply_function_layers sets them after the change set."""
    from moto.awslambda.models import LambdaFunction

    source = inspect.getsource(LambdaFunction.create_from_cloudformation_json)
    assert '"Layers"' not in source, "moto now creates functions with Layers: drop that gap"


def layer_zip() -> bytes:
    return deterministic_zip([("python/dependency.py", b"VALUE = 1\n", 0o644)])


@mock_aws
def test_functions_name_their_layer_versions_which_hold_the_zip() -> None:
    """What the local cloud's sandbox reads: ``fn.layers`` is a list of {"Arn", "CodeSize"};
    ``backend.layers_versions_by_arn(arn).code_bytes`` is that version's zip."""
    from moto.awslambda.models import lambda_backends

    s3, lam = boto3.client("s3", region_name=REGION), boto3.client("lambda", region_name=REGION)
    s3.create_bucket(Bucket="code")
    s3.put_object(Bucket="code", Key="layer.zip", Body=layer_zip())
    arn = lam.publish_layer_version(LayerName="deps", Content={"S3Bucket": "code",
                                                               "S3Key": "layer.zip"},
                                    CompatibleRuntimes=["python3.11"],
                                    CompatibleArchitectures=["x86_64"])["LayerVersionArn"]
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(FunctionName="fn", Runtime="python3.11", Role=role, Handler="a.handler",
                        Code={"ZipFile": layer_zip()}, Layers=[arn])

    backend = lambda_backends[ACCOUNT][REGION]
    function = backend.get_function("fn", None)
    assert function.layers == [{"Arn": arn, "CodeSize": len(layer_zip())}]
    assert backend.layers_versions_by_arn(arn).code_bytes == layer_zip()
    assert function.code_bytes == layer_zip()
    lam.update_function_configuration(FunctionName="fn", Layers=[])
    assert backend.get_function("fn", None).layers == []
