"""The Prometheus HTTP client: retries, auth, headers, TLS and errors a person can act on.

A small HTTP server on 127.0.0.1 answers with scripted responses; it tests the client's HTTP behaviour only,
not PromQL (that is what the lab's real Prometheus is for).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from costslo.metrics.prometheus import Problem, PrometheusClient, PrometheusConfig, PrometheusError, Sample

pytestmark = pytest.mark.unit

VECTOR = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [
            {"metric": {"namespace": "ml", "pod": "a"}, "value": [1700000000.0, "12.5"]},
            {"metric": {"namespace": "ml", "pod": "b"}, "value": [1700000000.0, "NaN"]},
        ],
    },
}


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: VECTOR)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    form: dict[str, str]


class Script:
    """Replies in order (the last one repeats) and what the client sent."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.seen: list[Seen] = []

    def next(self) -> Reply:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


class Server:
    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        handler = _handler(script)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            script.seen.append(Seen(self.path, dict(self.headers.items()), form))
            reply = script.next()
            if reply.delay:
                time.sleep(reply.delay)
            body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            content_type = "text/html" if isinstance(reply.body, bytes) else "application/json"
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)  # fails when the client gave up (read timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[Server]:
    s = Server(script)
    yield s
    s.close()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(url: str, sleeps: Sleeps | None = None, **options: Any) -> PrometheusClient:
    return PrometheusClient(
        PrometheusConfig(url, **options), sleep=sleeps if sleeps is not None else Sleeps()
    )


def url_of(server: Server, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.port}"


def test_instant_query_is_posted_and_parsed(server: Server, script: Script) -> None:
    client = client_for(url_of(server))
    samples = client.query('up{job="x"}', at=1700000000.5)
    assert samples[0] == Sample({"namespace": "ml", "pod": "a"}, 12.5)
    assert samples[1].value != samples[1].value  # NaN travels as NaN
    [seen] = script.seen
    assert seen.path == "/api/v1/query"
    assert seen.form == {"query": 'up{job="x"}', "time": "1700000000.500", "timeout": "30s"}
    assert (client.queries, client.attempts) == (1, 1)


