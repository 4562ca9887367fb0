"""CSRF protection: a signed double-submit token bound to a per-browser nonce cookie.

Every unsafe request authenticated by a cookie must carry the token in the `X-CSRF-Token` header
(htmx adds it, see static/app.js) or in a `csrf_token` form field. Bearer-token API calls carry no
ambient credentials and need no token. JSON sent as text/plain has neither, so it is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from app.errors import Forbidden

CSRF_COOKIE = "prefloop_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Multipart limits: thousands of fields or one huge field without a filename are refused early (400).
FORM_MAX_FIELDS = 200
FORM_MAX_FILES = 4
FORM_MAX_PART_SIZE = 512 * 1024


def _sign(secret: str, nonce: str) -> str:
    return hmac.new(secret.encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()


def browser_nonce(request: Request) -> str:
    """This browser's nonce, minting one (set on the response by `ensure_cookie`) when absent."""
    nonce = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf_nonce", None)
    if not nonce:
        nonce = secrets.token_urlsafe(32)
        request.state.new_csrf_nonce = nonce
    return nonce


def csrf_token(request: Request) -> str:
    """The token to embed in pages for this browser."""
    return _sign(request.app.state.secret, browser_nonce(request))


def ensure_cookie(request: Request, response: Response) -> None:
    """Set the nonce cookie when this request minted one."""
    nonce = getattr(request.state, "new_csrf_nonce", None)
    if nonce:
        response.set_cookie(
            CSRF_COOKIE,
            nonce,
            httponly=True,
            samesite="lax",
            secure=request.app.state.settings.cookies_secure,
            path="/",
        )


async def submitted_token(request: Request) -> str:
    """The token a request carries, from the header or (for classic forms) the form body."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form(
            max_fields=FORM_MAX_FIELDS, max_files=FORM_MAX_FILES, max_part_size=FORM_MAX_PART_SIZE
        )
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def verify_csrf(request: Request) -> None:
    """Refuse (403) an unsafe cookie-authenticated request without a valid token."""
    if request.method in SAFE_METHODS:
        return
    nonce = request.cookies.get(CSRF_COOKIE)
    token = await submitted_token(request)
    if not nonce or not token or not hmac.compare_digest(token, _sign(request.app.state.secret, nonce)):
        settings = request.app.state.settings
        if not nonce and settings.cookies_secure and request.url.scheme != "https":
            raise Forbidden(insecure_transport_message(settings.public_origin))
        raise Forbidden("CSRF token missing or invalid; reload the page and try again.")


def insecure_transport_message(origin: str) -> str:
    """Why a form posted over plain http fails when the cookies are Secure, and where to sign in instead.

    The browser keeps Secure cookies away from http://, so the request arrives without its CSRF cookie:
    saying "token invalid" would send people reloading a page that can never work.
    """
    return (
        f"This server is configured for {origin} (PREFLOOP_BASE_URL), so its cookies are only sent over HTTPS "
        f"and this plain-http request arrived without them. Sign in through {origin}/login, i.e. through the "
        "TLS proxy. If you did, the proxy must send X-Forwarded-Proto: https and be trusted by the server "
        "(prefloop serve --forwarded-allow-ips)."
    )
