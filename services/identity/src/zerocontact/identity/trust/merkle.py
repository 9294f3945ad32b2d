"""RFC 9162 (RFC 6962) Merkle tree hashing, inclusion and consistency proofs; no I/O.

The tree over ``n`` leaves is the RFC's MTH: a leaf hashes as ``SHA-256(0x00 || leaf)``, an
interior node as ``SHA-256(0x01 || left || right)``, and a range splits at the largest power
of two smaller than its size. A log stores only *perfect* subtrees (``2**level`` leaves,
aligned at ``index * 2**level``), the :class:`NodeId`s; every hash a proof needs is one of
them or a fold of a few of them (the right edge of a tree whose size is not a power of two).
Proof generation therefore takes a ``fetch`` callable over node ids: a repository plans the
ids first (:func:`inclusion_plan`, :func:`consistency_plan`), reads them in one round trip,
then builds the proof from the dictionary.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


@dataclass(frozen=True, order=True, slots=True)
class NodeId:
    """A perfect subtree: ``2**level`` leaves starting at leaf ``index * 2**level``."""

    level: int
    index: int


class ProofError(ValueError):
    """A proof does not verify (wrong size, length, hash or root)."""


Fetch = Callable[[NodeId], bytes]


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly smaller than ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def subtree_hash(lo: int, hi: int, fetch: Fetch) -> bytes:
    """MTH of leaves ``[lo, hi)`` where ``lo`` is aligned as the RFC's recursion aligns it."""
    size = hi - lo
    if size <= 0:
        raise ValueError("empty range")
    if size & (size - 1) == 0 and lo % size == 0:
        level = size.bit_length() - 1
        return fetch(NodeId(level, lo >> level))
    k = _split(size)
    return node_hash(subtree_hash(lo, lo + k, fetch), subtree_hash(lo + k, hi, fetch))


def root_hash(size: int, fetch: Fetch) -> bytes:
    """The root of the tree of the first ``size`` leaves."""
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, fetch)


def _path(index: int, lo: int, hi: int, fetch: Fetch) -> list[bytes]:
    # RFC 9162 2.1.3.1 PATH(m, D[lo:hi]), leaf-most sibling first.
    if hi - lo == 1:
        return []
    k = _split(hi - lo)
    if index < lo + k:
        return [*_path(index, lo, lo + k, fetch), subtree_hash(lo + k, hi, fetch)]
    return [*_path(index, lo + k, hi, fetch), subtree_hash(lo, lo + k, fetch)]


def inclusion_proof(index: int, size: int, fetch: Fetch) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    return _path(index, 0, size, fetch)


def _subproof(m: int, lo: int, hi: int, whole: bool, fetch: Fetch) -> list[bytes]:
    # RFC 9162 2.1.4.1 SUBPROOF(m, D[lo:hi], b).
    n = hi - lo
    if m == n:
        return [] if whole else [subtree_hash(lo, hi, fetch)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, lo, lo + k, whole, fetch), subtree_hash(lo + k, hi, fetch)]
    return [*_subproof(m - k, lo + k, hi, False, fetch), subtree_hash(lo, lo + k, fetch)]


def consistency_proof(first: int, second: int, fetch: Fetch) -> list[bytes]:
    """The proof that the tree of ``first`` leaves is a prefix of the tree of ``second``."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    if first in (0, second):
        return []
    return _subproof(first, 0, second, True, fetch)


def _plan(build: Callable[[Fetch], object]) -> list[NodeId]:
    wanted: dict[NodeId, None] = {}

    def record(node: NodeId) -> bytes:
        wanted[node] = None
        return bytes(HASH_SIZE)

    build(record)  # which nodes a proof reads does not depend on their hashes
    return list(wanted)


def inclusion_plan(index: int, size: int) -> list[NodeId]:
    """The stored nodes :func:`inclusion_proof` reads (O(log n))."""
    return _plan(lambda f: inclusion_proof(index, size, f))


def consistency_plan(first: int, second: int) -> list[NodeId]:
    """The stored nodes :func:`consistency_proof` and both roots read (O(log n))."""
    return _plan(
        lambda f: (consistency_proof(first, second, f), root_hash(first, f), root_hash(second, f))
    )


def from_mapping(nodes: Mapping[NodeId, bytes]) -> Fetch:
    """A fetch over already-read nodes."""
    return nodes.__getitem__


def compact_range(size: int) -> list[NodeId]:
    """The perfect subtrees whose fold is the root of ``size`` leaves, largest first."""
    nodes, lo = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size & (1 << level):
            nodes.append(NodeId(level, lo >> level))
            lo += 1 << level
    return nodes


# Verification (RFC 9162 2.1.3.2 and 2.1.4.2): what the offline verifier runs.


def root_from_inclusion(index: int, size: int, leaf_digest: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` gives for ``leaf_digest`` at ``index``; raises on a bad shape."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} outside a tree of {size}")
    if len(leaf_digest) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    fn, sn, r = index, size - 1, leaf_digest
    for p in proof:
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf_digest: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` puts the leaf at ``index`` under ``root``."""
    if not hmac.compare_digest(root_from_inclusion(index, size, leaf_digest, proof), root):
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows tree ``first`` is a prefix of ``second``."""
    if not 0 <= first <= second:
        raise ProofError(f"sizes {first} and {second} go backwards")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    if first == second:
        if proof or not hmac.compare_digest(first_root, second_root):
            raise ProofError("equal sizes need equal roots and an empty proof")
        return
    if first == 0:
        if proof:
            raise ProofError("a proof from the empty tree is empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is a node of the second
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is too short")
    if not (hmac.compare_digest(fr, first_root) and hmac.compare_digest(sr, second_root)):
        raise ProofError("consistency proof does not lead to both roots")
