"""The local cloud: moto's server plus real local compute behind the same AWS APIs.

moto serves every API; each extension module (listed in ``DEFAULT_EXTENSIONS``) adds real
behaviour to a few of them, either by answering a request before moto sees it (``add_route``)
or by wrapping a moto backend method (``patch``). Extensions receive the running
``LocalCloud`` in ``install(cloud)`` and register cleanup with ``on_stop``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

DEFAULT_REGION = "us-east-1"
INTERPRETER_LOGGER = "moto.stepfunctions.parser"
# The credentials of the clouds running in this process, by URL: in-process clients (the
# deployer, `stepml run`) find them here; another process gets them from `stepml local-cloud`'s
# printed exports (or --env-file).
_RUNNING: dict[str, dict[str, str]] = {}


def new_credentials() -> dict[str, str]:
    """The account administrator's keys, made at each start (never a fixed, guessable pair)."""
    return {"AWS_ACCESS_KEY_ID": "LKIA" + secrets.token_hex(8).upper(),
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}


def credentials_for(endpoint_url: str) -> dict[str, str] | None:
    """The credentials of a cloud this process started at ``endpoint_url`` (127.0.0.1 or
    localhost), or None."""
    url = endpoint_url.rstrip("/")
    return _RUNNING.get(url) or _RUNNING.get(url.replace("//localhost:", "//127.0.0.1:"))

# Order matters only where one extension builds on another's routes.
DEFAULT_EXTENSIONS: tuple[str, ...] = (
    "infra_scripts.localcloud.iam.signatures",  # first: authenticates before any route
    "infra_scripts.localcloud.iam.enforcement",  # then authorizes
    "infra_scripts.localcloud.awslambda.runtime",
    "infra_scripts.localcloud.awslambda.limits",
    "infra_scripts.localcloud.awslambda.provisioned",
    "infra_scripts.localcloud.servicequotas.quotas",  # before sagemaker.endpoints' UpdateEndpoint
    "infra_scripts.localcloud.cloudwatch.metrics",
    "infra_scripts.localcloud.sagemaker.endpoints",
    "infra_scripts.localcloud.autoscaling.controller",  # needs sagemaker.endpoints
    "infra_scripts.localcloud.stepfunctions.redrive",
    "infra_scripts.localcloud.events.s3_events",
    "infra_scripts.localcloud.sagemaker.training",
    "infra_scripts.localcloud.sagemaker.hpo",  # needs sagemaker.training
    "infra_scripts.localcloud.sagemaker.registry",
    "infra_scripts.localcloud.ec2.instances",
)

PACKAGE = "infra_scripts.localcloud."

RouteMatcher = Callable[[Request], bool]


def extension_key(module_name: str) -> str:
    """``cloud.extensions`` key of an extension: its module path below the local cloud package
    (``awslambda.runtime``, ``sagemaker.training``), so two services' modules may share a name."""
    return module_name.removeprefix(PACKAGE)
RouteHandler = Callable[[Request], Response]


@dataclass
class LocalCloudSettings:
    """Knobs that make AWS's slow control loops observable in seconds on a laptop."""

    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    # Free-form per-extension options, e.g. {"autoscaling": {"period_s": 2}}.
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def option(self, extension: str, name: str, default: Any) -> Any:
        return self.options.get(extension, {}).get(name, default)


def match_target(*targets: str) -> RouteMatcher:
    """Match JSON-protocol calls by their ``X-Amz-Target`` (e.g. ``SageMaker.CreateEndpoint``)."""
    wanted = set(targets)
    return lambda request: request.headers.get("X-Amz-Target", "") in wanted


def match_path(method: str, pattern: str) -> RouteMatcher:
    """Match REST-protocol calls by HTTP method and a path regex."""
    import re

    compiled = re.compile(pattern)
    return lambda request: request.method == method and bool(compiled.fullmatch(request.path))


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers or {}, content_type="application/json"
    )


def aws_error(status: int, code: str, message: str, protocol: str = "json") -> Response:
    """An error in the shape botocore parses for JSON and REST-JSON services."""
    body = {"__type": code, "message": message, "Message": message}
    return json_response(status, body, {"x-amzn-ErrorType": code})


