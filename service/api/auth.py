"""Bearer-token authentication for admin automation."""

import hmac

from flask import current_app, request

from service.api.problems import problem


def require_admin_token():
    """`before_request` hook: answer 401 unless the bearer token is an admin token."""
    if request.method == "OPTIONS":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _is_admin_token(token.strip()):
        return None
    return problem(
        401,
        "a valid admin bearer token is required",
        headers={"WWW-Authenticate": 'Bearer realm="sharing-broker"'},
    )


def _is_admin_token(token: str) -> bool:
    """Compare against every configured token in constant time."""
    presented = token.encode()
    matched = False
    for admin_token in current_app.config["BROKER_SETTINGS"].admin_tokens:
        matched |= hmac.compare_digest(presented, admin_token.encode())
    return matched and bool(token)
