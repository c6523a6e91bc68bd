"""The SageMaker serving functions in-process: model_fn, input_fn, predict_fn, output_fn."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from inference import inference as serving
from inference.errors import InferenceError
from inference.network import ModelLoadError, load_model
from tests.inference.helpers import CLASSES, b64, image_bytes, write_artifact


def _error(call, *args) -> InferenceError:
    with pytest.raises(InferenceError) as caught:
        call(*args)
    return caught.value


# --------------------------------------------------------------------------- model_fn
def test_model_fn_loads_eval_model_with_classes(model) -> None:
    assert model.classes == CLASSES
    assert model.arch == "resnet18" and model.image_size == 64
    assert not model.net.training
    assert len(model.version) == 12
    assert torch.get_num_threads() >= 1


def test_model_fn_accepts_dict_classes_and_ddp_prefix(tmp_path: Path) -> None:
    root = write_artifact(tmp_path, classes={"0": "a", "1": "b"}, num_classes=2,
                          prefix="module.")
    model = load_model(root)
    assert model.classes == ["a", "b"]


def test_model_fn_defaults_without_hyperparameters(tmp_path: Path) -> None:
    root = write_artifact(tmp_path)
    (root / "hyperparameters.json").unlink()
    model = load_model(root)
    assert (model.arch, model.image_size) == ("resnet18", 64)


def test_model_fn_reads_sagemaker_string_hyperparameters(tmp_path: Path) -> None:
    root = write_artifact(tmp_path, image_size=48)
    (root / "hyperparameters.json").write_text(json.dumps({"arch": '"resnet18"',
                                                           "image_size": "48"}))
    assert load_model(root).image_size == 48


@pytest.mark.parametrize("breakage, expected", [
    (lambda root: (root / "model.pth").unlink(), "model.pth"),
    (lambda root: (root / "classes.json").write_text('["only-one"]'), "1 classes"),
    (lambda root: (root / "classes.json").write_text("{not json"), "cannot read"),
    (lambda root: (root / "hyperparameters.json").write_text('{"arch": "vgg11"}'), "vgg11"),
    (lambda root: (root / "hyperparameters.json").write_text('{"arch": "resnet34"}'),
     "does not match resnet34"),
    (lambda root: (root / "model.pth").write_bytes(b"garbage"), "cannot read"),
])
def test_model_fn_names_the_broken_file(tmp_path: Path, breakage, expected: str) -> None:
    root = write_artifact(tmp_path)
    breakage(root)
    with pytest.raises(ModelLoadError, match=expected):
        load_model(root)


# --------------------------------------------------------------------------- input_fn
@pytest.mark.parametrize("content_type, fmt", [
    ("image/jpeg", "JPEG"), ("image/png", "PNG"), ("application/x-image", "JPEG"),
    ("application/x-image", "PNG"), ("image/jpeg; charset=binary", "JPEG"),
])
def test_input_fn_raw_image_types(content_type: str, fmt: str) -> None:
    image = serving.input_fn(image_bytes(fmt), content_type)
    assert isinstance(image, Image.Image) and image.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_input_fn_converts_modes_to_rgb(mode: str) -> None:
    assert serving.input_fn(image_bytes("PNG", mode=mode), "image/png").mode == "RGB"


def test_input_fn_json_base64_and_data_uri(jpeg: bytes) -> None:
    body = json.dumps({"image": b64(jpeg)})
    assert serving.input_fn(body, "application/json").mode == "RGB"
    uri = json.dumps({"image": "data:image/jpeg;base64," + b64(jpeg)})
    assert serving.input_fn(uri.encode(), "application/json; charset=utf-8").mode == "RGB"


def test_input_fn_json_url_uses_safe_fetch(monkeypatch: pytest.MonkeyPatch, png: bytes) -> None:
    seen = []
    monkeypatch.setattr(serving, "fetch", lambda url, limits: seen.append(url) or png)
    body = json.dumps({"url": "s3://bucket/cat.png"})
    assert serving.input_fn(body, "application/json").mode == "RGB"
    assert seen == ["s3://bucket/cat.png"]


@pytest.mark.parametrize("body, content_type, status, code", [
    (b"", "image/jpeg", 400, "EmptyBody"),
    (None, "application/json", 400, "EmptyBody"),
    (b"abc", "text/plain", 415, "UnsupportedContentType"),
    (b"abc", None, 415, "UnsupportedContentType"),
    (b"{bad", "application/json", 400, "InvalidJSON"),
    (b"[1, 2]", "application/json", 400, "InvalidJSON"),
    (b"\xff\xfe", "application/json", 400, "InvalidJSON"),
    (b'{"name": "cat"}', "application/json", 400, "MissingField"),
    (b'{"url": "https://a.example/x", "image": "AAAA"}', "application/json", 400,
     "InvalidField"),
    (b'{"url": 42}', "application/json", 400, "InvalidField"),
    (b'{"image": ""}', "application/json", 400, "InvalidField"),
    (b'{"image": "not base64 !!"}', "application/json", 400, "InvalidBase64"),
    (b'{"image": "aGVsbG8="}', "application/json", 400, "InvalidImage"),
    (b"hello", "image/png", 400, "InvalidImage"),
    (b'{"url": "file:///etc/passwd"}', "application/json", 422, "URLRefused"),
])
def test_input_fn_rejects(body, content_type, status: int, code: str) -> None:
    err = _error(serving.input_fn, body, content_type)
    assert (err.status, err.code) == (status, code), err.reason
    assert json.loads(err.to_json()) == {"error": code, "message": err.reason}
    assert err.message == err.to_json().decode()  # the body sagemaker-inference answers with


def test_input_fn_caps_raw_and_base64_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPML_MAX_IMAGE_BYTES", "1000")
    assert _error(serving.input_fn, b"\0" * 1001, "image/png").status == 413
    err = _error(serving.input_fn, json.dumps({"image": b64(b"\0" * 2000)}), "application/json")
    assert (err.status, err.code) == (413, "PayloadTooLarge")


# --------------------------------------------------------------------------- predict/output
def test_predict_fn_image_and_tensor_agree(model, jpeg: bytes) -> None:
    image = serving.input_fn(jpeg, "image/jpeg")
    from_image = serving.predict_fn(image, model)
    tensor = model.transform(image)
    for data in (tensor, tensor.unsqueeze(0)):
        assert torch.allclose(serving.predict_fn(data, model).probabilities,
                              from_image.probabilities)
    assert torch.isclose(from_image.probabilities.sum(), torch.tensor(1.0))
    assert _error(serving.predict_fn, torch.zeros(2, 3, 64, 64), model).status == 400


def test_output_fn_top_k_sorted_json(model, jpeg: bytes, monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    prediction = serving.predict_fn(serving.input_fn(jpeg, "image/jpeg"), model)
    body, content_type = serving.output_fn(prediction, "application/json")
    document = json.loads(body)
    assert content_type == "application/json"
    assert [p["label"] for p in document["predictions"]] == [
        CLASSES[p["index"]] for p in document["predictions"]]
    probabilities = [p["probability"] for p in document["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == 3
    assert document["model"]["arch"] == "resnet18"
    monkeypatch.setenv("STEPML_TOP_K", "1")
    assert len(json.loads(serving.output_fn(prediction, None)[0])["predictions"]) == 1


@pytest.mark.parametrize("accept, ok", [
    (None, True), ("", True), ("*/*", True), ("application/*", True),
    ("text/html, application/json;q=0.5", True), ("application/json; charset=utf-8", True),
    ("text/csv", False), ("image/png", False), ("application/json;q=0", False),
])
def test_output_fn_honours_accept(model, jpeg: bytes, accept: str | None, ok: bool) -> None:
    prediction = serving.predict_fn(serving.input_fn(jpeg, "image/jpeg"), model)
    if ok:
        assert serving.output_fn(prediction, accept)[1] == "application/json"
    else:
        err = _error(serving.output_fn, prediction, accept)
        assert (err.status, err.code) == (406, "NotAcceptable")
