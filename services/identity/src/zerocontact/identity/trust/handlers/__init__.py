"""Use cases of the trust services: faces, liveness, dual recording, e-contracts, the log.

One module per subject: :mod:`.faces`, :mod:`.recordings`, :mod:`.contracts` (signing and
tree heads); :mod:`.context` holds what they share.
"""

from zerocontact.identity.trust.handlers.context import TrustContext
from zerocontact.identity.trust.handlers.contracts import (
    add_contract_template,
    complete_signing,
    draft_contract,
    publish_head,
    sign_contract,
)
from zerocontact.identity.trust.handlers.faces import enrol_face, verify_face
from zerocontact.identity.trust.handlers.recordings import (
    purge_expired_recordings,
    store_dual_recording,
)

__all__ = [
    "TrustContext",
    "add_contract_template",
    "complete_signing",
    "draft_contract",
    "enrol_face",
    "publish_head",
    "purge_expired_recordings",
    "sign_contract",
    "store_dual_recording",
    "verify_face",
]
