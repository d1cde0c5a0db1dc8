"""Duties enforced by PostgreSQL itself: group roles, their GRANTs and a trigger that checks
each row a role writes against its duties and the authenticated identity (``current_user``).

``bentogate db roles`` (:func:`create_roles`, run by the schema's owner after ``db upgrade``;
idempotent) creates six group roles, ``<prefix>_developer``, ``_validator``, ``_approver``,
``_release``, ``_agent`` and ``_admin``; the DBA makes each person a login role and grants
them their group (``GRANT bentogate_validator TO vic``). Then, whatever client they use:

- every audit row a role writes carries its own name as the actor, marked authenticated;
- a version is registered by a developer, as themselves;
- only a validator validates (a registered version, not one they developed), only an approver
  approves (a validated version, neither developed nor validated by them): the trigger
  compares identities on every row of ``validations``, ``approvals`` and ``versions``;
- every other change of a version (build, stage, gate, promote, rollback, retire) is a
  release engineer's, an agent's or an admin's;
- nobody updates or deletes audit rows, checkpoints or a version's identity (no GRANT, and
  migration 0002's guards). A superuser is exempt from all of this, as PostgreSQL's is anyway.

What the trigger refuses raises SQLSTATE 42501 (insufficient privilege) naming the rule:
:func:`bentogate.governance.db.translate` makes it a :class:`SeparationOfDuties`, audited as
refused. Before it raises, the trigger keeps the refusal in ``database_refusals`` through a
connection of its own (``dblink``; the writer's transaction is rolled back), so a refused
hand-written ``INSERT`` or ``UPDATE`` is kept too; the next audited write seals it into the
hash chain (:func:`bentogate.governance.audit.append`).
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from bentogate.errors import ConfigError
from bentogate.governance.audit import RECORDED_BY
from bentogate.governance.db import Database
from bentogate.governance.states import TRANSITIONS, State

GROUPS = ("developer", "validator", "approver", "release", "agent", "admin")
#: tables a release engineer, an agent and an admin write besides the audit trail
_OPERATIONS = (
    "models", "versions", "gate_runs", "shadow_runs", "deployments", "capacity_measurements",
    "gate_policies", "rollouts", "hosts",
)  # fmt: skip
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}")


def group_names(prefix: str) -> dict[str, str]:
    """Duty → its group role's name, e.g. ``{"validator": "bentogate_validator", …}``."""
    return {group: f"{prefix}_{group}" for group in GROUPS}


def create_roles(db: Database, prefix: str = "bentogate") -> list[str]:
    """Create the group roles (if missing), grant each its tables and install the duties
    trigger in the governance schema; return the group roles' names. Raises ConfigError on
    SQLite or for a prefix that is not a lowercase SQL identifier."""
    if db.dialect != "postgresql":
        raise ConfigError("database roles need PostgreSQL: SQLite has no users")
    if not _PREFIX.fullmatch(prefix):
        raise ConfigError(f"role prefix {prefix!r} is not a lowercase SQL identifier")
    names = group_names(prefix)
    with db.translated(), db.engine.begin() as conn:
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        dblink = _dblink_schema(conn)
        for name in names.values():
            conn.execute(sa.text(_CREATE_ROLE.format(name=name)))
        for statement in _grants(names, schema):
            conn.execute(sa.text(statement))
        conn.execute(sa.text(_deny_function(dblink, _loopback(conn), schema)))
        conn.execute(sa.text(_duties_function(names)))
        for table, events in _TRIGGERS.items():
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS governance_duties ON {table}"))
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER governance_duties BEFORE {events} ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION governance_duties()"
                )
            )
    return list(names.values())


def _dblink_schema(conn: sa.Connection) -> str:
    """Install ``dblink`` (PostgreSQL's contrib; creating it takes a superuser) if it is not
    there and return the schema it lives in."""
    installed = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'dblink'"
    schema = conn.execute(sa.text(installed)).scalar()
    if schema is None:
        try:
            with conn.begin_nested():
                conn.execute(sa.text("CREATE EXTENSION dblink"))
        except sa.exc.DBAPIError as err:
            raise ConfigError(
                "the duties trigger keeps its refusals through PostgreSQL's dblink extension, "
                f"which could not be created ({str(err.orig).strip().splitlines()[0]}): a "
                "superuser runs `CREATE EXTENSION dblink` in this database once"
            ) from err
        schema = conn.execute(sa.text(installed)).scalar_one()
    return str(schema).strip('"')


