"""Pure rules of the trust services: contract rendering, evidence packages, dual-recording
scripts and retention. No I/O, no dlib."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from zerocontact.identity.trust.errors import ContractStateError, FaceVerificationRequired
from zerocontact.platform.errors import Invalid

EVIDENCE_VERSION = 1


class InvalidTemplate(Invalid):
    """A contract template or its fields do not fit together."""

    code = "invalid_contract_fields"


def template_fields(body: str) -> set[str]:
    """The ``${name}`` placeholders of a template body."""
    try:
        names = string.Template(body).get_identifiers()
    except ValueError as exc:
        raise InvalidTemplate(f"the template body has a malformed placeholder: {exc}") from exc
    if not string.Template(body).is_valid():
        raise InvalidTemplate("the template body has a malformed placeholder")
    return set(names)


def render(body: str, fields: dict[str, str]) -> str:
    """The contract text: every placeholder filled, no unknown field accepted."""
    wanted = template_fields(body)
    missing, unknown = sorted(wanted - set(fields)), sorted(set(fields) - wanted)
    if missing or unknown:
        raise InvalidTemplate(
            "the fields do not match the template", missing=missing, unknown=unknown
        )
    return string.Template(body).substitute(fields)


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class AuthenticationFacts:
    """How the signer authenticated (from the access token)."""

    aal: str
    methods: tuple[str, ...]
    auth_time: datetime
    session_id: str


@dataclass(frozen=True)
class FaceFacts:
    """The recent face verification the signature relies on."""

    verification_id: str
    verified_at: datetime
    distance: float
    liveness_passed: bool


def evidence_package(
    *,
    contract_id: str,
    template_id: str,
    contract_sha256: str,
    signer: str,
    auth: AuthenticationFacts,
    face: FaceFacts,
    dual_recording_sha256: str | None,
    signed_at: datetime,
) -> dict[str, Any]:
    """The leaf content: what was signed, by whom, how they proved it, and when.

    Ids and hashes only: no name, resident ID or phone, so a published leaf reveals nothing
    personal; the contract text itself stays with the parties and is checked by its hash.
    """
    return {
        "v": EVIDENCE_VERSION,
        "contract_id": contract_id,
        "template_id": template_id,
        "contract_sha256": contract_sha256,
        "signer": f"customer:{signer}",
        "authentication": {
            "aal": auth.aal,
            "amr": list(auth.methods),
            "auth_time": auth.auth_time.isoformat(),
            "session": auth.session_id,
        },
        "face_verification": {
            "id": face.verification_id,
            "at": face.verified_at.isoformat(),
            "distance": round(face.distance, 4),
            "liveness": face.liveness_passed,
        },
        "dual_recording_sha256": dual_recording_sha256,
        "signed_at": signed_at.isoformat(),
    }


def check_face_recent(face: FaceFacts | None, *, now: datetime, max_age_s: int) -> FaceFacts:
    """The face verification a signature may rely on: matched, live and recent."""
    if face is None or not face.liveness_passed:
        raise FaceVerificationRequired(
            "signing needs a face verification with liveness", max_age_s=max_age_s
        )
    if now - face.verified_at > timedelta(seconds=max_age_s):
        raise FaceVerificationRequired(
            f"signing needs a face verification in the last {max_age_s} seconds",
            max_age_s=max_age_s,
        )
    return face


@dataclass(frozen=True)
class ScriptStep:
    """One step of a dual-recording script the customer acknowledged on video."""

    step_id: str
    acknowledged_at_ms: int  # offset from the start of the recording


def check_steps(steps: list[ScriptStep], *, script: list[str], duration_ms: int) -> None:
    """Every script step acknowledged once, in order, within the recording."""
    if [s.step_id for s in steps] != script:
        raise InvalidTemplate(
            "every script step must be acknowledged once, in order", expected=script
        )
    offsets = [s.acknowledged_at_ms for s in steps]
    if offsets != sorted(offsets) or any(not 0 <= o <= duration_ms for o in offsets):
        raise InvalidTemplate("acknowledgement times must rise and fall within the recording")


def retain_until(
    product_code: str, *, stored_at: datetime, retention_days: dict[str, int]
) -> datetime:
    """When a product's recording may be deleted (``default`` for products not listed)."""
    days = retention_days.get(product_code, retention_days["default"])
    return stored_at + timedelta(days=days)


def ensure_draft(status: str) -> None:
    """Only a draft contract can be signed."""
    if status != "DRAFT":
        raise ContractStateError(f"the contract is {status}, not DRAFT")
