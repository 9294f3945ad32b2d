"""What ``zerocontact kafka users create`` grants a team (no broker needed)."""

from __future__ import annotations

import pytest

from zerocontact.platform.kafka.access import AccessError, TeamAccess


def test_a_team_gets_exactly_read_write_and_its_group_prefix() -> None:
    access = TeamAccess("risk", read=("loan.events.v1",), write=("risk.scores.v1",))
    assert access.principal == "User:risk"
    assert [acl.describe() for acl in access.acls()] == [
        "READ on topic loan.events.v1",
        "DESCRIBE on topic loan.events.v1",
        "WRITE on topic risk.scores.v1",
        "DESCRIBE on topic risk.scores.v1",
        "READ on group prefix risk.",
    ]


def test_a_writer_only_team_gets_no_group() -> None:
    access = TeamAccess("audit", write=("audit.v1",), group_prefix="ignored.")
    assert [acl.describe() for acl in access.acls()] == [
        "WRITE on topic audit.v1",
        "DESCRIBE on topic audit.v1",
    ]


@pytest.mark.parametrize(
    ("team", "read", "says"),
    [
        ("bad name", ("t",), "team name 'bad name'"),
        ("risk", ("*",), "topic name '*'"),
        ("risk", (), "at least one --read or --write"),
    ],
)
def test_unsafe_or_empty_requests_are_refused(team: str, read: tuple[str, ...], says: str) -> None:
    with pytest.raises(AccessError, match=says.replace("*", r"\*")):
        TeamAccess(team, read=read)
