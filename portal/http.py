"""Cross-cutting HTTP behaviour: security headers, htmx detection, error pages."""
from __future__ import annotations

from flask import Flask, Response, current_app, jsonify, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from portal.services.errors import DomainError

STRIPE_CHECKOUT_ORIGIN = "https://checkout.stripe.com"


def content_security_policy(checkout_origins: str) -> str:
    """No inline script or style. Forms may lead to Checkout: the booking form's 303 goes there."""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
            f"font-src 'self'; connect-src 'self'; form-action 'self' {checkout_origins}; frame-ancestors 'none'; "
            "base-uri 'self'; object-src 'none'")


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def is_htmx() -> bool:
    """A request htmx made for a fragment (a boosted navigation wants the full page)."""
    headers = request.headers
    return (headers.get("HX-Request") == "true" and headers.get("HX-Boosted") != "true"
            and headers.get("HX-History-Restore-Request") != "true")


def external_url(endpoint: str, **values) -> str:
    """An absolute URL for links that leave the site (Stripe redirects, emails): PORTAL_BASE_URL when set."""
    base = current_app.config["PORTAL_SETTINGS"].portal_base_url
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def wants_json() -> bool:
    if "/api/" in request.path or request.path.startswith(("/webhooks/", "/healthz", "/readyz")):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", current_app.config["PORTAL_CSP"])
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if "HX-Request" in request.headers or request.endpoint in {"studio.package"}:
        response.vary.add("HX-Request")
    return response


TITLES = {400: "Bad request", 401: "Please log in", 403: "Not allowed", 404: "Not found",
          405: "Not allowed", 409: "Already taken", 422: "Please check your input", 429: "Slow down",
          500: "Something went wrong", 503: "Temporarily unavailable"}


def error_response(status: int, message: str, code: str | None = None):
    if wants_json():
        return jsonify(error=code or TITLES.get(status, "error").lower().replace(" ", "_"), detail=message), status
    return render_template("errors/error.html", status=status, title=TITLES.get(status, "Error"),
                           message=message), status


def init_app(app: Flask) -> None:
    # Stripe hosts Checkout on its own origin; a stand-in (STRIPE_API_BASE) serves it next to its API.
    api_base = app.config["PORTAL_SETTINGS"].stripe_api_base
    origins = " ".join(dict.fromkeys([STRIPE_CHECKOUT_ORIGIN] + ([_origin(api_base)] if api_base else [])))
    app.config["PORTAL_CSP"] = content_security_policy(origins)
    app.after_request(_security_headers)

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError):
        return error_response(400, "Your form expired or came from elsewhere. Reload the page and try again.",
                              "csrf_failed")

    @app.errorhandler(DomainError)
    def _domain(error: DomainError):
        return error_response(error.status, error.message, error.code)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if error.code and error.code < 400:
            return error
        return error_response(error.code or 500, error.description or TITLES.get(error.code, "Error"))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "We could not complete that. Please try again in a moment.", "internal")
