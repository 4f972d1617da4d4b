"""Cross-cutting HTTP behaviour: security headers, caching of private pages, page-or-fragment rendering, errors."""
from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, Response, current_app, g, jsonify, make_response, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.http import is_resource_modified

from portal import freshness
from portal.clock import utcnow
from portal.config import PROJECT_ROOT
from portal.extensions import unlimited
from portal.lru import LRU, app_cache
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


def render(page: str, fragment: str | None = None, status: int = 200, **context) -> Response:
    """The full `page`, or only `fragment` for an htmx request. One URL then answers two ways, so the response
    always says it varies on `HX-Request` (a cache must not hand the fragment to a full-page visit)."""
    template = fragment if fragment is not None and is_htmx() else page
    response = make_response(render_template(template, **context), status)
    if fragment is not None:
        response.vary.add("HX-Request")
    return response


def _anonymous() -> bool:
    config = current_app.config
    return not any(name in request.cookies for name in (config["SESSION_COOKIE_NAME"],
                                                        config.get("REMEMBER_COOKIE_NAME", "remember_token")))


@functools.cache
def release_tag() -> str:
    """A digest of the code and templates that render the pages, so a deploy changes every versioned `ETag`.

    Read once per process from the files themselves (not their times), so every worker of one release, on any
    machine, gives the same tag.
    """
    digest = hashlib.sha256()
    for folder, pattern in (("portal", "*.py"), ("templates", "*.html")):
        for path in sorted((PROJECT_ROOT / folder).rglob(pattern)):
            digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _versioned_tag(version) -> str:
    """The tag of an answer fixed by `version` (what it depends on besides its URL) and the URL itself."""
    headers = request.headers
    key = repr((release_tag(), version, request.full_path, headers.get("HX-Request"), headers.get("HX-Boosted"),
                headers.get("HX-History-Restore-Request")))
    return "v" + hashlib.sha256(key.encode()).hexdigest()[:32]


def public(view=None, *, version=None, modified=None, reuse=None):
    """For a public page or answer that depends only on its URL (and `HX-Request`), never on who asks.

    It answers a conditional GET: an `ETag`, and `304` when `If-None-Match` still matches (the studio's catalogue,
    calendar, configuration or bookings changed: the tag differs). A visitor without a session (no cookie) gets
    `Cache-Control` a shared cache such as a CDN honours for `PUBLIC_CACHE_SECONDS`, while browsers revalidate
    every time; anonymous pages set no cookie (the base template gives a CSRF token, and so a session, to
    logged-in people only). Logged-in people's pages stay `private, no-store` (`_private_pages`), and
    `Vary: Cookie` keeps the two apart in any cache.

    By default the tag is a digest of the body, so the answer is rendered before it can be compared. When
    everything the answer depends on is known beforehand, `version` (a callable returning it, e.g. the studio
    row's configuration and calendar versions) gives the tag without rendering: an anonymous conditional repeat
    is answered `304` before the view runs. Answers that read bookings or the clock (free times) keep the body
    digest.

    `reuse` (a callable returning everything besides the URL and the clock that the answer depends on, e.g. the
    studio row and its bookings version) keeps anonymous answers in this process and serves them again while that
    stamp is unchanged and the clock has not reached the time until which the answer holds (`portal.freshness`:
    the next hold expiry, the first shown time leaving the notice period, the studio's midnight). A repeat then
    costs the studio lookup only, and a conditional repeat is `304` without rendering.

    `modified` (a callable returning when what the answer depends on last changed, e.g. the studio row's
    `changed_at`) adds `Last-Modified` for anonymous visitors, and `If-Modified-Since` is answered `304` from it
    (when the request has no `If-None-Match`, which wins: RFC 9110 §13.2.2). See `_last_modified`.
    """
    if view is None:
        return functools.partial(public, version=version, modified=modified, reuse=reuse)

    def _shared(response: Response) -> Response:
        response.vary.add("Cookie")
        if _anonymous():
            seconds = current_app.config["PORTAL_SETTINGS"].public_cache_seconds
            response.headers["Cache-Control"] = (f"public, max-age=0, s-maxage={seconds}" if seconds > 0
                                                 else "public, no-cache")
        return response

    def _dated(response: Response, last_modified: datetime | None) -> Response:
        if last_modified is not None:
            response.last_modified = last_modified
        if request.environ.get("HTTP_IF_NONE_MATCH") or request.environ.get("HTTP_IF_MODIFIED_SINCE"):
            return response.make_conditional(request)
        return response  # nothing to compare: a kept answer's repeat costs no header parsing

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        anonymous_read = request.method in ("GET", "HEAD") and _anonymous()
        # Dates are for anonymous visitors, as versioned tags are: a logged-in person's page differs (their name).
        last_modified = _last_modified(modified()) if modified is not None and anonymous_read else None
        kept = g.pop("kept_answer", None)  # found by the studio lookup (`take_kept`)
        if kept is not None:
            return _dated(kept, last_modified)
        stamp = g.pop("answer_stamp", None)
        if stamp is None and reuse is not None and anonymous_read:
            stamp = reuse()
            kept = _kept(stamp)
            if kept is not None:
                return _dated(kept, last_modified)
        tag = None
        if version is not None and anonymous_read:
            tag = _versioned_tag(version())
            if not is_resource_modified(request.environ, etag=tag, last_modified=last_modified):
                not_modified = Response(status=304)
                not_modified.set_etag(tag)  # a 304 repeats the validator it matched, but no date (RFC 9110 §15.4.5)
                not_modified.vary.add("HX-Request")
                return _shared(not_modified)
        with freshness.measured() as fresh:
            response = make_response(view(*args, **kwargs))
        if request.method not in ("GET", "HEAD") or response.status_code != 200:
            return response
        _shared(response)
        if tag is not None:
            response.set_etag(tag)
        else:
            response.add_etag()
        if stamp is not None:
            _keep(stamp, fresh.until, response)  # as an anonymous visitor gets it (`_shared`), to serve as it is
        return _dated(response, last_modified)

    wrapper.reads_only = True  # a public answer never writes (see `portal.blueprints.context.studio_scoped`)
    unlimited(wrapper)  # and carries no rate limit
    wrapper.reuse = reuse
    return wrapper


