"""The stylesheet a configuration version gives a studio's pages: CSS custom properties, nothing else.

Only validated values reach it (`schema`): colours are `#rrggbb`, the font is one of the fixed stacks of
`schema.FONTS`. Each value is checked again here, as it is written, so even a document that bypassed validation
cannot put anything else in a stylesheet (a value that fails falls back to the default). The text colour on the
primary and accent colours is chosen for contrast (WCAG relative luminance), so a light brand colour still gets
readable buttons.
"""
from __future__ import annotations

import hashlib

from portal.services.configuration.schema import FONTS, HEX

#: Pure black and white: against one of them every colour reaches at least 4.58:1 (the two meet at a luminance of
#: about 0.18), so text on a brand colour always passes WCAG AA, where a softer near-black would not.
DARK_INK, LIGHT_INK = "#000000", "#ffffff"
DEFAULTS = {"primary_color": "#4b3fa7", "accent_color": "#c8553d", "font": "system"}


def _luminance(color: str) -> float:
    def channel(hex_pair: str) -> float:
        value = int(hex_pair, 16) / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(color[i:i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ink_on(color: str) -> str:
    """White or near-black, whichever contrasts more with `color`."""
    luminance = _luminance(color)
    white = 1.05 / (luminance + 0.05)
    black = (luminance + 0.05) / (_luminance(DARK_INK) + 0.05)
    return LIGHT_INK if white >= black else DARK_INK


def _color(branding: dict, name: str) -> str:
    value = branding.get(name)
    return value.lower() if isinstance(value, str) and HEX.fullmatch(value) else DEFAULTS[name]


def stylesheet(document: dict) -> str:
    branding = document.get("branding") or {}
    primary, accent = _color(branding, "primary_color"), _color(branding, "accent_color")
    font = branding.get("font")
    stack = FONTS[font] if isinstance(font, str) and font in FONTS else FONTS[DEFAULTS["font"]]
    return (":root {\n"
            f"  --brand: {primary};\n  --brand-ink: {ink_on(primary)};\n"
            f"  --accent: {accent};\n  --accent-ink: {ink_on(accent)};\n"
            f"  --brand-font: {stack};\n"
            "}\n")


def etag(css: str) -> str:
    """The stylesheet's entity tag: a digest of its text, so the same version's stylesheet keeps its tag on every
    worker and a changed rendering gets a new one."""
    return "theme-" + hashlib.sha256(css.encode()).hexdigest()[:20]
