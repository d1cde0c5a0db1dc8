"""People as PostgreSQL roles: each does only their part, the audit rows carry their role names
(no --actor anywhere), and what a role may not do is refused by the database itself, through
the CLI or by hand-written SQL, and audited as refused.

Each test gets a database of its own with the group roles of ``bentogate db roles`` and one
login role per person (``governance_support.people_database``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from cli_support import run
from governance_support import People, gate, people_database

from bentogate.governance import Registry, State

pytestmark = pytest.mark.integration

#: person → their duty (the group role granted to their login role)
PEOPLE = {
    "dana": "developer",
    "vic": "validator",
    "val2": "validator",
    "ana": "approver",
    "rel": "release",
}


@dataclass
class Org:
    """The test's people (:class:`governance_support.People`) and the state directory the CLI
    uses."""

    people: People
    home: Path

    @property
    def urls(self) -> dict[str, str]:
        return self.people.urls

    @property
    def roles(self) -> dict[str, str]:
        return self.people.roles

    @property
    def prefix(self) -> str:
        return self.people.prefix

    def cli(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, who: str,
        *args: str,
    ) -> tuple[int, str, str]:  # fmt: skip
        """Run ``bentogate`` as ``who``: connected as their role, naming nobody."""
        monkeypatch.setenv("BENTOGATE_DB_URL", self.urls[who])
        return run(capsys, "--home", str(self.home), *args)

    def sql(self, who: str, statement: str) -> None:
        """Run hand-written SQL as ``who``."""
        dsn = sa.make_url(self.urls[who]).set(drivername="postgresql")
        with psycopg.connect(dsn.render_as_string(hide_password=False)) as conn:
            conn.execute(statement.encode())


@pytest.fixture
def org(pg_base_url: str, tmp_path: Path) -> Iterator[Org]:
    with people_database(pg_base_url, PEOPLE) as people:
        yield Org(people, tmp_path)


def _dana_registers(
    org: Org,
    files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``bentogate register fraud`` on dana's own connection: fraud:1."""
    model, data = files
    code, _, err = org.cli(capsys, monkeypatch, "dana", "register", "fraud", str(model),
                           "--reference", str(data))  # fmt: skip
    assert code == 0, err


def _entries(org: Org) -> list[dict[str, object]]:
    with Registry(org.urls["rel"]) as reg:
        return [e.__dict__ for e in reg.audit("fraud", "1")]


