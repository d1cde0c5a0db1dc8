"""bench.versions: a ref's own settings, given after commas."""

from __future__ import annotations

import pytest

from bench.versions import split_ref


def test_a_ref_alone_runs_with_its_defaults() -> None:
    assert split_ref("HEAD") == ("HEAD", {})


def test_settings_after_commas_become_the_demos_environment() -> None:
    assert split_ref("ba242a7,bento.replicas=1,haproxy.access_log=false") == (
        "ba242a7",
        {"BENTOGATE_BENTO__REPLICAS": "1", "BENTOGATE_HAPROXY__ACCESS_LOG": "false"},
    )


@pytest.mark.parametrize("bad", ["HEAD,replicas=1", "HEAD,bento.replicas", "HEAD,.x=1"])
def test_a_setting_not_section_field_value_is_refused(bad: str) -> None:
    with pytest.raises(SystemExit, match=r"is not section\.field=value"):
        split_ref(bad)
