"""The model registry on the local cloud refuses what SageMaker refuses.

DeleteModelPackageGroup of a group that still holds versions: ConflictException
(https://docs.aws.amazon.com/sagemaker/latest/dg/API_DeleteModelPackageGroup.html lists it);
moto 5.2 has no delete at all (500), which the local cloud answers (sagemaker/registry.py).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from infra_scripts.localcloud.core.server import LocalCloud

REGISTRY = "infra_scripts.localcloud.sagemaker.registry"


@pytest.fixture
def sagemaker():
    with LocalCloud(extensions=[REGISTRY]) as cloud:
        yield cloud.boto3_client("sagemaker")


def test_a_group_with_versions_cannot_be_deleted_until_they_are(sagemaker) -> None:
    sagemaker.create_model_package_group(ModelPackageGroupName="g")
    arn = sagemaker.create_model_package(
        ModelPackageGroupName="g", ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "i", "ModelDataUrl": "s3://b/m.tar.gz"}],
                                "SupportedContentTypes": ["image/png"],
                                "SupportedResponseMIMETypes": ["application/json"]})["ModelPackageArn"]
    with pytest.raises(ClientError) as refused:
        sagemaker.delete_model_package_group(ModelPackageGroupName="g")
    assert refused.value.response["Error"]["Code"] == "ConflictException"
    sagemaker.delete_model_package(ModelPackageName=arn)
    assert sagemaker.list_model_packages(ModelPackageGroupName="g")["ModelPackageSummaryList"] == []
    sagemaker.delete_model_package_group(ModelPackageGroupName="g")
    with pytest.raises(ClientError, match="does not exist"):
        sagemaker.delete_model_package(ModelPackageName=arn)
