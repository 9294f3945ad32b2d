"""Moved: the partner client is its own distribution, ``zerocontact-partner-client``
(``clients/python``, module :mod:`zerocontact.partner_client`). This module re-exports it so
existing imports keep working; new code imports ``zerocontact.partner_client``."""

from __future__ import annotations

from zerocontact.partner_client import (
    PartnerClient,
    cny,
    error_details,
    new_key,
    request_id_of,
)

__all__ = ["PartnerClient", "cny", "error_details", "new_key", "request_id_of"]
