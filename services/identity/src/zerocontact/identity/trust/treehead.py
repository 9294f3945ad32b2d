"""Signed tree heads and receipts, and their offline verification; no I/O.

A signed tree head (STH) signs, with Ed25519, the RFC 6962 section 3.5 ``TreeHeadSignature``
structure: ``version`` (1 byte, 0 = v1), ``signature_type`` (1 byte, 1 = tree_hash),
``timestamp`` (uint64, milliseconds since the epoch, big-endian), ``tree_size`` (uint64,
big-endian) and ``sha256_root_hash`` (32 bytes): 50 bytes, nothing else, so any language can
rebuild them. A receipt carries the leaf (the canonical JSON evidence package), its index,
the audit path and the STH it leads to; :func:`verify_receipt` checks it against a trusted
STH (equal size: same root; larger: with a consistency proof) and the log's public key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zerocontact.identity.trust.merkle import (
    HASH_SIZE,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

STH_VERSION = 0
TREE_HASH = 1


class ReceiptInvalid(ValueError):
    """A receipt, tree head or proof does not verify."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _uint64(value: Any, what: str) -> int:
    """An unsigned 64-bit field of RFC 6962's structures (sizes, indexes, timestamps)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ReceiptInvalid(f"{what} is not an unsigned 64-bit integer")
    return value


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise ReceiptInvalid(f"{what} is not base64") from exc


@dataclass(frozen=True)
class TreeHead:
    """A signed tree head."""

    tree_size: int
    timestamp_ms: int
    root_hash: bytes
    signature: bytes

    @staticmethod
    def signed_bytes(tree_size: int, timestamp_ms: int, root_hash: bytes) -> bytes:
        """The 50-byte RFC 6962 TreeHeadSignature structure that the signature covers."""
        if len(root_hash) != HASH_SIZE:
            raise ReceiptInvalid("root hash must be 32 bytes")
        return struct.pack(">BBQQ", STH_VERSION, TREE_HASH, timestamp_ms, tree_size) + root_hash

    @classmethod
    def sign(
        cls, key: Ed25519PrivateKey, *, tree_size: int, timestamp_ms: int, root_hash: bytes
    ) -> TreeHead:
        """Sign a tree head."""
        message = cls.signed_bytes(tree_size, timestamp_ms, root_hash)
        return cls(tree_size, timestamp_ms, root_hash, key.sign(message))

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Raise :class:`ReceiptInvalid` unless the signature is the log's."""
        message = self.signed_bytes(self.tree_size, self.timestamp_ms, self.root_hash)
        try:
            public_key.verify(self.signature, message)
        except InvalidSignature as exc:
            raise ReceiptInvalid("tree head signature does not verify") from exc

    def to_json(self) -> dict[str, Any]:
        """JSON form (hashes and signature in base64)."""
        return {
            "tree_size": self.tree_size,
            "timestamp_ms": self.timestamp_ms,
            "root_hash": _b64(self.root_hash),
            "signature": _b64(self.signature),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TreeHead:
        """Parse the JSON form; raises :class:`ReceiptInvalid` on a bad shape."""
        try:
            return cls(
                _uint64(doc["tree_size"], "tree_size"),
                _uint64(doc["timestamp_ms"], "timestamp_ms"),
                _unb64(doc["root_hash"], "root_hash"),
                _unb64(doc["signature"], "signature"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReceiptInvalid(f"malformed tree head: {exc}") from exc


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes a leaf is made of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Receipt:
    """Proof that an evidence package is leaf ``leaf_index`` of the log under ``tree_head``."""

    leaf: bytes
    leaf_index: int
    inclusion_path: list[bytes]
    tree_head: TreeHead

    def to_json(self) -> dict[str, Any]:
        """JSON form; ``leaf`` is base64 of the canonical evidence JSON."""
        return {
            "leaf": _b64(self.leaf),
            "leaf_index": self.leaf_index,
            "inclusion_path": [_b64(p) for p in self.inclusion_path],
            "tree_head": self.tree_head.to_json(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Receipt:
        """Parse the JSON form; raises :class:`ReceiptInvalid` on a bad shape."""
        try:
            return cls(
                _unb64(doc["leaf"], "leaf"),
                _uint64(doc["leaf_index"], "leaf_index"),
                [_unb64(p, "inclusion_path") for p in doc["inclusion_path"]],
                TreeHead.from_json(doc["tree_head"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReceiptInvalid(f"malformed receipt: {exc}") from exc

    def evidence(self) -> dict[str, Any]:
        """The evidence package the leaf encodes."""
        try:
            value = json.loads(self.leaf)
        except ValueError as exc:
            raise ReceiptInvalid("leaf is not JSON") from exc
        if not isinstance(value, dict):
            raise ReceiptInvalid("leaf is not an evidence package")
        return value


def verify_receipt(
    receipt: Receipt,
    *,
    public_key: Ed25519PublicKey,
    trusted_head: TreeHead | None = None,
    consistency: list[bytes] | None = None,
    contract: bytes | None = None,
) -> dict[str, Any]:
    """Check a receipt offline; return its evidence package or raise :class:`ReceiptInvalid`.

    Checks: the receipt's tree head is signed by the log; the leaf is included under it; when
    ``trusted_head`` (e.g. a later STH fetched by an auditor) is given, it is signed too and
    consistent with the receipt's head (``consistency`` proof when the sizes differ); when
    ``contract`` is given, its SHA-256 is the one the evidence package commits to.
    """
    head = receipt.tree_head
    head.verify(public_key)
    try:
        verify_inclusion(
            receipt.leaf_index,
            head.tree_size,
            leaf_hash(receipt.leaf),
            receipt.inclusion_path,
            head.root_hash,
        )
        if trusted_head is not None:
            trusted_head.verify(public_key)
            if trusted_head.tree_size < head.tree_size:
                raise ReceiptInvalid("the trusted tree head is older than the receipt")
            verify_consistency(
                head.tree_size,
                trusted_head.tree_size,
                head.root_hash,
                trusted_head.root_hash,
                consistency or [],
            )
    except ProofError as exc:
        raise ReceiptInvalid(str(exc)) from exc
    evidence = receipt.evidence()
    if contract is not None:
        expected = str(evidence.get("contract_sha256", ""))
        if not hmac.compare_digest(hashlib.sha256(contract).hexdigest(), expected):
            raise ReceiptInvalid("the contract's hash is not the one in the evidence package")
    return evidence
