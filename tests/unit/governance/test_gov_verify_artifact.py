"""The served-artifact check at deploy time: audited when it holds, refused when it does not."""

from __future__ import annotations

import pytest

from bentogate.errors import IntegrityError
from bentogate.governance import Action, Registry


def test_the_served_sha256_is_audited_and_a_changed_one_refused(reg: Registry) -> None:
    reg.ensure_model("fraud", owner="o", production_port=10000, actor="a")
    version = reg.register_version(
        "fraud", sha256="a" * 64, feature_names=["f"], threshold=0.5, metrics={},
        developer="dev", artifact_uri="x",
    ).version  # fmt: skip
    reg.verify_artifact("fraud", version, actor="rel", sha256="a" * 64)
    ok = reg.audit("fraud", version)[-1]
    assert (ok.action, ok.outcome) == (Action.VERIFY_ARTIFACT, "ok")
    with pytest.raises(IntegrityError, match="differs from the registered"):
        reg.verify_artifact("fraud", version, actor="rel", sha256="b" * 64)
    refused = reg.audit("fraud", version)[-1]
    assert (refused.action, refused.outcome) == (Action.VERIFY_ARTIFACT, "refused")
    assert refused.payload["measured_sha256"] == "b" * 64
    assert reg.verify_audit()[0]