def protocol_error(request: Request, service: str, status: int, code: str, message: str) -> Response:
    """An error in the shape the request's protocol parses: JSON (X-Amz-Target services, Lambda,
    sagemaker-runtime), S3's XML, EC2's XML, or the query services' XML (IAM, STS, …)."""
    if request.headers.get("X-Amz-Target") or service == "lambda" or request.path.startswith(
            "/endpoints/"):
        return aws_error(status, code, message)
    text = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if service == "s3":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
                f"<Message>{text}</Message><RequestId>local</RequestId></Error>")
    elif service == "ec2":
        body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{text}"
                f"</Message></Error></Errors><RequestID>local</RequestID></Response>")
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
                f"<Message>{text}</Message></Error><RequestId>local</RequestId></ErrorResponse>")
    return Response(body, status=status, content_type="application/xml")


# Headers only browsers send (Fetch metadata, https://www.w3.org/TR/fetch-metadata/, and the
# Origin of cross-origin and POST requests); the SDKs, the CLI and moto's interpreter never do.
BROWSER_HEADERS = ("Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest")


class _Dispatcher:
    """WSGI app: refuse what no AWS client sends, then extension routes, moto for the rest."""

    def __init__(self, moto_app: Any) -> None:
        self.moto_app = moto_app
        self.routes: list[tuple[RouteMatcher, RouteHandler]] = []
        self.hosts: frozenset[str] = frozenset()  # set at start: this server's host:port names

    def refusal(self, request: Request) -> Response | None:
        """A browser page (any origin) or a request for another Host (DNS rebinding: a page on
        a name that resolves to 127.0.0.1) is refused before anything runs."""
        if any(name in request.headers for name in BROWSER_HEADERS):
            return aws_error(403, "AccessDenied", "The local cloud refuses requests from web "
                             "browsers: use an AWS SDK or the AWS CLI.")
        if self.hosts and request.host not in self.hosts:
            return aws_error(403, "AccessDenied", f"Host {request.host!r} is not this local "
                             f"cloud's ({', '.join(sorted(self.hosts))}).")
        return None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request(environ)
        refused = self.refusal(request)
        if refused is not None:
            return _with_request_id(refused)(environ, start_response)
        for matcher, handler in self.routes:
            if matcher(request):
                return _with_request_id(handler(request))(environ, start_response)
        return self.moto_app(environ, start_response)


def _with_request_id(response: Response) -> Response:
    """AWS stamps every answer with a request id; clients (moto's interpreter too) read it."""
    if "x-amzn-RequestId" not in response.headers:
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
    return response


def _disable_moto_cors() -> None:
    """moto's server answers every origin with permissive CORS (flask-cors) unless told not to;
    the local cloud answers none (browsers are refused above)."""
    from moto.moto_server import werkzeug_app

    werkzeug_app.DISABLE_GLOBAL_CORS = True


