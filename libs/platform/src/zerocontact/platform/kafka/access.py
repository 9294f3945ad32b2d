"""Per-team Kafka access: SCRAM users and least-privilege ACLs, through the admin protocol.

aiokafka's admin client has no methods for these, but its protocol module carries the ACL
requests (CreateAcls, DeleteAcls), and AlterUserScramCredentials (API 51) is declared here;
so ``zerocontact kafka users`` needs no JVM. A team reading topics gets READ and DESCRIBE on
each of them and READ on consumer groups starting with its prefix (a PREFIXED pattern);
writing gets WRITE and DESCRIBE on each topic it writes (an idempotent producer needs nothing
more since Kafka 3.0). Nothing else: no other topic, group, transactional id or the cluster.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from aiokafka.protocol.admin import (  # type: ignore[import-untyped, unused-ignore]
    CreateAclsRequest,
    DeleteAclsRequest,
)
from aiokafka.protocol.api import (  # type: ignore[import-untyped, unused-ignore]
    Request,
    RequestStruct,
    Response,
)
from aiokafka.protocol.types import (  # type: ignore[import-untyped, unused-ignore]
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

__all__ = [
    "AccessError",
    "Acl",
    "TeamAccess",
    "create_team_user",
    "delete_team_user",
    "new_password",
]

SCRAM_ITERATIONS = 8192  # Kafka accepts 4096-16384
SCRAM_MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class AccessError(Exception):
    """The broker refused a user or ACL change; the message is one line."""


class ResourceType(IntEnum):
    ANY = 1
    TOPIC = 2
    GROUP = 3


class PatternType(IntEnum):
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ANY = 1
    READ = 3
    WRITE = 4
    CREATE = 5  # a Faust worker's internal topics (deploy/tools/kafka_users.py)
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10


ALLOW = 3
ANY_PERMISSION = 1


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW binding for a principal, from any host."""

    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation

    def describe(self) -> str:
        pattern = "prefix " if self.pattern_type is PatternType.PREFIXED else ""
        return f"{self.operation.name} on {self.resource_type.name.lower()} {pattern}{self.resource_name}"


@dataclass(frozen=True)
class TeamAccess:
    """What one team may do: read some topics (with its groups), write others."""

    team: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    group_prefix: str | None = None

    def __post_init__(self) -> None:
        for what, name in [("team", self.team), *(("topic", t) for t in self.read + self.write)]:
            if not NAME.fullmatch(name):
                raise AccessError(f"{what} name {name!r} must match {NAME.pattern}")
        if not self.read and not self.write:
            raise AccessError("give the team at least one --read or --write topic")

    @property
    def principal(self) -> str:
        return f"User:{self.team}"

    @property
    def groups(self) -> str:
        """The consumer-group prefix: ``--group-prefix``, else ``<team>.``."""
        return self.group_prefix or f"{self.team}."

    def acls(self) -> list[Acl]:
        """The least-privilege bindings, in a stable order."""
        topic, literal = ResourceType.TOPIC, PatternType.LITERAL
        acls = {Acl(topic, name, literal, op) for name in self.read for op in _READ}
        acls |= {Acl(topic, name, literal, op) for name in self.write for op in _WRITE}
        if self.read:
            acls.add(Acl(ResourceType.GROUP, self.groups, PatternType.PREFIXED, Operation.READ))
        return sorted(acls)


_READ = (Operation.READ, Operation.DESCRIBE)
_WRITE = (Operation.WRITE, Operation.DESCRIBE)


def new_password() -> str:
    """A random 32-character password (192 bits)."""
    return secrets.token_urlsafe(24)


class _AlterScramResponse(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramStruct(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScram(Request[_AlterScramStruct]):  # type: ignore[misc]
    """AlterUserScramCredentials v0 (KIP-554), which aiokafka does not declare."""

    API_KEY = 51

    def __init__(self, deletions: list[Any], upsertions: list[Any]) -> None:
        self._deletions = deletions
        self._upsertions = upsertions

    def build(self, request_struct_class: type[_AlterScramStruct]) -> _AlterScramStruct:
        return request_struct_class(self._deletions, self._upsertions, {})


async def _alter_scram(admin: Any, deletions: list[Any], upsertions: list[Any]) -> None:
    response = await admin._send_request(_AlterScram(deletions, upsertions))
    for result in response.to_object()["results"]:
        if result["error_code"]:
            raise AccessError(
                f"SCRAM credential of {result['user']!r}: "
                f"{result['error_message'] or 'error code ' + str(result['error_code'])}"
            )


def _mechanism(name: str) -> tuple[int, str]:
    if name not in SCRAM_MECHANISMS:
        raise AccessError(f"{name!r} is not a SCRAM mechanism ({', '.join(SCRAM_MECHANISMS)})")
    return SCRAM_MECHANISMS[name]


async def upsert_scram(admin: Any, user: str, password: str, mechanism: str) -> None:
    """Set ``user``'s SCRAM credential (the broker stores only the salted hash)."""
    code, digest = _mechanism(mechanism)
    salt = os.urandom(32)
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
    await _alter_scram(admin, [], [(user, code, SCRAM_ITERATIONS, salt, salted, {})])


async def create_acls(admin: Any, principal: str, acls: list[Acl]) -> None:
    for acl in acls:
        request = CreateAclsRequest(
            int(acl.resource_type),
            acl.resource_name,
            int(acl.pattern_type),
            principal,
            "*",
            int(acl.operation),
            ALLOW,
        )
        response = (await admin._send_request(request)).to_object()
        for result in response["creation_responses"]:
            if result["error_code"]:
                raise AccessError(
                    f"ACL {acl.describe()} for {principal}: {result['error_message']}"
                )


async def create_team_user(
    admin: Any, access: TeamAccess, password: str, mechanism: str = "SCRAM-SHA-512"
) -> list[Acl]:
    """Create (or reset) the team's SCRAM user and grant exactly ``access.acls()``."""
    acls = access.acls()
    await upsert_scram(admin, access.team, password, mechanism)
    await create_acls(admin, access.principal, acls)
    return acls


async def delete_team_user(admin: Any, team: str, mechanism: str = "SCRAM-SHA-512") -> int:
    """Remove every ACL of ``User:<team>`` and its SCRAM credential; returns the ACLs removed."""
    if not NAME.fullmatch(team):
        raise AccessError(f"team name {team!r} must match {NAME.pattern}")
    request = DeleteAclsRequest(
        int(ResourceType.ANY),
        None,
        int(PatternType.ANY),
        f"User:{team}",
        None,
        int(Operation.ANY),
        ANY_PERMISSION,
    )
    response = (await admin._send_request(request)).to_object()
    removed = 0
    for result in response["filter_responses"]:
        if result["error_code"]:
            raise AccessError(f"removing the ACLs of User:{team}: {result['error_message']}")
        removed += len(result["matching_acls"])
    code, _digest = _mechanism(mechanism)
    try:
        await _alter_scram(admin, [(team, code, {})], [])
    except AccessError as exc:
        if "does not exist" not in str(exc):  # deleting twice is not an error
            raise
    return removed
