"""The stylesheet a configuration version gives a studio's pages: CSS custom properties, nothing else.

Only validated values reach it (`schema`): colours are `#rrggbb`, the font is one of the fixed stacks of
`schema.FONTS`. The text colour on the primary and accent colours is chosen for contrast (WCAG relative
luminance), so a light brand colour still gets readable buttons.
"""
from __future__ import annotations

from portal.services.configuration.schema import FONTS

DARK_INK, LIGHT_INK = "#111111", "#ffffff"


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


def stylesheet(document: dict) -> str:
    branding = document["branding"]
    primary, accent = branding["primary_color"], branding["accent_color"]
    return (":root {\n"
            f"  --brand: {primary};\n  --brand-ink: {ink_on(primary)};\n"
            f"  --accent: {accent};\n  --accent-ink: {ink_on(accent)};\n"
            f"  --brand-font: {FONTS[branding['font']]};\n"
            "}\n")
