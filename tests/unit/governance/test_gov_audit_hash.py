"""Canonical payloads and row hashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from bentogate.governance.audit import canonical_json, row_hash
from bentogate.governance.schema import AuditRow


def _row(**changes: object) -> AuditRow:
    fields: dict[str, object] = dict(
        id=1,
        at=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        environment="prod",
        actor="a",
        action="promote",
        model="m",
        version="1",
        from_state="gated",
        to_state="production",
        outcome="ok",
        reason="r",
        payload="{}",
        prev_hash="0" * 64,
    )
    fields.update(changes)
    return AuditRow(**fields)


def test_canonical_json_is_deterministic_and_safe() -> None:
    assert canonical_json({"b": 1, "a": [1.5, None]}) == '{"a":[1.5,null],"b":1}'
    assert json.loads(canonical_json({"x": float("nan"), "y": {3}, "z": datetime(2025, 1, 1)}))
    assert canonical_json({"é": "ü"}) == '{"é":"ü"}'


def test_hash_covers_every_field() -> None:
    base = row_hash(_row())
    for name, value in [
        ("id", 2),
        ("actor", "b"),
        ("reason", "s"),
        ("payload", '{"a":1}'),
        ("prev_hash", "1" * 64),
        ("outcome", "refused"),
        ("model", None),
        ("at", datetime(2025, 1, 2, 3, 4, 5, 7, tzinfo=UTC)),
    ]:
        assert row_hash(_row(**{name: value})) != base, name


def test_hash_is_independent_of_the_time_zone_spelling() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    plus_two = at.astimezone(timezone(timedelta(hours=2)))
    assert row_hash(_row(at=at)) == row_hash(_row(at=plus_two))
