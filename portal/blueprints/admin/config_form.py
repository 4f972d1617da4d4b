"""The configuration draft editor's form: a document shown as form fields, and form fields read back into a
document, keeping what was typed (as typed) for a form shown again with its errors.

Fields are named by their document path (`branding.primary_color`, `packages.lesson-60.visible`), so a validation
error (`schema.InvalidConfig.fields`) lands next to its field. A colour has a colour picker and a text field: a
typed `#rrggbb` wins when it differs from the value the form was shown with, else the picker's value is taken (the
small `admin-config.js` keeps the two in step when scripts run).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from portal.models import Package
from portal.services.configuration import FONTS, display, schema

COLORS = ("primary_color", "accent_color")
TEXTS = ("display_name", "logo_url", "welcome_text")
NUMBERS = {
    "booking": ("min_notice_minutes", "buffer_minutes", "hold_minutes", "horizon_days", "series_max_weeks",
                "waitlist_offer_minutes", "makeup_valid_days"),
    "policy": ("reschedule_lead_hours", "max_reschedules", "cancel_window_hours", "late_cancel_fee_percent"),
}
_WHOLE = re.compile(r"-?[0-9]{1,9}")
FONT_LABELS = {"system": "System (the device's own)", "humanist": "Humanist sans", "serif": "Serif",
               "rounded": "Rounded", "mono": "Monospace"}


@dataclass
class Form:
    """What the editor shows: a value per field path (text as typed, booleans as booleans) and errors by path."""

    values: dict[str, Any]
    packages: list[display.ShownPackage]
    errors: dict[str, str] = field(default_factory=dict)
    note: str = ""
    fonts: dict[str, str] = field(default_factory=lambda: {name: FONT_LABELS.get(name, name) for name in FONTS})
    steps: tuple[int, ...] = schema.SLOT_STEPS
    hold_range: tuple[int, int] = schema.HOLD_MINUTES

    def value(self, path: str) -> Any:
        return self.values.get(path, "")

    def picker(self, path: str) -> str:
        """A value `<input type="color">` can show: the typed colour when it is one, else the one shown before."""
        typed = str(self.values.get(path, ""))
        if schema.HEX.fullmatch(typed):
            return typed.lower()
        was = str(self.values.get(path + ".was", ""))
        return was.lower() if schema.HEX.fullmatch(was) else "#000000"

    def errors_under(self, prefix: str) -> dict[str, str]:
        return {path: why for path, why in self.errors.items() if path.startswith(prefix)}


def of_document(document: dict, packages: list[Package]) -> Form:
    """The form filled from a whole document."""
    values: dict[str, Any] = {}
    branding = document["branding"]
    for name in (*COLORS, *TEXTS, "font"):
        values[f"branding.{name}"] = branding.get(name, "")
    for name in COLORS:
        values[f"branding.{name}.was"] = branding[name]
    for section, names in NUMBERS.items():
        for name in names:
            values[f"{section}.{name}"] = str(document[section][name])
    values["booking.slot_interval_minutes"] = str(document["booking"]["slot_interval_minutes"])
    values["policy.late_cancel_makeup"] = document["policy"]["late_cancel_makeup"]
    shown = display.arrange(document, packages)
    for item in shown:
        slug = item.package.slug
        values[f"packages.{slug}.position"] = str(item.position if item.position <= 10_000 else len(shown))
        values[f"packages.{slug}.visible"] = item.visible
        values[f"packages.{slug}.featured"] = item.featured
    return Form(values, shown)


def _color(form: Mapping[str, str], path: str) -> str:
    typed = (form.get(path) or "").strip()
    was = (form.get(path + ".was") or "").strip()
    picked = (form.get(path + ".picker") or "").strip()
    if typed.lower() != was.lower():
        return typed
    if picked and picked.lower() != was.lower():
        return picked
    return typed


def read(form: Mapping[str, str], document: dict, packages: list[Package]) -> tuple[dict, Form]:
    """The document the submitted form describes (laid over `document`, the one it was shown from) and the form
    to show again if it is refused: typed values kept, errors of fields that are not even numbers already set."""
    shown = display.arrange(document, packages)
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    changes: dict[str, dict] = {"branding": {}, "booking": {}, "policy": {}, "packages": {}}

    for name in COLORS:
        path = f"branding.{name}"
        values[path] = _color(form, path)
        values[path + ".was"] = (form.get(path + ".was") or "").strip()
        changes["branding"][name] = values[path]
    for name in TEXTS:
        path = f"branding.{name}"
        values[path] = form.get(path) or ""
        changes["branding"][name] = values[path]
    values["branding.font"] = changes["branding"]["font"] = form.get("branding.font") or ""

    def whole(path: str) -> int | None:
        raw = (form.get(path) or "").strip()
        values[path] = raw
        if not raw:
            errors[path] = "is required"
        elif not _WHOLE.fullmatch(raw):
            errors[path] = "must be a whole number"
        else:
            return int(raw)
        return None

    for section, names in NUMBERS.items():
        for name in names:
            changes[section][name] = whole(f"{section}.{name}")
    changes["booking"]["slot_interval_minutes"] = whole("booking.slot_interval_minutes")
    values["policy.late_cancel_makeup"] = changes["policy"]["late_cancel_makeup"] = bool(
        form.get("policy.late_cancel_makeup"))
    for item in shown:
        slug = item.package.slug
        position = whole(f"packages.{slug}.position")
        visible = values[f"packages.{slug}.visible"] = bool(form.get(f"packages.{slug}.visible"))
        featured = values[f"packages.{slug}.featured"] = bool(form.get(f"packages.{slug}.featured"))
        changes["packages"][slug] = {"position": position, "visible": visible, "featured": featured}
    result = Form(values, shown, errors, note=(form.get("note") or "").strip())
    return schema.merge(document, changes), result