def test_scalar_results_are_one_unlabelled_sample(server: Server, script: Script) -> None:
    script.replies = [Reply(body={"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}})]
    assert client_for(url_of(server)).query("scalar(vector(3))") == [Sample({}, 3.0)]


def test_path_prefix_is_kept(server: Server, script: Script) -> None:
    client_for(url_of(server) + "/prometheus/").query("up")
    assert script.seen[0].path == "/prometheus/api/v1/query"


def test_bearer_token_and_extra_headers_are_sent(server: Server, script: Script) -> None:
    client = client_for(url_of(server), bearer_token="s3cret", headers={"X-Scope-OrgID": "tenant-a"})
    client.query("up")
    headers = script.seen[0].headers
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Scope-OrgID"] == "tenant-a"


def test_token_file_is_read_on_every_request(server: Server, script: Script, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    client = client_for(url_of(server), bearer_token_file=token)
    client.query("up")
    token.write_text("rotated")
    client.query("up")
    assert [s.headers["Authorization"] for s in script.seen] == ["Bearer first", "Bearer rotated"]


def test_unreadable_token_file_says_so(server: Server, tmp_path: Path) -> None:
    client = client_for(url_of(server), bearer_token_file=tmp_path / "absent")
    with pytest.raises(PrometheusError, match="cannot read the bearer token file") as err:
        client.query("up")
    assert err.value.problem is Problem.UNAUTHORIZED


def test_server_errors_are_retried_with_backoff(server: Server, script: Script) -> None:
    script.replies = [
        Reply(503, {"status": "error", "errorType": "unavailable", "error": "x"}),
        Reply(502),
        Reply(),
    ]
    sleeps = Sleeps()
    client = client_for(url_of(server), sleeps, backoff_seconds=0.5)
    assert len(client.query("up")) == 2
    assert sleeps == [0.5, 1.0]
    assert (client.queries, client.attempts) == (1, 3)


def test_retries_are_bounded(server: Server, script: Script) -> None:
    script.replies = [Reply(500, {"status": "error", "errorType": "internal", "error": "storage broke"})]
    sleeps = Sleeps()
    client = client_for(url_of(server), sleeps, max_attempts=4, backoff_seconds=1, max_backoff_seconds=3)
    with pytest.raises(PrometheusError) as err:
        client.query("up")
    assert err.value.problem is Problem.SERVER_ERROR
    assert err.value.status == 500
    assert "answered 500 4 time(s) (internal: storage broke)" in str(err.value)
    assert sleeps == [1, 2, 3]
    assert len(script.seen) == 4


def test_rate_limits_honour_retry_after(server: Server, script: Script) -> None:
    script.replies = [Reply(429, {"status": "error", "error": "slow down"}, {"Retry-After": "2"}), Reply()]
    sleeps = Sleeps()
    client_for(url_of(server), sleeps, backoff_seconds=0.1).query("up")
    assert sleeps == [2.0]


def test_rate_limit_message(server: Server, script: Script) -> None:
    script.replies = [Reply(429, {"status": "error", "error": "slow down"})]
    with pytest.raises(PrometheusError, match="429 Too Many Requests 2 time") as err:
        client_for(url_of(server), max_attempts=2).query("up")
    assert err.value.problem is Problem.RATE_LIMITED


@pytest.mark.parametrize(
    ("status", "problem", "advice"),
    [
        (401, Problem.UNAUTHORIZED, "answered 401 Unauthorized: check the bearer token"),
        (403, Problem.FORBIDDEN, "X-Scope-OrgID"),
        (404, Problem.NOT_FOUND, "path prefix"),
    ],
)
def test_auth_and_url_errors_are_not_retried(
    server: Server, script: Script, status: int, problem: Problem, advice: str
) -> None:
    script.replies = [Reply(status, b"nope")]
    client = client_for(url_of(server), bearer_token="s3cret")
    with pytest.raises(PrometheusError) as err:
        client.query("up")
    assert err.value.problem is problem
    assert err.value.status == status
    assert f"Prometheus at {url_of(server)} answered {status}" in str(err.value)
    assert advice in str(err.value)
    assert "s3cret" not in str(err.value)
    assert client.attempts == 1


def test_rejected_query_names_the_error(server: Server, script: Script) -> None:
    body = {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'}
    script.replies = [Reply(400, body)]
    client = client_for(url_of(server))
    with pytest.raises(
        PrometheusError, match='rejected a query \\(bad_data: parse error: unexpected "}"\\)'
    ) as err:
        client.query("up{")
    assert err.value.problem is Problem.BAD_QUERY
    assert err.value.query == "up{"
    assert client.attempts == 1


def test_query_timeout_in_the_engine_is_not_retried(server: Server, script: Script) -> None:
    script.replies = [Reply(503, {"status": "error", "errorType": "timeout", "error": "query timed out"})]
    client = client_for(url_of(server))
    with pytest.raises(PrometheusError, match="too heavy") as err:
        client.query("up")
    assert err.value.problem is Problem.TIMEOUT
    assert client.attempts == 1


def test_read_timeout_is_not_retried(server: Server, script: Script) -> None:
    script.replies = [Reply(delay=1.0)]
    client = client_for(url_of(server), timeout_seconds=0.2)
    with pytest.raises(PrometheusError, match=r"did not answer within 0\.2s") as err:
        client.query("up")
    assert err.value.problem is Problem.TIMEOUT
    assert client.attempts == 1


def test_something_that_is_not_prometheus(server: Server, script: Script) -> None:
    script.replies = [Reply(200, b"<html>Grafana</html>")]
    with pytest.raises(PrometheusError, match="text/html instead of the query API's JSON") as err:
        client_for(url_of(server)).query("up")
    assert err.value.problem is Problem.BAD_RESPONSE


def test_range_result_for_an_instant_query_is_refused(server: Server, script: Script) -> None:
    script.replies = [Reply(body={"status": "success", "data": {"resultType": "matrix", "result": []}})]
    with pytest.raises(PrometheusError, match="with matrix, not a vector"):
        client_for(url_of(server)).query("up[5m]")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_is_retried_then_explained() -> None:
    sleeps = Sleeps()
    client = client_for(
        f"http://user:pw@127.0.0.1:{_closed_port()}", sleeps, max_attempts=3, backoff_seconds=0.25
    )
    with pytest.raises(
        PrometheusError, match=r"could not connect to Prometheus at http://127\.0\.0\.1:"
    ) as err:
        client.query("up")
    assert err.value.problem is Problem.UNREACHABLE
    assert "after 3 attempt(s)" in str(err.value)
    assert "pw" not in str(err.value)
    assert sleeps == [0.25, 0.5]
    assert client.attempts == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "prometheus:9090"}, "must start with http"),
        ({"url": "http://p", "bearer_token": "a", "bearer_token_file": Path("t")}, "not both"),
        ({"url": "http://p", "client_key_file": Path("k")}, "client certificate"),
        ({"url": "http://p", "bearer_token": "a", "headers": {"authorization": "x"}}, "conflict"),
        ({"url": "http://p", "timeout_seconds": 0}, "positive"),
        ({"url": "http://p", "max_attempts": 0}, "at least 1"),
    ],
)
def test_bad_configuration_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PrometheusConfig(**options)


def test_token_is_not_in_the_config_repr() -> None:
    assert "s3cret" not in repr(PrometheusConfig("http://p", bearer_token="s3cret"))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _tls_server(script: Script, certificate: tuple[Path, Path], require_client_cert: bool) -> Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    if require_client_cert:
        # The one self-signed certificate serves as server certificate, client certificate and CA.
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certificate[0])
    return Server(script, tls=context)


@pytest.fixture
def tls_server(script: Script, certificate: tuple[Path, Path]) -> Iterator[Server]:
    s = _tls_server(script, certificate, require_client_cert=False)
    yield s
    s.close()


@pytest.fixture
def mtls_server(script: Script, certificate: tuple[Path, Path]) -> Iterator[Server]:
    s = _tls_server(script, certificate, require_client_cert=True)
    yield s
    s.close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verification(tls_server: Server, certificate: tuple[Path, Path]) -> None:
    url = url_of(tls_server, "https")
    with pytest.raises(PrometheusError, match="set the CA file") as err:
        client_for(url).query("up")
    assert err.value.problem is Problem.TLS
    assert len(client_for(url, ca_file=certificate[0]).query("up")) == 2
    assert len(client_for(url, verify_tls=False).query("up")) == 2


def test_client_certificate(mtls_server: Server, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    url = url_of(mtls_server, "https")
    with pytest.raises(PrometheusError) as err:
        client_for(url, ca_file=cert, max_attempts=1).query("up")
    assert err.value.problem in (Problem.TLS, Problem.UNREACHABLE)  # the server hangs up on the handshake
    client = client_for(url, ca_file=cert, client_cert_file=cert, client_key_file=key)
    assert len(client.query("up")) == 2