def _last_modified(changed: datetime) -> datetime | None:
    """The `Last-Modified` of an answer whose inputs last changed at `changed`.

    Never earlier than the moment this process began serving (`serving_since`): a deploy can change any page
    without changing the studio, and the process runs the code of its own deploy. None within a second of that
    date: HTTP dates count whole seconds, so another change in the same second would go unseen by
    `If-Modified-Since` (such a date is only a weak validator, RFC 9110 §8.8.2.2); the answer then has its `ETag`
    alone.
    """
    at = max(changed, current_app.extensions["serving_since"])
    return at if utcnow() - at >= timedelta(seconds=1) else None


def may_serve_kept(view) -> bool:
    """Whether this request could be answered by an answer `view` keeps: an anonymous GET of a `public(reuse=...)`
    view."""
    return getattr(view, "reuse", None) is not None and request.method in ("GET", "HEAD") and _anonymous()


def take_kept(view) -> bool:
    """Before the view runs, with `g.studio` holding what its `reuse` reads (the studio lookup's row): find the
    answer kept for this request, to be served instead of running the view. Either way the stamp is left for the
    view, which keeps its answer under it: a stamp read before the answer's own reads can only be older than them,
    so a change in between makes the next request miss, never serve a stale answer."""
    stamp = g.answer_stamp = view.reuse()
    kept = _kept(stamp)
    if kept is None:
        return False
    g.kept_answer = kept
    return True


@dataclass(frozen=True)
class _Answer:
    stamp: tuple
    fresh_until: datetime | None  # None: it holds until the stamp changes
    headers: tuple[tuple[str, str], ...]
    body: bytes


#: Anonymous answers a process keeps for `public(reuse=...)` (least recently used dropped first): at most this many,
#: and at most this many bytes of them. The key is the whole URL, query string included, so anyone can make new
#: entries; the byte bound is what keeps a process's memory in hand (a month's package page is tens of KiB).
ANSWERS_KEPT = 1024
ANSWER_BYTES_KEPT = 16 * 1024 * 1024


