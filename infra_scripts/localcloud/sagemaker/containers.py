"""The PyTorch framework containers SageMaker runs, as local environments.

AWS's PyTorch training and inference images (the Deep Learning Containers) are a Python with the
framework (torch, torchvision, Pillow, numpy) and AWS's container toolkits: ``sagemaker-training``
with ``sagemaker-pytorch-training`` runs a training job's
entry point, ``sagemaker-inference`` with ``sagemaker-pytorch-inference``
serves a model. Here the *image* is a cached virtualenv holding exactly that:

- the toolkits (and their own dependencies, boto3 included), installed from PyPI at the versions
  pinned below, by pip, once;
- the framework, linked from the environment running the local cloud (pip caps torch at the
  version installed here; the links keep the 1 GB wheel on disk once).

Nothing of the project is in it. Each job host and each endpoint instance runs in its own *thin
container*: a three-file virtualenv whose site-packages points at the image's, so what a job's or
a model's ``requirements.txt`` installs lands in that one container and vanishes with it, as a
container's writable layer does, and the shared image is never changed.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from infra_scripts.localcloud.core.toolchains import (
    ToolchainUnavailable,
    build_once,
    cache_root,
    find_interpreter,
    is_built,
    pins_key,
    run_pip,
)

# https://pypi.org/project/sagemaker-training/ , sagemaker-inference/ , sagemaker-pytorch-inference/
TOOLKIT_PACKAGES = (
    "sagemaker-training==5.1.4",
    "sagemaker-pytorch-training==3.0.0",  # the training image's framework module
    "sagemaker-inference==1.10.1",
    "sagemaker-pytorch-inference==2.0.25",
    "boto3==1.40.6",
    "botocore==1.40.6",
    "pip==26.1.2",  # the toolkits install requirements.txt with `python -m pip`
)
# What the DLC's framework layer holds; each distribution's own requirements come along.
FRAMEWORK_ROOTS = ("torch", "torchvision", "pillow", "numpy", "setuptools")
# Set by the DLC's Dockerfiles for every process in the container.
CONTAINER_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
SITE = Path("lib") / f"python{PYTHON_VERSION}" / "site-packages"


@dataclass(frozen=True)
class ContainerImage:
    root: Path  # the image's virtualenv (used for its site-packages only)
    interpreter: str  # the CPython that runs every container

    @property
    def site_packages(self) -> Path:
        return self.root / SITE

    def container(self, directory: Path) -> str:
        """Make ``directory`` a fresh container on this image; returns its ``python``.

        A virtualenv is a ``pyvenv.cfg`` beside ``bin/python``; its site-packages holds one
        ``.pth`` that adds the image's site-packages (with their own ``.pth`` files) after its own.
        """
        bin_dir = directory / "bin"
        site = directory / SITE
        bin_dir.mkdir(parents=True, exist_ok=True)
        site.mkdir(parents=True, exist_ok=True)
        home = Path(self.interpreter).parent
        (directory / "pyvenv.cfg").write_text(
            f"home = {home}\ninclude-system-site-packages = false\nversion = {sys.version.split()[0]}\n")
        python = bin_dir / "python"
        if not python.exists():
            python.symlink_to(self.interpreter)
        (site / "_image.pth").write_text(f"import site; site.addsitedir({str(self.site_packages)!r})\n")
        return str(python)


def framework_distributions(roots: tuple[str, ...] = FRAMEWORK_ROOTS) -> list[metadata.Distribution]:
    """The installed distributions the framework needs, following their requirements."""
    found: dict[str, metadata.Distribution] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform requirement this machine does not have
        found[key] = distribution
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return sorted(found.values(), key=lambda d: d.metadata["Name"].lower())


def _top_level_entries(distribution: metadata.Distribution) -> set[str]:
    """What a distribution puts directly in site-packages (packages, modules, its dist-info)."""
    entries = set()
    for file in distribution.files or []:
        parts = Path(str(file)).parts
        if parts and parts[0] != ".." and not str(file).endswith(".pth"):
            entries.add(parts[0])
    return entries


def _link_framework(site: Path, distributions: list[metadata.Distribution]) -> None:
    for distribution in distributions:
        source_site = Path(str(distribution.locate_file("")))
        for entry in _top_level_entries(distribution):
            source = source_site / entry
            if source.exists() and not (site / entry).exists():
                (site / entry).symlink_to(source)


def _fill(staging: Path, interpreter: str, distributions: list[metadata.Distribution]) -> None:
    root = staging / "image"
    subprocess.run([interpreter, "-m", "venv", "--without-pip", str(root)], check=True)
    _link_framework(root / SITE, distributions)
    # pip sees the linked framework as installed and resolves the toolkits around it.
    run_pip(["--python", str(root / "bin" / "python"), "install", "--quiet",
             "--no-warn-script-location", *TOOLKIT_PACKAGES], "the SageMaker PyTorch container image")


def pytorch_image(build: bool = True) -> ContainerImage:
    """The cached image, built first if ``build`` (one builder at a time, atomically)."""
    interpreter = find_interpreter()
    distributions = framework_distributions()
    framework = {d.metadata["Name"]: d.version for d in distributions}
    # The links point into this environment: another venv (a clean clone) gets its own image.
    key = pins_key({"toolkits": TOOLKIT_PACKAGES, "framework": framework, "python": interpreter,
                    "from": str(Path(str(distributions[0].locate_file(""))).resolve())})
    target = cache_root() / "sagemaker-containers" / f"pytorch-{framework.get('torch', 'none')}-{key}"
    if not is_built(target):
        if not build:
            raise ToolchainUnavailable(f"SageMaker PyTorch container image not built at {target}; "
                                       "run `make sagemaker-containers`")
        build_once(target, lambda staging: _fill(staging, interpreter, distributions),
                   "\n".join(TOOLKIT_PACKAGES))
    return ContainerImage(target / "image", interpreter)


def main() -> None:
    """``python -m infra_scripts.localcloud.sagemaker.containers``: build the cache (make does)."""
    image = pytorch_image()
    print(f"SageMaker PyTorch container image: {image.root}")


if __name__ == "__main__":
    main()
