"""Hosts' heartbeats: which API hosts of the fleet are alive, and what their agents last
reported (a JSON object: what the host serves, health, errors).

A heartbeat is one attempt like every write, but only its refusals are audited (one per host
per interval would drown the log).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bentogate.governance import records
from bentogate.governance.attempt import Attempt
from bentogate.governance.documents import check_json_object
from bentogate.governance.records import HostInfo
from bentogate.governance.schema import Host


def heartbeat(session: Session, attempt: Attempt, *, host: str, report: dict[str, Any]) -> HostInfo:
    """Insert or update ``host``'s row: heartbeat now, ``report`` as sent. Raises
    :class:`GovernanceError` if the report is not a JSON object."""
    check_json_object(attempt, report, "report")
    now = attempt.now()
    row = session.execute(
        sa.select(Host).where(Host.environment == attempt.environment, Host.name == host)
    ).scalar_one_or_none()
    if row is None:
        row = Host(
            environment=attempt.environment,
            name=host,
            first_seen=now,
            last_heartbeat=now,
            report=report,
        )
        session.add(row)
    else:
        row.last_heartbeat, row.report = now, report
    session.flush()
    return records.host_info(row)