@pytest.fixture
def validated(
    org: Org,
    model_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Org:
    """fraud:1 registered by dana and validated by vic, each as themselves."""
    _, data = model_files
    _dana_registers(org, model_files, capsys, monkeypatch)
    code, _, err = org.cli(
        capsys, monkeypatch, "vic", "validate", "fraud:1", "--holdout", str(data)
    )
    assert code == 0, err
    return org


def test_four_people_release_a_version_each_doing_their_part(
    validated: Org, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    org = validated
    code, out, err = org.cli(capsys, monkeypatch, "ana", "approve", "fraud:1", "--json")
    assert code == 0, err
    assert json.loads(out)["approver"] == org.roles["ana"]
    with Registry(org.urls["rel"], require_authenticated=True) as rel:
        me = rel.whoami()
        rel.record_build("fraud", "1", actor=me, bento_tag="fraud:1")
        rel.stage("fraud", "1", actor=me)
        gate(rel, "1", actor=me)
        promoted = rel.promote("fraud", "1", actor=me, sha256=rel.get_version("fraud", "1").sha256)
    assert promoted.state == State.PRODUCTION
    done = [(e["action"], e["actor"], e["authenticated"]) for e in _entries(org)
            if e["outcome"] == "ok"]  # fmt: skip
    roles = org.roles
    assert done == [
        ("register", roles["dana"], True),
        ("validate", roles["vic"], True),
        ("approve", roles["ana"], True),
        ("build", roles["rel"], True),
        ("stage", roles["rel"], True),
        ("gate", roles["rel"], True),
        ("promote", roles["rel"], True),
    ]
    info = promoted
    assert (info.developer, info.validator, info.approver) == (
        roles["dana"], roles["vic"], roles["ana"])  # fmt: skip


def _kept_by_database(org: Org) -> list[tuple[str, str, str]]:
    """(action, actor, reason) of fraud:1's refusals that the database itself kept."""
    entries = _entries(org)
    return [(str(e["action"]), str(e["actor"]), str(e["reason"])) for e in entries
            if e["outcome"] == "refused" and e["payload"].get("recorded_by") == "database"]  # type: ignore[attr-defined]  # fmt: skip


def test_a_validator_cannot_approve_by_cli_or_by_sql(
    validated: Org, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    org = validated
    val2, vic = org.roles["val2"], org.roles["vic"]
    # a validator who did not validate it: nothing in the code stops them, PostgreSQL does
    code, _, err = org.cli(capsys, monkeypatch, "val2", "approve", "fraud:1")
    assert code == 3, err
    rule = f"role {val2} may not approve (as {val2}): only an approver approves"
    assert rule in err and "(enforced by the database)" in err
    last = _entries(org)[-1]
    assert (last["action"], last["outcome"], last["actor"]) == ("approve", "refused", val2)
    assert last["payload"] == {"error": "SeparationOfDuties"}
    # by hand: each statement refused by PostgreSQL, and each refusal kept by it although the
    # statement's transaction was rolled back
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only an approver approves"):
        org.sql("vic", "INSERT INTO approvals (version_id, approver, decision, comment, sha256, "
                       f"created_at) VALUES (1, '{vic}', 'approved', '', 'x', now())")  # fmt: skip
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not approve this version"):
        org.sql("vic", f"UPDATE versions SET state = 'approved', approver = '{vic}'")
    forged = (
        "INSERT INTO audit_log (id, at, environment, actor, action, outcome, reason, payload, "
        "prev_hash, hash, model, version) "
        "VALUES (99, now(), 'prod', 'ana', 'approve', 'ok', 'x', '{}', 'p', 'h', 'fraud', '1')"
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not write an audit row"):
        org.sql("vic", forged)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # no GRANT: not even tried
        org.sql("vic", "DELETE FROM audit_log")
    kept = _kept_by_database(org)
    assert [(action, actor) for action, actor, _ in kept] == [
        ("approve", val2),  # the CLI's attempt, kept by the database as well
        ("approve", vic),
        ("approve", vic),
        ("approve", vic),  # the audit row vic tried to write said "approve"
    ]
    assert "only an approver approves" in kept[1][2]
    assert "may not write an audit row as ana" in kept[3][2]
    with Registry(org.urls["rel"]) as reg:
        assert reg.get_version("fraud", "1").state == State.VALIDATED
        ok, _, message = reg.verify_audit()
    assert ok, message


def test_a_refusal_the_database_kept_cannot_be_skipped(validated: Org) -> None:
    org = validated
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only an approver approves"):
        vic = org.roles["vic"]
        org.sql("vic", "INSERT INTO approvals (version_id, approver, decision, comment, sha256, "
                       f"created_at) VALUES (1, '{vic}', 'approved', '', 'x', now())")  # fmt: skip
    org.sql("vic", "UPDATE audit_head SET refusals_sealed = refusals_sealed + 1")  # hide it
    with Registry(org.urls["rel"]) as reg:
        ok, _, message = reg.verify_audit()
    assert not ok
    assert "refusals [1] kept by the database are not in the audit chain" in message


def test_a_developer_cannot_validate_their_own_version(
    org: Org,
    model_files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, data = model_files
    org.sql("owner", f'GRANT "{org.prefix}_validator" TO "{org.roles["dana"]}"')  # both duties
    _dana_registers(org, model_files, capsys, monkeypatch)
    code, _, err = org.cli(
        capsys, monkeypatch, "dana", "validate", "fraud:1", "--holdout", str(data)
    )
    assert code == 3, err
    last = _entries(org)[-1]
    assert (last["action"], last["outcome"], last["actor"]) == (
        "validate",
        "refused",
        org.roles["dana"],
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is the developer"):
        dana = org.roles["dana"]
        org.sql("dana", "INSERT INTO validations (version_id, validator, passed, results, "
                        f"created_at) VALUES (1, '{dana}', true, '{{}}', now())")  # fmt: skip
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not validate"):
        org.sql(
            "dana", f"UPDATE versions SET state = 'validated', validator = '{org.roles['dana']}'"
        )
    kept = _kept_by_database(org)
    # the CLI's attempt was refused by governance's own rule before it reached the database
    assert [(action, actor) for action, actor, _ in kept] == [("validate", org.roles["dana"])] * 2
    assert "is the developer of the version (separation of duties)" in kept[0][2]


def test_naming_someone_else_is_refused_and_audited(
    validated: Org, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    org = validated
    code, _, err = org.cli(capsys, monkeypatch, "ana", "approve", "fraud:1", "--actor", "boss")
    assert code == 3, err
    assert f"'boss' is not the authenticated database role '{org.roles['ana']}'" in err
    last = _entries(org)[-1]
    assert (last["action"], last["outcome"], last["actor"]) == (
        "approve",
        "refused",
        org.roles["ana"],
    )
    assert last["payload"] == {"named_actor": "boss", "error": "Unauthenticated"}


def test_a_process_records_its_role_where_names_are_refused(org: Org) -> None:
    with Registry(org.urls["rel"], require_authenticated=True) as reg:
        assert reg.acting_as("h1") == org.roles["rel"]  # e.g. a host's agent
    with Registry(org.urls["rel"]) as reg:
        assert reg.acting_as("h1") == "h1"


def test_no_role_edits_audit_rows_checkpoints_or_a_version_identity(validated: Org) -> None:
    for statement, refused in (
        ("UPDATE versions SET sha256 = 'b'", psycopg.errors.RestrictViolation),  # 0002's guard
        ("UPDATE audit_log SET reason = 'x'", psycopg.errors.InsufficientPrivilege),
        ("DELETE FROM audit_checkpoints", psycopg.errors.InsufficientPrivilege),
    ):
        with pytest.raises(refused):
            validated.sql("rel", statement)
