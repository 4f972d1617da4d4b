"""How the published (or previewed) configuration shows a studio's packages: order, visibility, featured."""
from __future__ import annotations

from dataclasses import dataclass

from portal.models import Package


@dataclass(frozen=True)
class ShownPackage:
    package: Package
    position: int
    visible: bool
    featured: bool


def arrange(document: dict, packages: list[Package]) -> list[ShownPackage]:
    """Every package with its display settings, in display order. A package the configuration does not mention
    (added to the catalogue since) is visible and comes after the others, in the order it was added."""
    settings = document.get("packages", {})
    unlisted = 10_001
    shown = []
    for package in sorted(packages, key=lambda p: p.id):
        entry = settings.get(package.slug)
        if entry is None:
            shown.append(ShownPackage(package, unlisted, True, False))
            unlisted += 1
        else:
            shown.append(ShownPackage(package, entry["position"], entry["visible"], entry["featured"]))
    return sorted(shown, key=lambda s: (s.position, s.package.id))


def listed(document: dict, packages: list[Package]) -> list[ShownPackage]:
    """What a student sees: active, visible packages, featured first, then in display order."""
    shown = [s for s in arrange(document, packages) if s.visible and s.package.active]
    return sorted(shown, key=lambda s: (not s.featured, s.position, s.package.id))
