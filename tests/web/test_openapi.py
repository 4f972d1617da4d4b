"""The shipped OpenAPI document describes what the API really serves."""
from __future__ import annotations

import re

import pytest
import yaml

from portal.config import PROJECT_ROOT
from tests.factories import make_studio, next_weekday

SPEC = yaml.safe_load((PROJECT_ROOT / "docs" / "openapi.yaml").read_text())


def _check(value, schema):
    """A small structural check: required keys present and JSON types right, recursively."""
    if "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "oneOf" in schema:
        matches = 0
        for option in schema["oneOf"]:
            try:
                _check(value, option)
            except AssertionError:
                continue
            matches += 1
        assert matches == 1, f"{value!r} matches {matches} of the oneOf schemas"
        return
    kind = schema.get("type")
    python = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float), "boolean": bool}
    if kind:
        assert isinstance(value, python[kind]), f"{value!r} is not {kind}"
    if kind == "object":
        missing = set(schema.get("required", [])) - set(value)
        assert not missing, f"missing {missing}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(value[key], sub)
    if kind == "array":
        for item in value:
            _check(item, schema["items"])
    if "enum" in schema:
        assert value in schema["enum"]


def test_every_documented_path_is_served(app):
    rules = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule) for r in app.url_map.iter_rules()}
    documented = {p.replace("{studio}", "{studio_slug}") for p in SPEC["paths"]}
    assert documented <= rules


@pytest.fixture
def studio(app_ctx):
    return make_studio()


def test_packages_response_matches_the_schema(client, studio):
    body = client.get("/s/melody-and-meter/api/packages").get_json()
    _check(body, SPEC["paths"]["/s/{studio}/api/packages"]["get"]["responses"]["200"]["content"]
           ["application/json"]["schema"])
    assert body["packages"]


def test_availability_and_error_responses_match_the_schema(client, studio):
    day = next_weekday(2).isoformat()
    ok = client.get(f"/s/melody-and-meter/api/availability?package=lesson-30&resource=piano&date={day}")
    responses = SPEC["paths"]["/s/{studio}/api/availability"]["get"]["responses"]
    _check(ok.get_json(), responses["200"]["content"]["application/json"]["schema"])
    assert ok.get_json()["slots"]
    ranged = client.get(f"/s/melody-and-meter/api/availability?package=lesson-30&resource=piano&from={day}&to={day}")
    _check(ranged.get_json(), responses["200"]["content"]["application/json"]["schema"])
    assert ranged.get_json()["days"][0]["slots"] == ok.get_json()["slots"]
    bad = client.get("/s/melody-and-meter/api/availability?package=lesson-30")
    assert str(bad.status_code) in responses
    _check(bad.get_json(), responses["422"]["content"]["application/json"]["schema"])