class LocalCloud:
    """A running local cloud on 127.0.0.1. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        settings: LocalCloudSettings | None = None,
        extensions: Sequence[str] | None = None,
        work_dir: str | os.PathLike | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.settings = settings or LocalCloudSettings()
        self.extension_names = tuple(DEFAULT_EXTENSIONS if extensions is None else extensions)
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="stepml-localcloud-"))
        self._dispatcher = _Dispatcher(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stop_callbacks: list[Callable[[], None]] = []
        self._patches: list[tuple[object, str, Any]] = []
        self.extensions: dict[str, Any] = {}
        self.credentials = new_credentials()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "start() the local cloud first"
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def account_id(self) -> str:
        return self.settings.account_id

    def start(self) -> LocalCloud:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._keep_interpreter_log()
        self._server = make_server(self.host, self.requested_port, self._dispatcher, threaded=True)
        self._dispatcher.hosts = frozenset({f"{self.host}:{self.port}", f"localhost:{self.port}"})
        _RUNNING[self.url] = self.credentials
        _disable_moto_cors()
        # moto's Step Functions interpreter calls Lambda & co. on localhost:$MOTO_PORT.
        os.environ["MOTO_PORT"] = str(self.port)
        self._enable_state_machine_execution()
        for name in self.extension_names:
            module = importlib.import_module(name)
            self.extensions[extension_key(name)] = module.install(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="localcloud-http", daemon=True
        )
        self._thread.start()
        return self

    def _keep_interpreter_log(self) -> None:
        """moto's Step Functions interpreter logs every evaluation error (a Choice over a path
        the input lacks, a caught Task failure) at ERROR; with no handler configured they reach
        the terminal (and `stepml run`'s progress display). AWS shows these in the execution's
        history, which moto records too: keep them in the cloud's work dir instead."""
        logger = logging.getLogger(INTERPRETER_LOGGER)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.work_dir / "stepfunctions-interpreter.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False

        def restore() -> None:
            logger.removeHandler(handler)
            handler.close()
            logger.propagate = True

        self.on_stop(restore)

    def stop(self) -> None:
        if self._server is not None:
            _RUNNING.pop(self.url, None)
        for callback in reversed(self._stop_callbacks):
            try:
                callback()
            except Exception as error:  # keep tearing down the rest
                print(f"localcloud: cleanup failed: {error!r}", file=sys.stderr)
        self._stop_callbacks.clear()
        for target, name, original in reversed(self._patches):
            setattr(target, name, original)
        self._patches.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._reset_moto()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- extension API ---------------------------------------------------------------------
    def add_route(self, matcher: RouteMatcher, handler: RouteHandler) -> None:
        """Answer matching requests before moto does."""
        self._dispatcher.routes.append((matcher, handler))

    def patch(self, target: object, name: str, replacement: Any) -> Any:
        """Replace ``target.name`` until stop(); returns the original so wrappers can call it."""
        original = getattr(target, name)
        self._patches.append((target, name, original))
        setattr(target, name, replacement)
        return original

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._stop_callbacks.append(callback)

    def short_tmpdir(self, label: str) -> Path:
        """A private TMPDIR for a local process, under /tmp and short: Python's multiprocessing
        puts Unix sockets there, whose paths may not exceed 107 bytes."""
        path = Path(tempfile.mkdtemp(prefix=f"lc-{label[:12]}-", dir="/tmp"))
        self.on_stop(lambda: shutil.rmtree(path, ignore_errors=True))
        return path

    def backend(self, service: str, region: str | None = None) -> Any:
        """moto's in-process backend for this cloud's account and region."""
        from moto.backends import get_backend

        return get_backend(service)[self.account_id][region or self.region]

    def client_env(self) -> dict[str, str]:
        """Environment that points boto3 in a child process at this cloud."""
        return {
            **self.credentials,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "MOTO_PORT": str(self.port),
        }

    def role_env(self, role_arn: str, session_name: str) -> dict[str, str]:
        """AWS_ACCESS_KEY_ID/SECRET/SESSION_TOKEN of an STS session of ``role_arn``: what Lambda,
        SageMaker and EC2 hand the code they run (here by environment). 12 h: the services keep
        their sessions fresh; the role's MaxSessionDuration binds callers of AssumeRole."""
        keys = self.boto3_client("sts").assume_role(
            RoleArn=role_arn, RoleSessionName=session_name[:64], DurationSeconds=43200)["Credentials"]
        return {"AWS_ACCESS_KEY_ID": keys["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": keys["SecretAccessKey"],
                "AWS_SESSION_TOKEN": keys["SessionToken"]}

    def role_client(self, role_arn: str, service: str, session_name: str, **kwargs: Any) -> Any:
        """A client signed as an STS session of ``role_arn``: what a service does on a role's
        behalf (SageMaker fetching a job's channels and uploading its model, Lambda writing a
        function's logs) is authorized against that role, as on AWS."""
        import boto3

        keys = self.role_env(role_arn, session_name)
        return boto3.session.Session().client(
            service, endpoint_url=self.url, region_name=self.region,
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=keys["AWS_SESSION_TOKEN"], **kwargs)

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment for local compute processes (Lambda workers, training jobs)."""
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TORCH_HOME", "SYSTEMROOT")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env.update(self.client_env())
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def boto3_client(self, service: str, **kwargs: Any) -> Any:
        """A client for this cloud, as its administrator; pass ``config=Config(...)`` to tune
        retries. Each call builds it on a new session (boto3's default one is not thread-safe)."""
        import boto3

        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.credentials["AWS_SECRET_ACCESS_KEY"],
            **kwargs,
        )

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _enable_state_machine_execution() -> None:
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.set_config({"stepfunctions": {"execute_state_machine": True}})

    @staticmethod
    def _reset_moto() -> None:
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()


def python_executable() -> str:
    """The interpreter of the project's venv: child processes run the same code and packages."""
    return sys.executable
