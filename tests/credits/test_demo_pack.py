"""The demo seed puts a lesson pack on sale, once, however often it runs."""
from __future__ import annotations

from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import LessonPack, Studio
from portal.services.demo import seed_demo


def test_the_demo_seed_sells_a_ten_lesson_pack_and_adds_it_once(app):
    with app.app_context():
        seed_demo(utcnow())
        seed_demo(utcnow())
        with tenancy.all_tenants():
            studio = db.session.scalar(select(Studio).where(Studio.slug == "melody-and-meter"))
            packs = db.session.scalars(select(LessonPack).where(LessonPack.studio_id == studio.id)).all()
            assert [(p.slug, p.lesson_count, p.lesson_minutes, p.valid_days, p.price_minor, p.currency, p.active)
                    for p in packs] == [("ten-60", 10, 60, 183, 58500, "usd", True)]
