"""Typed refusals of the trust services; the HTTP edge turns each into a problem response."""

from __future__ import annotations

from zerocontact.platform.errors import DomainError, Forbidden, Invalid, Pending


class UnusableImage(Invalid):
    """The photo or video cannot be used; ``code`` says why, never what it showed."""

    code = "unusable_image"


class NoFace(UnusableImage):
    """No face was found."""

    code = "no_face"


class SeveralFaces(UnusableImage):
    """More than one face was found: the customer must be alone in the picture."""

    code = "several_faces"


class FaceTooSmall(UnusableImage):
    """The face is too small for a reliable embedding."""

    code = "face_too_small"


class FaceTooBlurred(UnusableImage):
    """The face is too blurred for a reliable embedding."""

    code = "face_too_blurred"


class NotEnrolled(DomainError):
    """The customer has no face template."""

    code = "face_not_enrolled"


class FaceVerificationRequired(Forbidden):
    """Signing needs a recent successful face verification."""

    code = "face_verification_required"


class ContractStateError(DomainError):
    """The contract is not in a state that allows this."""

    code = "contract_state"


class SigningPending(Pending):
    """The contract's leaf is queued but not yet in the log; the API answers 202."""

    code = "signing_pending"