def _loopback(conn: sa.Connection) -> str:
    """The connection string by which the trigger reaches this database as the schema's owner
    (the one running ``db roles``): the same server address, port and database. Where the
    server asks the owner for a password, the DBA adds it, e.g. in the server's ``~/.pgpass``."""
    where = "SELECT host(inet_server_addr()), current_setting('port'), current_database(), "
    address, port, database, owner = conn.execute(sa.text(where + "current_user")).one()
    parts = {"port": port, "dbname": database, "user": owner}
    if address is not None:  # None: connected through the Unix socket, the default here too
        parts["host"] = address
    return " ".join(f"{key}='{_conninfo(value)}'" for key, value in parts.items())


def _conninfo(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


_CREATE_ROLE = (
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') "
    'THEN CREATE ROLE "{name}" NOLOGIN; END IF; END $$'
)
_TRIGGERS = {
    "audit_log": "INSERT",
    "versions": "INSERT OR UPDATE",
    "validations": "INSERT",
    "approvals": "INSERT",
    "models": "INSERT OR UPDATE",
}


def _grants(names: dict[str, str], schema: str) -> list[str]:
    everyone = ", ".join(f'"{n}"' for n in names.values())
    operators = ", ".join(f'"{names[g]}"' for g in ("release", "agent", "admin"))
    return [
        f'GRANT USAGE ON SCHEMA "{schema}" TO {everyone}',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {everyone}',
        f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO {everyone}',
        f"GRANT INSERT ON audit_log, audit_checkpoints TO {everyone}",
        # appends lock and move the head; writes lock their model row (FOR UPDATE needs an
        # UPDATE privilege): the duties trigger refuses a real change of a model by others
        f"GRANT UPDATE ON audit_head TO {everyone}",
        f"GRANT UPDATE (inventory_status) ON models TO {everyone}",
        # the duties trigger, not a missing GRANT, refuses what a role may not write to these:
        # its refusals are kept (database_refusals), a missing GRANT's are not
        f"GRANT INSERT ON models, versions, validations, approvals TO {everyone}",
        f"GRANT UPDATE ON versions TO {everyone}",
        f"GRANT INSERT, UPDATE ON {', '.join(_OPERATIONS)} TO {operators}",
        f"GRANT DELETE ON gate_policies TO {operators}",
        f'GRANT INSERT, UPDATE ON policy_exceptions TO "{names["admin"]}"',
    ]


def _duties_function(names: dict[str, str]) -> str:
    def member(*groups: str) -> str:
        return "(" + " OR ".join(f"pg_has_role(me, '{names[g]}', 'MEMBER')" for g in groups) + ")"

    return f"""
CREATE OR REPLACE FUNCTION governance_duties() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  me text := current_user;
  v record;
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = me) THEN
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME = 'audit_log' THEN
    IF (NEW.payload::jsonb ->> '{RECORDED_BY}') = 'database' AND NEW.outcome = 'refused'
       AND EXISTS (SELECT 1 FROM database_refusals r
                   WHERE r.id = (NEW.payload::jsonb ->> 'refusal')::int
                     AND r.actor = NEW.actor AND r.reason = NEW.reason) THEN
      RETURN NEW;  -- a refusal the database recorded, sealed into the chain by whoever writes next
    END IF;
    IF NEW.actor IS DISTINCT FROM me
       OR (NEW.payload::jsonb ->> 'authenticated') IS DISTINCT FROM 'true' THEN
      PERFORM governance_deny(me, NEW.action, NEW.environment, NEW.model, NEW.version,
        format('role %s may not write an audit row as %s: the actor is the authenticated role '
        '(authenticated actors)', me, NEW.actor));
    END IF;
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME = 'versions' AND TG_OP = 'INSERT' THEN
    SELECT environment, name INTO v FROM models WHERE id = NEW.model_id;
    IF NOT {member("developer")} OR NEW.developer IS DISTINCT FROM me THEN
      PERFORM governance_deny(me, 'register', v.environment, v.name, NEW.version,
        format('role %s may not register a version as %s: a developer registers, as themselves '
        '(duties)', me, NEW.developer));
    END IF;
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME IN ('validations', 'approvals') THEN
    SELECT m.environment, m.name, x.version, x.developer, x.validator, x.state INTO v
      FROM versions x JOIN models m ON m.id = x.model_id WHERE x.id = NEW.version_id;
  END IF;
  IF TG_TABLE_NAME = 'validations' THEN
    IF NOT {member("validator")} OR NEW.validator IS DISTINCT FROM me THEN
      PERFORM governance_deny(me, 'validate', v.environment, v.name, v.version,
        format('role %s may not validate (as %s): only a validator validates, as themselves '
        '(duties)', me, NEW.validator));
    END IF;
    IF v.developer = me THEN
      PERFORM governance_deny(me, 'validate', v.environment, v.name, v.version,
        format('validator %s is the developer of the version (separation of duties)', me));
    END IF;
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME = 'approvals' THEN
    IF NOT {member("approver")} OR NEW.approver IS DISTINCT FROM me THEN
      PERFORM governance_deny(me, 'approve', v.environment, v.name, v.version,
        format('role %s may not approve (as %s): only an approver approves, as themselves '
        '(duties)', me, NEW.approver));
    END IF;
    IF me IN (v.developer, v.validator) THEN
      PERFORM governance_deny(me, 'approve', v.environment, v.name, v.version,
        format('approver %s developed or validated the version (separation of duties)', me));
    END IF;
    IF v.state IS DISTINCT FROM 'validated' THEN
      PERFORM governance_deny(me, 'approve', v.environment, v.name, v.version,
        format('the version is %s; approve needs validated (lifecycle)', v.state));
    END IF;
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME = 'versions' THEN
    SELECT environment, name INTO v FROM models WHERE id = OLD.model_id;
    IF NEW.validator IS DISTINCT FROM OLD.validator
       OR (OLD.state = 'registered' AND NEW.state IN ('validated', 'rejected')) THEN
      IF NOT {member("validator")} OR NEW.validator IS DISTINCT FROM me
         OR me = OLD.developer OR OLD.state <> 'registered' THEN
        PERFORM governance_deny(me, 'validate', v.environment, v.name, OLD.version,
          format('role %s may not validate this version: a validator other than its developer, '
          'as themselves (separation of duties)', me));
      END IF;
      RETURN NEW;
    END IF;
    IF NEW.approver IS DISTINCT FROM OLD.approver
       OR (OLD.state = 'validated' AND NEW.state = 'approved') THEN
      IF NOT {member("approver")} OR NEW.approver IS DISTINCT FROM me
         OR me IN (OLD.developer, OLD.validator) OR OLD.state <> 'validated' THEN
        PERFORM governance_deny(me, 'approve', v.environment, v.name, OLD.version,
          format('role %s may not approve this version: an approver who neither developed nor '
          'validated it, as themselves (separation of duties)', me));
      END IF;
      RETURN NEW;
    END IF;
    IF NOT {member("release", "agent", "admin")} THEN
      PERFORM governance_deny(me, {_action_of_change()}, v.environment, v.name, OLD.version,
        format('role %s may not change a version from %s to %s: builds, deployments, gates, '
        'promotions and retirements are a release engineer''s (duties)',
        me, OLD.state, NEW.state));
    END IF;
    RETURN NEW;
  END IF;
  IF TG_TABLE_NAME = 'models' AND (TG_OP = 'INSERT' OR NEW IS DISTINCT FROM OLD)
     AND NOT {member("developer", "release", "agent", "admin")} THEN
    PERFORM governance_deny(me, lower(TG_OP) || '_model', NEW.environment, NEW.name, NULL,
      format('role %s may not %s a model (duties)', me, lower(TG_OP)));
  END IF;
  RETURN NEW;
END $fn$;
"""


def _action_of_change() -> str:
    """SQL naming the lifecycle action of a version's change from ``OLD.state`` to
    ``NEW.state``, read off :data:`TRANSITIONS` (the first in table order), else ``change``."""
    cases = []
    seen: set[tuple[State, State]] = set()
    for action, starts in TRANSITIONS.items():
        for start, targets in starts.items():
            for target in sorted(targets - {start}):
                if (start, target) not in seen:
                    seen.add((start, target))
                    cases.append(f"WHEN OLD.state = '{start}' AND NEW.state = '{target}' "
                                 f"THEN '{action}'")  # fmt: skip
    return f"(CASE {' '.join(cases)} ELSE 'change' END)"


def _deny_function(dblink: str, loopback: str, schema: str) -> str:
    """``governance_deny(...)``: keep the refusal in ``database_refusals`` through a connection of
    its own (``dblink`` to ``loopback``, as the schema's owner: the writer's transaction is about
    to be rolled back), then raise it as SQLSTATE 42501. If it cannot be kept, the error says so."""
    return f"""
CREATE OR REPLACE FUNCTION governance_deny(me text, act text, env text, mdl text, ver text,
                                           message text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
BEGIN
  BEGIN
    PERFORM "{dblink}".dblink_exec({_literal(loopback)}, format(
      'INSERT INTO "{schema}".database_refusals (at, environment, actor, action, model, version, '
      'reason) VALUES (clock_timestamp(), %L, %L, %L, %L, %L, %L)',
      env, me, act, mdl, ver, message));
  EXCEPTION WHEN OTHERS THEN
    message := message || ' [the database could not keep this refusal: ' || SQLERRM || ']';
  END;
  RAISE EXCEPTION '%', message USING ERRCODE = 'insufficient_privilege';
END $fn$;
"""


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
