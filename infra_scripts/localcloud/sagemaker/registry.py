"""SageMaker model registry calls moto 5.2 lacks: DeleteModelPackage and DeleteModelPackageGroup.

moto keeps groups and packages (Create/Describe/List/Update); deleting them answers 500 there.
Here a package is removed by name or ARN, and a group only once it holds no package: AWS's
DeleteModelPackageGroup answers ConflictException otherwise (API_DeleteModelPackageGroup.html
lists it), which is why the stack keeps its group (DeletionPolicy Retain) and ``stepml destroy
--delete-data`` deletes the versions first.
"""

from __future__ import annotations

import json
from typing import Any

from moto.sagemaker.models import SageMakerModelBackend
from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.core.requests import request_region
from infra_scripts.localcloud.core.server import LocalCloud, aws_error, json_response, match_target


def _backend(cloud: LocalCloud, request: Request) -> SageMakerModelBackend:
    return cloud.backend("sagemaker", request_region(request, cloud.region))


def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def delete_package(cloud: LocalCloud, request: Request) -> Response:
    backend, name = _backend(cloud, request), str(_body(request).get("ModelPackageName", ""))
    arn = backend.model_package_name_mapping.get(name, name)
    package = backend.model_packages.pop(arn, None)
    if package is None:
        return aws_error(400, "ValidationException", f"Model package {name} does not exist.")
    for key in [k for k, v in backend.model_package_name_mapping.items() if v == arn]:
        del backend.model_package_name_mapping[key]
    return json_response(200, {})


def delete_group(cloud: LocalCloud, request: Request) -> Response:
    backend, name = _backend(cloud, request), str(_body(request).get("ModelPackageGroupName", ""))
    name = name.rsplit("/", 1)[-1]
    if name not in backend.model_package_groups:
        return aws_error(400, "ValidationException", f"ModelPackageGroup {name} does not exist.")
    versions = [p for p in backend.model_packages.values() if p.model_package_group_name == name]
    if versions:
        return aws_error(400, "ConflictException",
                         f"Model package group {name} contains {len(versions)} model package(s); "
                         "delete them first.")
    del backend.model_package_groups[name]
    return json_response(200, {})


def install(cloud: LocalCloud) -> None:
    cloud.add_route(match_target("SageMaker.DeleteModelPackage"), lambda r: delete_package(cloud, r))
    cloud.add_route(match_target("SageMaker.DeleteModelPackageGroup"), lambda r: delete_group(cloud, r))
