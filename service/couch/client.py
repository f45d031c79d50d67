"""CouchClient: JSON requests to one CouchDB server with service credentials."""

import copy
import time
from collections.abc import Iterable
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import ChunkedEncodingError  # a response cut short
from urllib3.util.retry import Retry

from service.config import DEFAULT_SERVER
from service.couch.errors import CouchUnavailable, error_for
from service.metrics import COUCH_REQUESTS, COUCH_SECONDS, couch_operation

IDEMPOTENT_RETRY = Retry(
    total=2,
    backoff_factor=0.2,
    allowed_methods=frozenset({"GET", "HEAD"}),
    status_forcelist=(502, 503, 504),
    raise_on_status=False,
)


class CouchClient:
    """Talks to one CouchDB server. Paths are given as segments and quoted here."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: tuple[float, float] = (3.05, 10.0),
        server: str = DEFAULT_SERVER,
    ):
        self.base_url = base_url.rstrip("/")
        self.server = server  # the operator's name for it, in metrics and errors
        self.timeout = timeout
        self._session = _session((username, password), connections=32)

    def patient(self, read_seconds: float, connections: int) -> "CouchClient":
        """This client, with its own `connections`, waiting up to `read_seconds` for each
        answer: for requests CouchDB answers once their work is done (a one-shot
        `_replicate`), many at once."""
        patient = copy.copy(self)
        patient.timeout = (self.timeout[0], read_seconds)
        patient._session = _session(self._session.auth, connections)
        return patient

    def url(self, *segments: str) -> str:
        """The URL of a path given as unquoted segments, without credentials."""
        return "/".join([self.base_url, *(quote(s, safe="") for s in segments)])

    def request(
        self,
        method: str,
        segments: Iterable[str],
        *,
        params: dict | None = None,
        json: object = None,
    ) -> dict:
        """Send one request; return the JSON body or raise a typed error."""
        segments = tuple(segments)
        operation = f"{method} /{'/'.join(segments)}"
        shape = couch_operation(method, segments)
        started = time.perf_counter()
        try:
            response = self._send(method, self.url(*segments), params=params, json=json)
        except (requests.ConnectionError, requests.Timeout, ChunkedEncodingError) as exc:
            COUCH_REQUESTS.labels(self.server, shape, type(exc).__name__).inc()
            raise CouchUnavailable(operation, type(exc).__name__, self.server) from None
        finally:
            COUCH_SECONDS.labels(self.server, shape).observe(time.perf_counter() - started)
        COUCH_REQUESTS.labels(self.server, shape, str(response.status_code)).inc()
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if response.status_code >= 400:
            raise error_for(response.status_code, body, operation, self.server)
        return body

    def _send(self, method: str, url: str, **kwargs) -> requests.Response:
        """The one place a request leaves for CouchDB."""
        return self._session.request(method, url, timeout=self.timeout, **kwargs)

    def session_as(self, credentials: dict[str, str]) -> dict:
        """`GET /_session` as a user, sending only their Authorization or Cookie header.

        Their credentials go to this server and nowhere else, and are not kept. A refusal,
        or credentials CouchDB cannot parse, give an empty dict.
        """
        headers = {"Accept": "application/json", **credentials}
        try:
            response = requests.get(self.url("_session"), headers=headers, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise CouchUnavailable("GET /_session", type(exc).__name__, self.server) from None
        if response.status_code in (400, 401, 403):  # 400: a malformed cookie or header
            return {}
        if response.status_code >= 400:
            raise error_for(response.status_code, {}, "GET /_session", self.server)
        return response.json()

    def get(self, *segments: str, params: dict | None = None) -> dict:
        return self.request("GET", segments, params=params)

    def put(self, *segments: str, json: object = None, params: dict | None = None) -> dict:
        return self.request("PUT", segments, json=json, params=params)

    def post(self, *segments: str, json: object, params: dict | None = None) -> dict:
        return self.request("POST", segments, json=json, params=params)

    def delete(self, *segments: str, params: dict | None = None) -> dict:
        return self.request("DELETE", segments, params=params)


def _session(auth: tuple[str, str], connections: int) -> requests.Session:
    """A session that keeps up to `connections` open, and retries idempotent reads."""
    session = requests.Session()
    session.auth = auth
    session.headers["Accept"] = "application/json"
    adapter = HTTPAdapter(max_retries=IDEMPOTENT_RETRY, pool_maxsize=connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
