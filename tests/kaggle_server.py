"""A local stand-in for Kaggle's model-download API, for tests that run the real kagglehub.

kagglehub (through kagglesdk) talks to ``http://localhost:7777/api/v1/...`` when the
environment variable ``KAGGLE_API_ENVIRONMENT`` is ``TEST``.  :class:`KaggleModelServer`
listens there (on ``127.0.0.1``) in a background thread and answers the three RPCs that
``kagglehub.model_download`` makes, all of them ``POST`` with a JSON body:

``/api/v1/models.ModelApiService/GetModelInstance``
    Only for an unversioned handle.  Body ``{"ownerSlug", "modelSlug", "framework",
    "instanceSlug"}``; the reply's ``versionNumber`` is the latest registered version.
``/api/v1/models.ModelApiService/ListModelInstanceVersionFiles``
    Body adds ``"versionNumber"`` and ``"pageSize": 25``; the reply is ``{"files": [{"name",
    "size"}], "nextPageToken"}``.  A non-empty token makes kagglehub fetch one archive
    instead of the individual files.
``/api/v1/models.ModelApiService/DownloadModelInstanceVersion``
    Body adds ``"path"`` for a single file (left out for the whole archive).  The reply is a
    ``302`` redirect to a blob URL on this server (``/blobs/...``), like Kaggle's redirect to
    Cloud Storage; the blob reply carries ``Content-Length``, ``Accept-Ranges: bytes`` and
    ``x-goog-hash: md5=...`` and honours ``Range`` requests.

``framework`` is the enum name, e.g. ``MODEL_FRAMEWORK_KERAS`` for the handle part ``keras``.
Errors are answered Kaggle-style: a JSON body ``{"code": STATUS, "message": TEXT}``.

Typical use::

    with KaggleModelServer(credentials=("user", "key")) as server:
        server.add_model("keras/gemma/keras/gemma_2b_en/2", {"config.json": b"{}"})
        kagglehub.model_download("keras/gemma/keras/gemma_2b_en/2")
        assert server.rpc_names() == ["ListModelInstanceVersionFiles",
                                      "DownloadModelInstanceVersion"]

The scenario (see the ``OK`` ... ``PARTIAL`` constants) may be changed between calls by
assigning :attr:`KaggleModelServer.scenario`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import socket
import sys
import tarfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7777  # fixed by kagglesdk for KAGGLE_API_ENVIRONMENT=TEST

API_PREFIX = "/api/v1/models.ModelApiService/"
BLOB_PREFIX = "/blobs/"
ARCHIVE_BLOB_NAME = "__archive__.tar.gz"

# Scenarios.
OK = "ok"  # files are served
UNAUTHORIZED = "unauthorized"  # every API call answers 401
NO_CONSENT = "no_consent"  # listing and downloading answer 403 "has not consented"
NOT_FOUND = "not_found"  # every API call answers 404
PARTIAL = "partial"  # blob downloads announce the full length, send a prefix, then hang up
SCENARIOS = (OK, UNAUTHORIZED, NO_CONSENT, NOT_FOUND, PARTIAL)

UNAUTHENTICATED_MESSAGE = "Unauthenticated"
NO_CONSENT_MESSAGE = "User has not consented to terms of use."
NOT_FOUND_MESSAGE = "Not found"

_FRAMEWORK_ENUM_PREFIX = "MODEL_FRAMEWORK_"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str  # without the query string
    body: dict | None = None  # the JSON body of an API call
    authorization: str | None = None  # the raw Authorization header, if any
    range: str | None = None  # the raw Range header, if any

    @property
    def rpc(self) -> str | None:
        """The API method name (e.g. ``"GetModelInstance"``), or None for a blob download."""
        if self.path.startswith(API_PREFIX):
            return self.path[len(API_PREFIX):]
        return None


@dataclass(frozen=True)
class _InstanceKey:
    owner: str
    model: str
    framework: str  # normalised, see _normalise_framework
    variation: str


@dataclass
class _ServerState:
    """Everything the request handler reads or writes, shared across handler threads."""

    models: dict[_InstanceKey, dict[int, dict[str, bytes]]] = field(default_factory=dict)
    scenario: str = OK
    credentials: tuple[str, str] | None = None
    api_token: str | None = None
    allow_anonymous: bool = False
    consent_message: str = NO_CONSENT_MESSAGE
    partial_bytes: int | None = None
    partial_path: str | None = None
    partial_failures: int | None = None
    page_size_override: int | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _normalise_framework(name: str) -> str:
    """``MODEL_FRAMEWORK_TENSOR_FLOW_2`` and ``tensorFlow2`` both become ``tensorflow2``."""
    if name.upper().startswith(_FRAMEWORK_ENUM_PREFIX):
        name = name[len(_FRAMEWORK_ENUM_PREFIX):]
    return re.sub(r"[^a-z0-9]", "", name.lower())


def parse_handle(handle: str) -> tuple[_InstanceKey, int | None]:
    """Splits ``owner/model/framework/variation[/version]`` into an instance key and version."""
    parts = handle.strip("/").split("/")
    if len(parts) not in (4, 5):
        raise ValueError(f"not a model handle: {handle!r}")
    key = _InstanceKey(parts[0], parts[1], _normalise_framework(parts[2]), parts[3])
    return key, int(parts[4]) if len(parts) == 5 else None


def _basic_authorization(username: str, key: str) -> str:
    token = base64.b64encode(f"{username}:{key}".encode()).decode("ascii")
    return f"Basic {token}"


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _parse_range(header: str | None, size: int) -> int | None:
    """The start offset of a ``bytes=START-`` range, or None when absent or unsupported."""
    if not header:
        return None
    match = re.fullmatch(r"bytes=(\d+)-", header.strip())
    if not match:
        return None
    start = int(match.group(1))
    return start if start < size else None


class _Handler(BaseHTTPRequestHandler):
    """Serves the model API and blob downloads out of ``server.state``."""

    protocol_version = "HTTP/1.1"
    server: _HttpServer

    # -- plumbing -------------------------------------------------------------------

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        """Keeps the test output quiet."""

    @property
    def state(self) -> _ServerState:
        return self.server.state

    def _request_path(self) -> str:
        """The path, also when a proxy-style absolute URL was sent as the request target."""
        return urllib.parse.urlsplit(self.path).path

    def _read_json_body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _record(self, path: str, body: dict | None = None) -> None:
        entry = RecordedRequest(
            method=self.command,
            path=path,
            body=body,
            authorization=self.headers.get("Authorization"),
            range=self.headers.get("Range"),
        )
        with self.state.lock:
            self.state.requests.append(entry)

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error_json(self, status: HTTPStatus, message: str) -> None:
        self._send_json(status.value, {"code": status.value, "message": message})

    def _base_url(self) -> str:
        host = self.headers.get("Host") or f"{DEFAULT_HOST}:{self.server.server_address[1]}"
        return f"http://{host}"

    # -- HTTP verbs -----------------------------------------------------------------

    def do_POST(self):  # noqa: N802 - name fixed by the base class
        path = self._request_path()
        body = self._read_json_body()
        self._record(path, body)
        if not path.startswith(API_PREFIX):
            self._send_error_json(HTTPStatus.NOT_FOUND, NOT_FOUND_MESSAGE)
            return
        if body is None:
            self._send_error_json(HTTPStatus.BAD_REQUEST, "Request body is not a JSON object")
            return
        self._handle_rpc(path[len(API_PREFIX):], body)

    def do_GET(self):  # noqa: N802 - name fixed by the base class
        path = self._request_path()
        self._record(path)
        if not path.startswith(BLOB_PREFIX):
            self._send_error_json(HTTPStatus.NOT_FOUND, NOT_FOUND_MESSAGE)
            return
        self._handle_blob(urllib.parse.unquote(path[len(BLOB_PREFIX):]))

    # -- API ------------------------------------------------------------------------

    def _is_authorised(self) -> bool:
        state = self.state
        given = self.headers.get("Authorization")
        if given is None:
            return state.allow_anonymous or (state.credentials is None and state.api_token is None)
        accepted = []
        if state.credentials is not None:
            accepted.append(_basic_authorization(*state.credentials))
        if state.api_token is not None:
            accepted.append(f"Bearer {state.api_token}")
        return not accepted or given in accepted

    def _handle_rpc(self, rpc: str, body: dict) -> None:
        scenario = self.state.scenario
        if scenario == UNAUTHORIZED or not self._is_authorised():
            self._send_error_json(HTTPStatus.UNAUTHORIZED, UNAUTHENTICATED_MESSAGE)
            return
        if scenario == NOT_FOUND:
            self._send_error_json(HTTPStatus.NOT_FOUND, NOT_FOUND_MESSAGE)
            return
        handlers = {
            "GetModelInstance": self._get_model_instance,
            "ListModelInstanceVersionFiles": self._list_files,
            "DownloadModelInstanceVersion": self._download,
        }
        handler = handlers.get(rpc)
        if handler is None:
            self._send_error_json(HTTPStatus.NOT_FOUND, NOT_FOUND_MESSAGE)
            return
        if scenario == NO_CONSENT and rpc != "GetModelInstance":
            self._send_error_json(HTTPStatus.FORBIDDEN, self.state.consent_message)
            return
        handler(body)

    def _instance_key(self, body: dict) -> _InstanceKey:
        return _InstanceKey(
            owner=str(body.get("ownerSlug", "")),
            model=str(body.get("modelSlug", "")),
            framework=_normalise_framework(str(body.get("framework", ""))),
            variation=str(body.get("instanceSlug", "")),
        )

    def _lookup_version(self, body: dict) -> tuple[_InstanceKey, int, dict[str, bytes]] | None:
        key = self._instance_key(body)
        versions = self.state.models.get(key)
        if not versions:
            return None
        version = body.get("versionNumber")
        if not isinstance(version, int) or version not in versions:
            return None
        return key, version, versions[version]

    def _get_model_instance(self, body: dict) -> None:
        key = self._instance_key(body)
        versions = self.state.models.get(key)
        if not versions:
            self._send_error_json(HTTPStatus.NOT_FOUND, NOT_FOUND_MESSAGE)
            return
        self._send_json(
            HTTPStatus.OK.value,
            {
                "slug": key.variation,
                "framework": str(body.get("framework", "")),
                "versionNumber": max(versions),
            },
        )

    def _list_files(self, body: dict) -> None:
        found = self._lookup_version(body)
        if found is None:
            self._send_error_json(HTTPStatus.NOT_FOUND, NOT_FOUND_MESSAGE)
            return
        _, _, files = found
        page_size = self.state.page_size_override or int(body.get("pageSize") or 0) or len(files)
        names = sorted(files)
        page = names[:page_size]
        self._send_json(
            HTTPStatus.OK.value,
            {
                "files": [{"name": name, "size": len(files[name])} for name in page],
                "nextPageToken": "next-page" if len(names) > len(page) else "",
            },
        )

    def _download(self, body: dict) -> None:
        found = self._lookup_version(body)
        if found is None:
            self._send_error_json(HTTPStatus.NOT_FOUND, NOT_FOUND_MESSAGE)
            return
        key, version, files = found
        path = body.get("path")
        if path is not None and path not in files:
            self._send_error_json(HTTPStatus.NOT_FOUND, NOT_FOUND_MESSAGE)
            return
        blob_name = path if path is not None else ARCHIVE_BLOB_NAME
        blob_path = "/".join([key.owner, key.model, key.framework, key.variation, str(version), blob_name])
        location = f"{self._base_url()}{BLOB_PREFIX}{urllib.parse.quote(blob_path)}"
        self.send_response(HTTPStatus.FOUND.value)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    # -- blobs ----------------------------------------------------------------------

    def _blob_content(self, blob_path: str) -> tuple[str, bytes] | None:
        parts = blob_path.split("/", 5)
        if len(parts) != 6 or not parts[4].isdigit():
            return None
        key = _InstanceKey(*parts[:4])
        files = self.state.models.get(key, {}).get(int(parts[4]))
        if files is None:
            return None
        name = parts[5]
        if name == ARCHIVE_BLOB_NAME:
            return name, _tar_gz(files)
        if name not in files:
            return None
        return name, files[name]

    def _should_truncate(self, name: str) -> bool:
        state = self.state
        if state.scenario != PARTIAL:
            return False
        if state.partial_path is not None and name != state.partial_path:
            return False
        with state.lock:
            if state.partial_failures is None:
                return True
            if state.partial_failures <= 0:
                return False
            state.partial_failures -= 1
            return True

    def _handle_blob(self, blob_path: str) -> None:
        found = self._blob_content(blob_path)
        if found is None:
            self._send_error_json(HTTPStatus.NOT_FOUND, NOT_FOUND_MESSAGE)
            return
        name, data = found
        start = _parse_range(self.headers.get("Range"), len(data))
        body = data if start is None else data[start:]
        truncate = self._should_truncate(name)

        self.send_response(HTTPStatus.OK.value if start is None else HTTPStatus.PARTIAL_CONTENT.value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("x-goog-hash", f"md5={_md5_b64(data)}")
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()

        if not truncate:
            self.wfile.write(body)
            return
        sent = self.state.partial_bytes
        sent = len(body) // 2 if sent is None else min(sent, max(len(body) - 1, 0))
        self.wfile.write(body[:sent])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: _ServerState) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        """Keeps handler failures off stderr.

        kagglehub drops connections on purpose (it abandons a streamed reply when it resumes a
        download with a ``Range`` request), so resets and broken pipes are ignored; anything
        else is kept in :attr:`KaggleModelServer.errors`.
        """
        error = sys.exc_info()[1]
        if error is None or isinstance(error, (ConnectionError, TimeoutError)):
            return
        with self.state.lock:
            self.state.errors.append(error)


class KaggleModelServer:
    """Kaggle's model-download API on ``host:port``, served from memory.

    Args:
        models: ``{handle: {relative_path: bytes}}``; handles are fully versioned,
            ``owner/model/framework/variation/version``.  More can be added with
            :meth:`add_model`, also while running.
        scenario: one of :data:`SCENARIOS`; may be reassigned at any time.
        credentials: ``(username, key)`` that must arrive as HTTP Basic auth (what
            ``KAGGLE_USERNAME``/``KAGGLE_KEY`` produce).  None accepts any credentials.
        api_token: a token accepted as ``Authorization: Bearer ...`` (``KAGGLE_API_TOKEN``).
        allow_anonymous: accept requests with no Authorization header even when
            ``credentials``/``api_token`` are set (Kaggle serves public models so).
        consent_message: the message of the 403 answer in the ``NO_CONSENT`` scenario.
        partial_bytes: in ``PARTIAL``, how many bytes of a blob are sent before hanging up
            (default: half; always fewer than announced).
        partial_path: in ``PARTIAL``, the only file that gets cut short (default: every file).
        partial_failures: in ``PARTIAL``, how many blob replies are cut short before files
            are served whole again (default None: every one).
        page_size: if set, lists at most this many files per page, so that a model with more
            files is downloaded as one archive (kagglehub itself asks for pages of 25).
        host, port: where to listen; kagglesdk's TEST environment expects 127.0.0.1:7777.
    """

    def __init__(
        self,
        models: dict[str, dict[str, bytes]] | None = None,
        *,
        scenario: str = OK,
        credentials: tuple[str, str] | None = None,
        api_token: str | None = None,
        allow_anonymous: bool = False,
        consent_message: str = NO_CONSENT_MESSAGE,
        partial_bytes: int | None = None,
        partial_path: str | None = None,
        partial_failures: int | None = None,
        page_size: int | None = None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
    ) -> None:
        self._state = _ServerState(
            credentials=credentials,
            api_token=api_token,
            allow_anonymous=allow_anonymous,
            consent_message=consent_message,
            partial_bytes=partial_bytes,
            partial_path=partial_path,
            partial_failures=partial_failures,
            page_size_override=page_size,
        )
        self.scenario = scenario
        self._address = (host, port)
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        for handle, files in (models or {}).items():
            self.add_model(handle, files)

    # -- configuration --------------------------------------------------------------

    @property
    def scenario(self) -> str:
        return self._state.scenario

    @scenario.setter
    def scenario(self, value: str) -> None:
        if value not in SCENARIOS:
            raise ValueError(f"unknown scenario {value!r}; expected one of {SCENARIOS}")
        self._state.scenario = value

    @property
    def partial_failures(self) -> int | None:
        """How many more blob replies ``PARTIAL`` will cut short (None: all)."""
        return self._state.partial_failures

    @partial_failures.setter
    def partial_failures(self, value: int | None) -> None:
        with self._state.lock:
            self._state.partial_failures = value

    def add_model(self, handle: str, files: dict[str, bytes]) -> None:
        """Registers a model version; ``handle`` must include the version number."""
        key, version = parse_handle(handle)
        if version is None:
            raise ValueError(f"handle needs a version: {handle!r}")
        self._state.models.setdefault(key, {})[version] = {
            name.lstrip("/"): bytes(data) for name, data in files.items()
        }

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> KaggleModelServer:
        """Binds the socket and serves in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._httpd = _HttpServer(self._address, self._state)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="kaggle-model-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and frees the port."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> KaggleModelServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._httpd is None:
            return self._address[1]
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    # -- inspection -----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, in arrival order."""
        with self._state.lock:
            return list(self._state.requests)

    def clear_requests(self) -> None:
        with self._state.lock:
            self._state.requests.clear()

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions raised while handling requests (dropped connections excluded)."""
        with self._state.lock:
            return list(self._state.errors)

    def rpc_names(self) -> list[str]:
        """The API methods called so far, e.g. ``["ListModelInstanceVersionFiles", ...]``."""
        return [r.rpc for r in self.requests if r.rpc is not None]

    def downloaded_paths(self) -> list[str]:
        """The ``path`` of every DownloadModelInstanceVersion call (None for the archive)."""
        return [
            (r.body or {}).get("path") for r in self.requests if r.rpc == "DownloadModelInstanceVersion"
        ]

    def blob_requests(self) -> list[RecordedRequest]:
        """The GET requests for file contents (after the redirect)."""
        return [r for r in self.requests if r.path.startswith(BLOB_PREFIX)]
