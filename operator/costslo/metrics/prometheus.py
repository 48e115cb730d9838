"""A client for the Prometheus HTTP query API (Prometheus, Thanos Querier, Grafana Mimir, VictoriaMetrics).

Built on `requests` rather than prometheus-api-client's PrometheusConnect: the operator needs to tell a bad
token from a wrong URL from an overloaded server and say so in a sentence, to send queries as POST forms
(namespace matchers can outgrow a URL), to count queries and attempts per cycle, and to choose what is
retried; PrometheusConnect folds HTTP failures into one exception carrying a status text and retries inside
urllib3 where none of that is visible.

Retries are bounded with exponential backoff and cover failures that a second try can cure: connections
refused or reset, 429 and 5xx answers (honouring Retry-After up to the backoff cap). A read timeout is not
retried: the same query would time out again and add load to a struggling server.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import structlog

from costslo.metrics.promql import duration

log = structlog.get_logger(__name__)

QUERY_PATH = "/api/v1/query"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_QUERY_IN_MESSAGE = 300


class Problem(StrEnum):
    """What went wrong, for callers that map errors onto conditions."""

    UNREACHABLE = "Unreachable"
    TIMEOUT = "Timeout"
    TLS = "TLSError"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    NOT_FOUND = "NotFound"
    BAD_QUERY = "BadQuery"
    RATE_LIMITED = "RateLimited"
    SERVER_ERROR = "ServerError"
    BAD_RESPONSE = "BadResponse"


# What a tenant may read about a failed query: Prometheus' own text can quote other tenants' series (a
# "duplicate series" error lists whole label sets), so status and Events get only the kind of failure.
_SUMMARIES = {
    Problem.UNREACHABLE: "Prometheus could not be reached",
    Problem.TIMEOUT: "a Prometheus query timed out",
    Problem.TLS: "the TLS connection to Prometheus failed",
    Problem.UNAUTHORIZED: "Prometheus refused the operator's credentials",
    Problem.FORBIDDEN: "Prometheus forbade a query",
    Problem.NOT_FOUND: "no Prometheus query API at the configured URL",
    Problem.BAD_QUERY: "Prometheus rejected a query (a custom query's PromQL, or series that collide)",
    Problem.RATE_LIMITED: "Prometheus rate-limited the queries",
    Problem.SERVER_ERROR: "Prometheus failed a query",
    Problem.BAD_RESPONSE: "Prometheus answered with something that is not a query result",
}


class PrometheusError(Exception):
    """A query that did not produce an answer; the message says what a person can do about it."""

    def __init__(
        self,
        message: str,
        *,
        problem: Problem,
        url: str,
        status: int | None = None,
        query: str | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.url = url
        self.status = status
        self.query = query

    def summary(self) -> str:
        """The failure in words that quote nothing Prometheus said: safe for any tenant's status."""
        what = _SUMMARIES[self.problem]
        return f"Prometheus query failed ({self.problem}): {what}; the operator's log has the details"


@dataclass(frozen=True)
class PrometheusConfig:
    """How to reach the query API: URL (with any path prefix), credentials, TLS, headers, patience."""

    url: str
    bearer_token: str | None = field(default=None, repr=False)
    bearer_token_file: Path | None = None  # read on every request, so rotated tokens are picked up
    verify_tls: bool = True
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. {"X-Scope-OrgID": "tenant-a"}
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    max_attempts: int = 3
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"Prometheus URL {self.url!r} must start with http:// or https:// and name a host"
            )
        if self.bearer_token and self.bearer_token_file:
            raise ValueError("give a bearer token or a bearer token file, not both")
        if self.client_key_file and not self.client_cert_file:
            raise ValueError("a client key needs its client certificate")
        if (self.bearer_token or self.bearer_token_file) and any(
            k.lower() == "authorization" for k in self.headers
        ):
            raise ValueError("an Authorization header and a bearer token conflict; give one")
        if self.timeout_seconds <= 0 or self.connect_timeout_seconds <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ValueError("backoff must not be negative")

    @property
    def display_url(self) -> str:
        """The URL without any user:password, for messages and logs."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector (or a scalar, with no labels)."""

    labels: Mapping[str, str]
    value: float


