"""Model artifacts for the serving benchmarks: a random-init network in training's layout, with
the serving code in ``code/`` as training's model.tar.gz carries it (latency ignores weights)."""

from __future__ import annotations

import io
import json

from infra_scripts.packaging import serving_files, tar_gz


def serving_model_files(arch: str, image_size: int, classes: list[str]) -> dict[str, bytes]:
    import torch

    from inference.network import build_network

    torch.manual_seed(0)
    weights = io.BytesIO()
    torch.save(build_network(arch, len(classes)).state_dict(), weights)
    files = {"model.pth": weights.getvalue(), "classes.json": json.dumps(classes).encode(),
             "hyperparameters.json": json.dumps({"arch": arch, "image_size": image_size}).encode()}
    files.update({f"code/{name}": body for name, body in serving_files().items()})
    return files


def serving_artifact(arch: str, image_size: int, classes: list[str]) -> bytes:
    """model.tar.gz bytes."""
    return tar_gz(serving_model_files(arch, image_size, classes))
