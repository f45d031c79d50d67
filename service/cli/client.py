"""A small HTTP client for the broker's API, for the admin commands."""

import requests


class ApiError(Exception):
    """The API answered with a problem, or could not be reached."""

    def __init__(self, status: int | None, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


class BrokerClient:
    """Calls the broker with an admin token."""

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self._session.request(
                method, self.url + path, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise ApiError(None, f"cannot reach {self.url}: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        return response

    def json(self, method: str, path: str, **kwargs) -> dict | None:
        response = self.call(method, path, **kwargs)
        return response.json() if response.content else None

    def all_pages(self, path: str, params: dict) -> list[dict]:
        """Every item of a paged listing, following `next_cursor`."""
        items, cursor = [], None
        while True:
            page = self.json("GET", path, params={**params, "limit": 200, "cursor": cursor})
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    detail = body.get("detail") or body.get("title") or f"HTTP {response.status_code}"
    errors = body.get("errors") or {}
    missing = {k: v for k, v in errors.items() if not all(m in detail for m in v)}
    if missing:  # the messages the detail does not say already
        detail += " " + "; ".join(f"{k}: {' '.join(v)}" for k, v in missing.items())
    return detail
