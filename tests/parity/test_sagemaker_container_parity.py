"""SageMaker's PyTorch containers, as the local cloud runs them: AWS's toolkits, fed only what AWS
would feed them.

- The inference container imports the user's code only from ``model.tar.gz``'s ``code/``
  ("Model Directory Structure", https://sagemaker.readthedocs.io/en/stable/frameworks/pytorch/using_pytorch.html#model-directory-structure;
  sagemaker-inference's ``environment.code_dir``): without it the model does not serve.
- It pip-installs ``code/requirements.txt`` before loading ("Using third-party libraries",
  https://sagemaker.readthedocs.io/en/stable/frameworks/pytorch/using_pytorch.html#using-third-party-libraries).
- A training job's artifact is what the script wrote to ``SM_MODEL_DIR`` (/opt/ml/model), nothing
  else ("How Amazon SageMaker Processes Training Output",
  https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-output.html);
  the training toolkit installs the source dir's ``requirements.txt``.
- Nothing of the project is importable inside either container: the endpoint runs where the
  project cannot be imported, and says so from inside.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import textwrap
import zipfile
from pathlib import Path

import pytest

from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from tests.localcloud import test_sagemaker_endpoints as endpoints
from tests.localcloud import test_sagemaker_training as training

pytestmark = pytest.mark.parity
PROJECT_MODULES = ("training", "inference", "handlers", "infra_scripts", "statemachine", "moto",
                   "stepfunctions", "sagemaker")

# A model whose code/ reports, from inside the container, what it can import and where it runs.
PROBE_INFERENCE = textwrap.dedent('''
    import importlib, json, os, sys

    def model_fn(model_dir):
        found = {}
        for name in PROJECT_MODULES:
            try:
                importlib.import_module(name)
                found[name] = True
            except ImportError:
                found[name] = False
        try:
            import stepml_probe
            probe = stepml_probe.VALUE
        except ImportError:
            probe = None
        return {"importable": found, "probe": probe, "cwd": os.getcwd(), "model_dir": model_dir,
                "sys_path": sys.path, "executable": sys.executable}

    def input_fn(body, content_type):
        return body

    def predict_fn(data, model):
        return model

    def output_fn(prediction, accept):
        return json.dumps(prediction)
''').replace("PROJECT_MODULES", repr(PROJECT_MODULES))


def wheel(name: str, version: str, module_text: str) -> tuple[str, bytes]:
    """A pure-Python wheel built by hand (no build backend, so nothing is downloaded)."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": module_text.encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: stepml-tests\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n",
    }
    record = []
    for path, body in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(body)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, body in files.items():
            archive.writestr(path, body)
    return f"{module}-{version}-py3-none-any.whl", buffer.getvalue()


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local package index: pip inside the containers installs from it with no network."""
    directory = tmp_path_factory.mktemp("wheelhouse")
    filename, body = wheel("stepml-probe", "1.0", 'VALUE = "probe 1.0"\n')
    (directory / filename).write_bytes(body)
    return directory


def offline_pip(wheelhouse: Path) -> dict[str, str]:
    # pip reads its options from PIP_* variables; a container Environment passes them through.
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def cloud() -> LocalCloud:
    options = {"sagemaker_endpoints": {"startup_timeout_s": 60}}
    with LocalCloud(settings=LocalCloudSettings(options=options),
                    extensions=[endpoints.ENDPOINTS]) as running:
        yield running


def serve_probe(cloud: LocalCloud, name: str, code: dict[str, bytes],
                environment: dict[str, str]) -> dict:
    data = endpoints.tarball({**{f"code/{k}": v for k, v in code.items()}})
    endpoints.create_config(cloud, name, data=data, environment={
        **endpoints.SERVING_ENV, "SAGEMAKER_PROGRAM": "probe_entry.py", **environment})
    endpoints.client(cloud, "sagemaker").create_endpoint(EndpointName=name, EndpointConfigName=name)
    description = endpoints.wait_until_settled(cloud, name, timeout_s=90)
    assert description["EndpointStatus"] == "InService", description.get("FailureReason")
    response = endpoints.client(cloud, "sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=b"{}", ContentType="application/json")
    return json.loads(response["Body"].read())


def test_endpoint_imports_nothing_from_the_project_and_honours_requirements(
        cloud: LocalCloud, wheelhouse: Path) -> None:
    report = serve_probe(cloud, "probe", {"probe_entry.py": PROBE_INFERENCE.encode(),
                                          "requirements.txt": b"stepml-probe==1.0\n"},
                         offline_pip(wheelhouse))
    assert report["importable"] == {name: False for name in PROJECT_MODULES}
    root = Path(__file__).resolve().parents[2]
    # (the image links this venv's torch in by design: compare paths as the container sees them)
    assert not [entry for entry in report["sys_path"] if Path(entry).is_relative_to(root)]
    assert report["probe"] == "probe 1.0"  # code/requirements.txt was installed, then imported
    # The toolkit's working directory and model_dir: the instance's own /opt/ml/model.
    assert report["cwd"] == report["model_dir"] and report["model_dir"].endswith("/model")
    assert ".venv" not in report["executable"]


def test_requirements_install_failure_fails_the_endpoint(cloud: LocalCloud, wheelhouse: Path) -> None:
    name = "badreq"
    data = endpoints.tarball({"code/probe_entry.py": PROBE_INFERENCE.encode(),
                              "code/requirements.txt": b"stepml-not-there==9.9\n"})
    endpoints.create_config(cloud, name, data=data, environment={
        **endpoints.SERVING_ENV, "SAGEMAKER_PROGRAM": "probe_entry.py", **offline_pip(wheelhouse)})
    endpoints.client(cloud, "sagemaker").create_endpoint(EndpointName=name, EndpointConfigName=name)
    description = endpoints.wait_until_settled(cloud, name, timeout_s=90)
    assert description["EndpointStatus"] == "Failed"
    assert "failed to install required packages" in description["FailureReason"]


def test_model_without_code_does_not_serve() -> None:
    """Training's weights without code/: the toolkit falls back to its default model_fn, which
    wants a TorchScript model, and the container never passes /ping."""
    options = {"sagemaker_endpoints": {"startup_timeout_s": 15}}
    with LocalCloud(settings=LocalCloudSettings(options=options),
                    extensions=[endpoints.ENDPOINTS]) as cloud:
        endpoints.create_config(cloud, "nocode", data=endpoints.resnet_artifact(["a", "b"], code={}),
                                environment=endpoints.SERVING_ENV)
        endpoints.client(cloud, "sagemaker").create_endpoint(EndpointName="nocode",
                                                             EndpointConfigName="nocode")
        description = endpoints.wait_until_settled(cloud, "nocode", timeout_s=60)
        assert description["EndpointStatus"] == "Failed"
        assert "/ping" in description["FailureReason"]
        logs = "".join(p.read_text() for p in cloud.work_dir.rglob("*.stderr.log"))
        assert "Please ensure model is saved using torchscript" in logs


# -- training -------------------------------------------------------------------------------------
WRITES_ELSEWHERE = textwrap.dedent('''
    import os, pathlib, tempfile
    pathlib.Path("model.pth").write_bytes(b"in the working directory")
    pathlib.Path(tempfile.gettempdir(), "model.pth").write_bytes(b"in /tmp")
    pathlib.Path(os.environ["SM_MODEL_DIR"]).parent.joinpath("model.pth").write_bytes(b"beside")
    import stepml_probe, sys
    # One write per line: the toolkit relays the script's output in the chunks it was written.
    sys.stdout.write(f"probe: {stepml_probe.VALUE}\\n")
''')


def test_training_artifact_is_only_what_the_model_dir_holds(wheelhouse: Path) -> None:
    with LocalCloud(extensions=[training.EXTENSION]) as cloud:
        s3 = training.prepare_bucket(cloud)
        s3.put_object(Bucket=training.BUCKET, Key="data/x", Body=b"x")
        s3.put_object(Bucket=training.BUCKET, Key=training.SOURCE_KEY, Body=training.source_archive(
            {"stand_in_train.py": WRITES_ELSEWHERE, "requirements.txt": "stepml-probe==1.0\n"}))
        sagemaker = training.start_job(cloud, "job-elsewhere", Environment=offline_pip(wheelhouse))
        described = training.wait_done(sagemaker, "job-elsewhere")
        log = cloud.extensions["sagemaker.training"].log_text("job-elsewhere")
        assert described["TrainingJobStatus"] == "Completed", (described.get("FailureReason"), log)
        assert "probe: probe 1.0" in log  # the source dir's requirements.txt was installed
        assert training.read_model(cloud, described["ModelArtifacts"]["S3ModelArtifacts"]) == {}
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=training.BUCKET)["Contents"]]
        assert not [key for key in keys if key.endswith("model.pth")]


def test_training_source_dir_must_come_from_s3(tmp_path: Path) -> None:
    """A local directory as sagemaker_submit_directory would reach this machine's files; in a
    real training container that path does not exist. Refused before anything runs."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "stand_in_train.py").write_text("print('ran from the host')\n")
    with LocalCloud(extensions=[training.EXTENSION]) as cloud:
        training.prepare_bucket(cloud).put_object(Bucket=training.BUCKET, Key="data/x", Body=b"x")
        sagemaker = training.start_job(cloud, "job-hostdir", {
            "sagemaker_submit_directory": json.dumps(str(source))})
        described = training.wait_done(sagemaker, "job-hostdir")
        assert described["TrainingJobStatus"] == "Failed"
        assert described["FailureReason"].startswith("ClientError: sagemaker_submit_directory")
        assert "ran from the host" not in cloud.extensions["sagemaker.training"].log_text("job-hostdir")