def _weight(answer: _Answer) -> int:
    return len(answer.body) + sum(len(name) + len(value) for name, value in answer.headers)


def _answers() -> LRU:
    return app_cache("public_answers", ANSWERS_KEPT, max_bytes=ANSWER_BYTES_KEPT, weigh=_weight)


def _answer_key() -> tuple:
    headers = request.headers
    return (request.full_path, headers.get("HX-Request"), headers.get("HX-Boosted"),
            headers.get("HX-History-Restore-Request"))


def _kept(stamp: tuple) -> Response | None:
    """The answer kept for this URL, if it was made for `stamp` and the clock has not passed its limit."""
    answer = _answers().get(_answer_key())
    if answer is None or answer.stamp != stamp or (answer.fresh_until is not None
                                                   and utcnow() >= answer.fresh_until):
        return None
    return Response(answer.body, headers=list(answer.headers))


def _keep(stamp: tuple, fresh_until: datetime | None, response: Response) -> None:
    if response.direct_passthrough or response.is_streamed or "Set-Cookie" in response.headers:
        return
    _answers().put(_answer_key(), _Answer(stamp, fresh_until, tuple(response.headers.items()), response.get_data()))


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


_SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "strict-origin-when-cross-origin"),
                     ("X-Frame-Options", "DENY"), ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"))
_HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")


def _security_headers(response: Response) -> Response:
    """Every response's security headers, unless the view set its own (one pass over the headers, not one each)."""
    wanted = [("Content-Security-Policy", current_app.config["PORTAL_CSP"]), *_SECURITY_HEADERS]
    if request.is_secure:
        wanted.append(_HSTS)
    present = {name.lower() for name in response.headers.keys()}
    response.headers.extend([(name, value) for name, value in wanted if name.lower() not in present])
    return response


def _private_pages(response: Response) -> Response:
    """A page rendered for a logged-in person (their lessons, the admin, the ops console, even a public page
    showing their name) must not be kept by a browser's back-forward cache or any shared cache."""
    user = g.get("_login_user")  # set once anything in the request looked at the user (Flask-Login)
    if request.endpoint != "static" and user is not None and user.is_authenticated:
        response.headers["Cache-Control"] = "private, no-store"
        response.vary.add("Cookie")
    return response


TITLES = {400: "Bad request", 401: "Please log in", 403: "Not allowed", 404: "Not found",
          405: "Not allowed", 409: "Not possible right now", 413: "Too large", 422: "Please check your input",
          429: "Too many attempts", 500: "Something went wrong", 503: "Temporarily unavailable"}


def _retry_after_seconds() -> int:
    """Seconds until the rate limit that refused this request lets the next one through."""
    from portal.extensions import limiter

    current = limiter.current_limit
    if current is None:
        return 60
    return max(1, math.ceil(current.reset_at - time.time()))


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
    app.extensions["serving_since"] = utcnow()  # see `_last_modified`
    app.after_request(_security_headers)
    app.after_request(_private_pages)

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError):
        return error_response(400, "Your form expired or came from elsewhere. Reload the page and try again.",
                              "csrf_failed")

    @app.errorhandler(DomainError)
    def _domain(error: DomainError):
        return error_response(error.status, error.message, error.code)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(error: RequestEntityTooLarge):
        limit_kb = (app.config.get("MAX_CONTENT_LENGTH") or 0) // 1024
        return error_response(413, f"That was more than we accept in one go ({limit_kb} KB at most).", "too_large")

    @app.errorhandler(429)
    def _too_many(error: HTTPException):
        seconds = _retry_after_seconds()
        wait = f"{seconds} second{'s' if seconds != 1 else ''}"
        response, status = error_response(429, f"Too many attempts. Please try again in {wait}.", "rate_limited")
        response = make_response(response, status)
        response.headers["Retry-After"] = str(seconds)
        return response

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if error.code and error.code < 400:
            return error
        return error_response(error.code or 500, error.description or TITLES.get(error.code, "Error"))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "We could not complete that. Please try again in a moment.", "internal")