def _shorten(text: str, limit: int = _MAX_QUERY_IN_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PrometheusClient:
    """Instant queries against one Prometheus-compatible endpoint, counted."""

    def __init__(
        self,
        config: PrometheusConfig,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.queries = 0  # logical queries asked, for "queries per cycle"
        self.attempts = 0  # HTTP requests sent, retries included
        self._sleep = sleep
        self._endpoint = config.url.rstrip("/") + QUERY_PATH
        self._session = session or requests.Session()
        self._session.headers.update(config.headers)
        # Passed with every request: requests lets REQUESTS_CA_BUNDLE override a session-wide `verify`.
        self._verify: bool | str = str(config.ca_file) if config.ca_file else config.verify_tls
        self._cert: str | tuple[str, str] | None = None
        if config.client_cert_file:
            self._cert = (
                (str(config.client_cert_file), str(config.client_key_file))
                if config.client_key_file
                else str(config.client_cert_file)
            )

    def close(self) -> None:
        """Closes pooled connections."""
        self._session.close()

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Evaluates `promql` at `at` (unix seconds; None: the server's now) and returns its samples."""
        self.queries += 1
        form = {"query": promql, "timeout": duration(max(0.001, round(self.config.timeout_seconds, 3)))}
        if at is not None:
            form["time"] = f"{at:.3f}"
        body = self._post(form, promql)
        return self._samples(body, promql)

    def _headers(self) -> dict[str, str]:
        token = self.config.bearer_token
        if self.config.bearer_token_file:
            try:
                token = self.config.bearer_token_file.read_text().strip()
            except OSError as exc:
                raise PrometheusError(
                    f"cannot read the bearer token file {self.config.bearer_token_file} ({exc.strerror}): "
                    "check the path and the operator's permission to read it",
                    problem=Problem.UNAUTHORIZED,
                    url=self.config.display_url,
                ) from exc
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.config.max_backoff_seconds, self.config.backoff_seconds * 2.0 ** (attempt - 1))
        if retry_after:
            try:
                asked = float(retry_after)
            except ValueError:
                asked = math.nan  # an HTTP date: keep our own backoff
            if math.isfinite(asked) and asked >= 0:
                delay = min(self.config.max_backoff_seconds, max(delay, asked))
        return delay

    def _post(self, form: dict[str, str], promql: str) -> Any:
        cfg, url = self.config, self.config.display_url
        last: PrometheusError | None = None
        for attempt in range(1, cfg.max_attempts + 1):
            self.attempts += 1
            retry_after: str | None = None
            try:
                response = self._session.post(
                    self._endpoint,
                    data=form,
                    headers=self._headers(),
                    timeout=(cfg.connect_timeout_seconds, cfg.timeout_seconds),
                    verify=self._verify,
                    cert=self._cert,
                )
            except requests.exceptions.SSLError as exc:
                raise PrometheusError(
                    f"TLS with Prometheus at {url} failed ({_shorten(str(exc), 200)}): set the CA file that "
                    "signed its certificate, or the client certificate it expects",
                    problem=Problem.TLS,
                    url=url,
                ) from exc
            except requests.exceptions.ReadTimeout as exc:
                raise PrometheusError(
                    f"Prometheus at {url} did not answer within {cfg.timeout_seconds:g}s: the query is too "
                    "heavy for the timeout; raise the timeout or narrow the namespaces in scope",
                    problem=Problem.TIMEOUT,
                    url=url,
                    query=promql,
                ) from exc
            except requests.exceptions.ConnectionError as exc:
                last = PrometheusError(
                    f"could not connect to Prometheus at {url} after {attempt} attempt(s) "
                    f"({type(exc).__name__}): check the URL and that Prometheus is reachable from the "
                    "operator",
                    problem=Problem.UNREACHABLE,
                    url=url,
                )
            except requests.exceptions.RequestException as exc:
                raise PrometheusError(
                    f"the request to Prometheus at {url} failed ({_shorten(str(exc), 200)}): check the URL",
                    problem=Problem.UNREACHABLE,
                    url=url,
                ) from exc
            else:
                if response.status_code not in RETRY_STATUSES or _error_type(response) == "timeout":
                    return self._body(response, promql)
                retry_after = response.headers.get("Retry-After")
                last = self._status_error(response, promql, attempt)
            if attempt < cfg.max_attempts:
                delay = self._backoff(attempt, retry_after)
                log.warning(
                    "prometheus.retry", url=url, attempt=attempt, delay_seconds=delay, reason=str(last)
                )
                self._sleep(delay)
        assert last is not None
        raise last

    def _status_error(self, response: requests.Response, promql: str, attempt: int) -> PrometheusError:
        url, status = self.config.display_url, response.status_code
        detail = _error_detail(response)
        suffix = f" ({detail})" if detail else ""
        if status == 429:
            return PrometheusError(
                f"Prometheus at {url} answered 429 Too Many Requests {attempt} time(s){suffix}: it is rate "
                "limiting the operator; evaluate less often or raise the tenant's query limits",
                problem=Problem.RATE_LIMITED,
                url=url,
                status=status,
                query=promql,
            )
        return PrometheusError(
            f"Prometheus at {url} answered {status} {attempt} time(s){suffix}: it is failing or overloaded; "
            "check its health and logs",
            problem=Problem.SERVER_ERROR,
            url=url,
            status=status,
            query=promql,
        )

    def _body(self, response: requests.Response, promql: str) -> Any:
        url, status = self.config.display_url, response.status_code
        if status == 401:
            raise PrometheusError(
                f"Prometheus at {url} answered 401 Unauthorized: check the bearer token",
                problem=Problem.UNAUTHORIZED,
                url=url,
                status=status,
            )
        if status == 403:
            raise PrometheusError(
                f"Prometheus at {url} answered 403 Forbidden: the credentials are not allowed to query; "
                "check the token's permissions and, for Mimir, Cortex or Thanos, the tenant header "
                "(X-Scope-OrgID)",
                problem=Problem.FORBIDDEN,
                url=url,
                status=status,
            )
        if status == 404:
            raise PrometheusError(
                f"Prometheus at {url} answered 404 for {QUERY_PATH}: check the URL, including any path "
                "prefix such as /prometheus (Mimir) or /select/0/prometheus (VictoriaMetrics cluster)",
                problem=Problem.NOT_FOUND,
                url=url,
                status=status,
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            content_type = response.headers.get("Content-Type", "no content type")
            raise PrometheusError(
                f"Prometheus at {url} answered {status} with {content_type} instead of the query API's JSON: "
                "check that the URL points at the Prometheus HTTP API",
                problem=Problem.BAD_RESPONSE,
                url=url,
                status=status,
            )
        if body["status"] != "success":
            kind, error = body.get("errorType", "error"), body.get("error", "")
            if kind == "timeout":
                raise PrometheusError(
                    f"Prometheus at {url} gave up evaluating a query ({error}): the query is too heavy for "
                    "its timeout; raise the timeout or narrow the namespaces in scope",
                    problem=Problem.TIMEOUT,
                    url=url,
                    status=status,
                    query=promql,
                )
            raise PrometheusError(
                f"Prometheus at {url} rejected a query ({kind}: {error}): {_shorten(promql)}; "
                "if it came from a custom runtime query, fix that PromQL",
                problem=Problem.BAD_QUERY,
                url=url,
                status=status,
                query=promql,
            )
        if status >= 400:
            raise PrometheusError(
                f"Prometheus at {url} answered {status}: check the URL and the proxy in front of Prometheus",
                problem=Problem.BAD_RESPONSE,
                url=url,
                status=status,
            )
        for warning in body.get("warnings") or ():
            log.warning("prometheus.warning", url=url, warning=warning, query=_shorten(promql))
        return body

    def _samples(self, body: Any, promql: str) -> list[Sample]:
        url = self.config.display_url
        data = body.get("data") if isinstance(body, dict) else None
        kind = data.get("resultType") if isinstance(data, dict) else None
        result = data.get("result") if isinstance(data, dict) else None
        try:
            if kind == "vector" and isinstance(result, list):
                return [Sample(dict(item["metric"]), float(item["value"][1])) for item in result]
            if kind == "scalar" and isinstance(result, list):
                return [Sample({}, float(result[1]))]
        except (KeyError, IndexError, TypeError, ValueError):
            pass
        raise PrometheusError(
            f"Prometheus at {url} answered an instant query with {kind or 'an unreadable result'}, not a "
            "vector: check that the URL points at a Prometheus-compatible query API",
            problem=Problem.BAD_RESPONSE,
            url=url,
            query=promql,
        )


def _error_detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _shorten(response.text.strip(), 200)
    if isinstance(body, dict) and body.get("error"):
        return _shorten(f"{body.get('errorType', 'error')}: {body['error']}", 200)
    return ""


def _error_type(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    kind = body.get("errorType") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None
