"""Public Deep Learning AMI parameters on the local cloud: a stand-in image behind each one.

AWS publishes every Deep Learning AMI's id under a public SSM parameter,
``/aws/service/deeplearning/ami/$architecture/$ami_type/latest/ami-id``
(https://docs.aws.amazon.com/dlami/latest/devguide/find-dlami-id.html); moto ships only the
Amazon Linux and ECS ones. The first lookup of such a parameter in an account and region
registers a public stand-in image there (``DescribeImages`` answers for it: root device
``/dev/xvda``, EBS, the snapshot size moto gives every image) and serves its id, as the real
parameter would; a name outside that pattern stays ``ParameterNotFound``.

The local cloud's instances never boot this image: their user data runs with the os-setup
block skipped (``ec2/instances.py``). ``tests/localcloud/test_ec2_user_data_os.py`` runs the
os-setup block against a stand-in of the image's ``/opt/pytorch`` instead.

moto seams (pinned moto 5.2): ``moto.ssm.models.ParameterDict._check_loading_status`` (the lazy
loader moto uses for its own public parameters), ``moto.ssm.models.Parameter``,
``moto.ec2.models.amis.Ami`` and the backend's ``amis`` dict.
"""

from __future__ import annotations

import re
import time
from typing import Any

PUBLIC_DLAMI = re.compile(r"/aws/service/deeplearning/ami/(x86_64|arm64)/([a-z0-9][a-z0-9.-]*)/latest/ami-id")
ROOT_DEVICE = "/dev/xvda"


def _stand_in_image(account_id: str, region: str, architecture: str, ami_type: str) -> str:
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ec2.utils import random_ami_id

    backend = ec2_backends[account_id][region]
    ami = Ami(backend, random_ami_id(), name=f"{ami_type} (local cloud stand-in)",
              description=f"local cloud stand-in for the public DLAMI {ami_type}",
              owner_alias="amazon", public=True, architecture=architecture,
              virtualization_type="hvm", root_device_type="ebs", root_device_name=ROOT_DEVICE,
              hypervisor="xen", region_name=f"{region}a")
    backend.amis[ami.id] = ami
    return ami.id


def _wrap_loading(original: Any) -> Any:
    def check_loading_status(parameters: Any, key: str) -> None:
        original(parameters, key)
        match = PUBLIC_DLAMI.fullmatch(str(key or ""))
        name = str(key)
        if not match or dict.__contains__(parameters, name):
            return
        from moto.ssm.models import Parameter

        image = _stand_in_image(parameters.account_id, parameters.region_name, *match.groups())
        # dict's own setdefault: ParameterDict's __getitem__ would call this loader again
        parameters.setdefault(name, []).append(Parameter(
            account_id=parameters.account_id, name=name, value=image, parameter_type="String",
            description=None, allowed_pattern=None, keyid=None, last_modified_date=time.time(),
            version=1, data_type="text"))  # what moto's own public AMI parameters carry

    return check_loading_status


def install_public_dlamis(patch: Any) -> None:
    """``patch(target, name, replacement)``: the local cloud's ``cloud.patch`` or a test's
    ``monkeypatch.setattr``."""
    from moto.ssm.models import ParameterDict

    patch(ParameterDict, "_check_loading_status", _wrap_loading(ParameterDict._check_loading_status))
