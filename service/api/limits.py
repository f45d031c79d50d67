"""Bounds on request bodies: JSON (415), their size (413), how deeply they nest (400).

A body is refused before anything parses it: the size from `Content-Length` (and by
werkzeug's `MAX_CONTENT_LENGTH` while reading), the nesting by one pass over its bytes.
Python's JSON parser would otherwise recurse until it fails with a 500.
"""

from flask import Flask, request

from service.api.problems import problem

MAX_BODY_BYTES = 1024 * 1024
MAX_DEPTH = 32


def init_limits(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.before_request(_check_body)


def _check_body():
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _too_large()
    if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", ""):
        return None
    if not request.is_json:
        detail = "send the body as JSON, with Content-Type: application/json"
        return problem(415, detail, {"request": [detail]})
    body = request.get_data(cache=True)
    if len(body) > MAX_BODY_BYTES:
        return _too_large()
    if nesting(body) > MAX_DEPTH:
        detail = f"the JSON body nests deeper than {MAX_DEPTH} levels"
        return problem(400, detail, {"request": [detail]})
    return None


def _too_large():
    return problem(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")


def nesting(body: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text, strings skipped."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest
