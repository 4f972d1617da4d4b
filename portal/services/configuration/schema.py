"""The studio configuration document: its shape, its limits, and how partial changes merge into it.

One validated document per version holds branding, package display, booking rules and the policy. Validation is
the injection guard for branding: colours are `#rrggbb` only, the logo is an https URL without characters that
could break out of an attribute or a CSS value, fonts come from an allowlist that maps to fixed CSS font stacks,
and texts are single lines (the welcome text may have line breaks) without control characters; templates escape
texts when they show them. A value that fails is a field error naming its path (`branding.primary_color`), never
stored.
"""
from __future__ import annotations

import copy
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

#: Fonts a studio may pick, and the CSS font stacks they stand for (nothing else ever reaches the stylesheet).
FONTS = {
    "system": 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif',
    "humanist": '"Gill Sans", "Gill Sans MT", Calibri, "Trebuchet MS", sans-serif',
    "serif": 'Georgia, Cambria, "Times New Roman", Times, serif',
    "rounded": 'ui-rounded, "Hiragino Maru Gothic ProN", Quicksand, Comfortaa, Manjari, sans-serif',
    "mono": 'ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace',
}
#: Checkout Sessions expire between 30 minutes and 24 hours after creation (Stripe's limits). A hold lasts as long as
#: its session, which the portal opens one minute longer than the hold (`checkout.hold_expiry`), so a hold may last
#: up to 24 hours less that minute.
HOLD_MINUTES = (30, 24 * 60 - 1)
SLOT_STEPS = (5, 10, 15, 20, 30, 60)
DISPLAY_NAME_MAX, WELCOME_MAX, LOGO_URL_MAX = 80, 1000, 500

# `fullmatch`, not `match` with `$`: `$` also matches before a trailing newline, which would let "#aabbcc\n" through.
HEX = re.compile(r"#[0-9a-fA-F]{6}")
# C0 and C1 control characters, DEL, and the Unicode line and paragraph separators: none belongs in one line of
# text (an email subject, a page title), and none is needed in a paragraph (line breaks are \n).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_URL_FORBIDDEN = re.compile(r"[\s\"'()<>\\`{};]")


def _color(value: str) -> str:
    if not HEX.fullmatch(value):
        raise ValueError("must be a colour written #rrggbb, like #3b2f5c")
    return value.lower()


