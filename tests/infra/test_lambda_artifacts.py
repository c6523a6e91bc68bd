"""The handlers' deployment artifacts: the code zip plus the dependencies layer hold everything
the handlers import beyond AWS's python3.11 runtime, byte-deterministic, built once and cached,
and within Lambda's size limits. The layer comes from the on-disk cache (``make
lambda-artifacts`` prebuilds it), so these tests are offline.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from infra_scripts import packaging
from infra_scripts.cfn.template import DEPENDENCIES_LAYER, build_template
from statemachine.config import PipelineConfig

PIN = re.compile(r"^([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)$")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    lines = [line.strip() for line in packaging.HANDLERS_REQUIREMENTS.read_text().splitlines()]
    found = {}
    for line in lines:
        if line and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"not pinned with ==: {line!r}"
            found[normalized(match[1])] = match[2]
    return found


@pytest.fixture(scope="module")
def layer() -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(packaging.handler_dependencies_layer()))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, layer: zipfile.ZipFile) -> dict[str, Path]:
    """Lambda's /var/task, /opt and the runtime's boto3, each its own directory."""
    root = tmp_path_factory.mktemp("lambda")
    zipfile.ZipFile(io.BytesIO(packaging.handlers_zip())).extractall(root / "task")
    layer.extractall(root / "opt")
    runtime = root / "runtime"
    runtime.mkdir()
    for name in runtime_modules():
        spec = importlib.util.find_spec(name)
        assert spec and spec.origin, name
        source = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
        (runtime / source.name).symlink_to(source)
    return {"task": root / "task", "layer": root / "opt" / packaging.LAYER_ROOT, "runtime": runtime}


# -- what the handlers import -----------------------------------------------------------------------
def handler_imports() -> set[str]:
    """Top-level names of every absolute import in handlers/*.py, at any depth."""
    found = set()
    for path in sorted((packaging.PROJECT_ROOT / "handlers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"handlers"}


def runtime_distributions() -> set[str]:
    """boto3 and what it needs: the only third-party code in AWS's python3.11 runtime."""
    found, todo = set(), ["boto3"]
    while todo:
        name = normalized(todo.pop())
        if name in found:
            continue
        found.add(name)
        for requirement in importlib.metadata.requires(name) or []:
            if "extra ==" not in requirement:
                todo.append(re.match(r"[A-Za-z0-9._-]+", requirement)[0])
    return found


def runtime_modules() -> set[str]:
    wanted = runtime_distributions()
    return {module for module, distributions in importlib.metadata.packages_distributions().items()
            if any(normalized(d) in wanted for d in distributions) and module.isidentifier()}


def layer_distributions(layer: zipfile.ZipFile) -> dict[str, str]:
    """Distribution → version of every .dist-info the layer holds."""
    found = {}
    for name in layer.namelist():
        parts = PurePosixPath(name).parts
        if len(parts) == 3 and parts[1].endswith(".dist-info") and parts[2] == "METADATA":
            distribution, version = parts[1].removesuffix(".dist-info").rsplit("-", 1)
            found[normalized(distribution)] = version
    return found


def layer_modules(layer: zipfile.ZipFile) -> set[str]:
    tops = {PurePosixPath(name).parts[1] for name in layer.namelist()}
    return {top.removesuffix(".py") for top in tops if not top.endswith(".dist-info")}


# -- requirements and layer contents ----------------------------------------------------------------
def test_requirements_pin_exactly_what_the_layer_holds(layer: zipfile.ZipFile) -> None:
    """Every package pinned, and no transitive dependency left to the resolver."""
    assert layer_distributions(layer) == pins()


def test_the_pinned_powertools_is_the_one_the_tests_run_with() -> None:
    assert pins()["aws-lambda-powertools"] == importlib.metadata.version("aws-lambda-powertools")


def test_layer_holds_powertools_where_lambda_looks_and_nothing_build_specific(
        layer: zipfile.ZipFile) -> None:
    names = layer.namelist()
    assert f"{packaging.LAYER_ROOT}/aws_lambda_powertools/__init__.py" in names
    assert all(name.startswith(f"{packaging.LAYER_ROOT}/") for name in names)
    assert not [n for n in names if n.endswith("/RECORD")]
    assert f"{packaging.LAYER_ROOT}/aws_lambda_powertools/__pycache__/__init__.cpython-311.pyc" in names
    assert not [n for n in names if n.startswith(f"{packaging.LAYER_ROOT}/bin/")]
    assert not layer_modules(layer) & {"boto3", "botocore"}  # never shadow the runtime's SDK


def test_every_third_party_import_is_in_the_runtime_or_the_layer(layer: zipfile.ZipFile) -> None:
    imported = handler_imports()
    assert "aws_lambda_powertools" in imported
    missing = imported - runtime_modules() - layer_modules(layer)
    assert not missing, f"handlers import {missing}: add them to handlers/requirements.txt"


def test_every_handler_imports_from_code_layer_and_runtime_alone(sandbox: dict[str, Path]) -> None:
    """Lambda's sys.path order (/var/task, /opt/python, the runtime) and nothing else: no venv."""
    modules = sorted(p.stem for p in (sandbox["task"] / "handlers").glob("*.py"))
    paths = [str(sandbox["task"]), str(sandbox["layer"]), str(sandbox["runtime"])]
    script = (f"import importlib, sys\nsys.path[:0] = {paths!r}\n"
              f"for name in {modules!r}: importlib.import_module('handlers.' + name)\n"
              "import aws_lambda_powertools as p\nprint(p.__file__)\n")
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1"}
    result = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(sandbox["layer"]))


# -- determinism and the cache ----------------------------------------------------------------------
def test_layer_zip_is_a_function_of_its_files_alone(tmp_path: Path, layer: zipfile.ZipFile) -> None:
    """Re-zipping the extracted layer, with other timestamps and modes, gives the same bytes."""
    layer.extractall(tmp_path)
    for number, path in enumerate(sorted(p for p in tmp_path.rglob("*") if p.is_file())):
        os.utime(path, (number, 1_000_000 + number))
        path.chmod(0o600 if number % 2 else 0o664)
    (tmp_path / packaging.LAYER_ROOT / "bin").mkdir()
    (tmp_path / packaging.LAYER_ROOT / "bin" / "tool").write_text("#!/somewhere/python\n")
    assert packaging.zip_tree(tmp_path) == packaging.handler_dependencies_layer()


def test_layer_bytecode_is_hash_based_and_named_as_lambda_imports_it(layer: zipfile.ZipFile) -> None:
    """Unchecked hash-based .pyc (PEP 552 flags == 1) carry no timestamp, and each code object's
    file name is the module's path under Lambda's /opt, whatever directory built it."""
    import marshal

    compiled = [n for n in layer.namelist() if n.endswith(".pyc")]
    assert len(compiled) > 100
    header = layer.read(compiled[0])
    assert int.from_bytes(header[4:8], "little") == 1
    code = marshal.loads(layer.read(f"{packaging.LAYER_ROOT}/aws_lambda_powertools/__pycache__/"
                                    "__init__.cpython-311.pyc")[16:])
    assert code.co_filename == "/opt/python/aws_lambda_powertools/__init__.py"


def test_compiling_the_same_sources_twice_gives_the_same_bytecode(tmp_path: Path,
                                                                   layer: zipfile.ZipFile) -> None:
    sources = [n for n in layer.namelist() if n.endswith(".py")]
    for build in ("a", "b"):
        for name in sources:
            target = tmp_path / build / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(layer.read(name))
        packaging.compile_for_lambda(tmp_path / build / packaging.LAYER_ROOT)
    first = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*.pyc")}
    second = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*.pyc")}
    assert first and first == second


def test_handlers_zip_is_deterministic() -> None:
    assert packaging.handlers_zip() == packaging.handlers_zip()
    archive = zipfile.ZipFile(io.BytesIO(packaging.handlers_zip()))
    assert {info.date_time for info in archive.infolist()} == {packaging.FIXED_TIME}
    assert "handlers/common.py" in archive.namelist()


@pytest.fixture
def fake_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """A private cache and a pip that installs one module and records each call."""
    monkeypatch.setenv("STEPML_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[Path] = []

    def install(requirements: Path, target: Path) -> None:
        calls.append(requirements)
        target.mkdir(parents=True)
        (target / "dependency.py").write_text(requirements.read_text())

    monkeypatch.setattr(packaging, "pip_install_for_lambda", install)
    return calls


def test_layer_is_built_once_per_requirements_then_read_from_the_cache(
        tmp_path: Path, fake_pip: list[Path]) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("dependency==1\n")
    first = packaging.handler_dependencies_layer(requirements)
    assert packaging.handler_dependencies_layer(requirements) == first and len(fake_pip) == 1
    cached = packaging.layer_cache_path(requirements)
    assert cached.parent == tmp_path / "cache" / "layers" and cached.read_bytes() == first
    assert not list(cached.parent.glob("*.tmp"))
    requirements.write_text("dependency==2\n")
    assert packaging.handler_dependencies_layer(requirements) != first and len(fake_pip) == 2


def test_cache_key_covers_requirements_platform_and_format(monkeypatch: pytest.MonkeyPatch) -> None:
    key = packaging.layer_cache_key(b"a==1\n")
    assert key == packaging.layer_cache_key(b"a==1\n") != packaging.layer_cache_key(b"a==2\n")
    monkeypatch.setattr(packaging, "LAYER_PLATFORM", (*packaging.LAYER_PLATFORM[:-1], "x"))
    assert packaging.layer_cache_key(b"a==1\n") != key
    monkeypatch.undo()
    monkeypatch.setattr(packaging, "LAYER_FORMAT", "next")
    assert packaging.layer_cache_key(b"a==1\n") != key


def test_a_failed_build_caches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPML_CACHE_DIR", str(tmp_path / "cache"))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("no-such-package-anywhere==0\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline, and this package exists nowhere
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(packaging.LayerBuildError, match="package index once"):
        packaging.handler_dependencies_layer(requirements)
    assert not (tmp_path / "cache" / "layers").exists() or \
        not list((tmp_path / "cache" / "layers").iterdir())


@pytest.mark.skipif(not os.environ.get("STEPML_LAYER_REBUILD"),
                    reason="needs a package index: set STEPML_LAYER_REBUILD=1")
def test_a_fresh_build_gives_the_cached_bytes() -> None:
    assert packaging.build_layer() == packaging.handler_dependencies_layer()


# -- sizes ------------------------------------------------------------------------------------------
def test_code_and_layer_fit_lambdas_limits() -> None:
    report = packaging.lambda_size_report()
    assert [a.name for a in report.archives] == ["handlers code", "dependencies layer"]
    assert report.problems() == [], report.lines()
    assert all(0 < a.zipped < a.unzipped for a in report.archives)
    assert packaging.UNZIPPED_LIMIT == 262_144_000 and packaging.ZIPPED_LIMIT == 52_428_800


def test_size_check_flags_what_is_over() -> None:
    big = packaging.ArchiveSize("layer", packaging.ZIPPED_LIMIT + 1, packaging.UNZIPPED_LIMIT)
    small = packaging.ArchiveSize("code", 10, 20)
    problems = packaging.SizeReport((small, big)).problems()
    assert len(problems) == 2 and "layer" in problems[0] and "unzipped" in problems[1]
    assert packaging.SizeReport((small,)).problems() == []


# -- the template -----------------------------------------------------------------------------------
def test_every_function_uses_the_layer_built_for_its_runtime_and_architecture() -> None:
    resources = build_template(PipelineConfig())["Resources"]
    layer = resources[DEPENDENCIES_LAYER]["Properties"]
    assert layer["Content"]["S3Key"] == {"Ref": "HandlerDependenciesKey"}
    functions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) >= 16
    for function in functions:
        assert function["Layers"] == [{"Ref": DEPENDENCIES_LAYER}], function["Handler"]
        assert [function["Runtime"]] == layer["CompatibleRuntimes"] == ["python3.11"]
        assert function["Architectures"] == layer["CompatibleArchitectures"] == ["x86_64"]