def _display_name(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be one line of text, without control characters")
    value = value.strip()
    if not value:
        raise ValueError("is required")
    if len(value) > DISPLAY_NAME_MAX:
        raise ValueError(f"must be at most {DISPLAY_NAME_MAX} characters")
    return value


def _paragraphs(value: str) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if _CONTROL.search(value.replace("\n", "")):
        raise ValueError("must be plain text, without control characters")
    value = value.strip()
    if len(value) > WELCOME_MAX:
        raise ValueError(f"must be at most {WELCOME_MAX} characters")
    return value


def _logo_url(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    if _CONTROL.search(value) or _URL_FORBIDDEN.search(value) or len(value) > LOGO_URL_MAX:
        raise ValueError("must be an https:// address of an image, without spaces, quotes or brackets")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError("must be an https:// address of an image, without spaces, quotes or brackets")
    return value


Color = Annotated[StrictStr, AfterValidator(_color)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Branding(_Section):
    display_name: Annotated[StrictStr, AfterValidator(_display_name)]
    primary_color: Color
    accent_color: Color
    logo_url: Annotated[StrictStr, AfterValidator(_logo_url)] = ""
    font: Literal[tuple(FONTS)] = "system"  # type: ignore[valid-type]
    welcome_text: Annotated[StrictStr, AfterValidator(_paragraphs)] = ""


class BookingRules(_Section):
    min_notice_minutes: Annotated[StrictInt, Field(ge=0, le=14 * 24 * 60)] = 120
    slot_interval_minutes: Literal[SLOT_STEPS] = 30  # type: ignore[valid-type]
    buffer_minutes: Annotated[StrictInt, Field(ge=0, le=120)] = 10
    hold_minutes: Annotated[StrictInt, Field(ge=HOLD_MINUTES[0], le=HOLD_MINUTES[1])] = 30
    horizon_days: Annotated[StrictInt, Field(ge=1, le=366)] = 90
    series_max_weeks: Annotated[StrictInt, Field(ge=1, le=52)] = 16  # the longest weekly series (a term)
    waitlist_offer_minutes: Annotated[StrictInt, Field(ge=15, le=7 * 24 * 60)] = 120
    makeup_valid_days: Annotated[StrictInt, Field(ge=1, le=730)] = 90


class Policy(_Section):
    cancel_window_hours: Annotated[StrictInt, Field(ge=0, le=30 * 24)] = 24
    late_cancel_fee_percent: Annotated[StrictInt, Field(ge=0, le=100)] = 50
    reschedule_lead_hours: Annotated[StrictInt, Field(ge=0, le=30 * 24)] = 24
    max_reschedules: Annotated[StrictInt, Field(ge=0, le=20)] = 2
    late_cancel_makeup: StrictBool = False


class PackageDisplay(_Section):
    position: Annotated[StrictInt, Field(ge=0, le=10_000)] = 0
    visible: StrictBool = True
    featured: StrictBool = False


class Document(_Section):
    branding: Branding
    booking: BookingRules = BookingRules()
    policy: Policy = Policy()
    packages: dict[Annotated[StrictStr, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")], PackageDisplay] = {}


class InvalidConfig(ValueError):
    """The document does not validate; `fields` maps each failing path to why."""

    def __init__(self, fields: dict[str, str]):
        super().__init__("; ".join(f"{path}: {why}" for path, why in fields.items()))
        self.fields = fields


def _path(location: tuple) -> str:
    return ".".join(str(part) for part in location if part not in ("function-after", "[key]")) or "config"


_MESSAGES = {
    "extra_forbidden": "is not a setting",
    "missing": "is required",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "bool_type": "must be true or false",
    "dict_type": "must be an object of settings",
    "model_type": "must be an object of settings",
}


def _why(error: dict) -> str:
    kind, context = error["type"], error.get("ctx") or {}
    if error["loc"] and error["loc"][-1] == "[key]":
        return "is not a package slug (lower-case letters, digits and dashes)"
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {context['le']}"
    if kind == "literal_error":
        return "must be one of " + context.get("expected", "the choices offered").replace("'", "")
    message = error["msg"]
    return message.removeprefix("Value error, ").removeprefix("value error, ")


def validate(document: Any) -> dict:
    """The document, normalised (colours in lower case, texts trimmed), or `InvalidConfig`."""
    try:
        return Document.model_validate(document).model_dump(mode="json")
    except ValidationError as error:
        fields: dict[str, str] = {}
        for problem in error.errors(include_url=False):
            fields.setdefault(_path(problem["loc"]), _why(problem))
        raise InvalidConfig(fields) from None


def merge(base: dict, changes: Any) -> dict:
    """`changes` (a partial document) laid over `base`, section by section and package by package. Anything that is
    not an object where the document has sections is left for validation to refuse."""
    if not isinstance(changes, dict):
        raise InvalidConfig({"config": "must be an object of settings"})
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def flatten(document: dict, prefix: str = "") -> dict[str, Any]:
    """`{"branding": {"font": "serif"}}` → `{"branding.font": "serif"}`. An empty section has no fields."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def diff(before: dict, after: dict) -> list[dict]:
    """Field-level changes from `before` to `after`: `[{"path", "before", "after"}]`, in path order."""
    old, new = flatten(before), flatten(after)
    return [{"path": path, "before": old.get(path), "after": new.get(path)}
            for path in sorted(old.keys() | new.keys()) if old.get(path) != new.get(path)]
