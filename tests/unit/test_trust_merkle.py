"""RFC 9162 Merkle hashing and proofs against Certificate Transparency's known answers.

Expected hex values are the test vectors of the CT reference implementations
(transparency-dev/merkle testonly/constants.go and proof/verify_test.go: 8 leaves, roots of
every prefix, inclusion and consistency paths); a deliberately naive recursive MTH written
here from RFC 9162 2.1.1 cross-checks the stored-node implementation on more sizes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zerocontact.identity.trust import merkle
from zerocontact.identity.trust.merkle import NodeId, ProofError
from zerocontact.identity.trust.treehead import Receipt, ReceiptInvalid, TreeHead, verify_receipt

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]  # fmt: skip
# (leaf index 0-based, tree size, path)
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (0, 1, []),
]  # fmt: skip
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip


def naive_mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 literally, over the raw leaves."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:])).digest()


def stored_nodes(leaves: list[bytes]) -> dict[NodeId, bytes]:
    """Every perfect subtree, as the log stores them."""
    nodes = {NodeId(0, i): merkle.leaf_hash(leaf) for i, leaf in enumerate(leaves)}
    level = 0
    while len([n for n in nodes if n.level == level]) > 1:
        count = len([n for n in nodes if n.level == level])
        for i in range(count // 2):
            left, right = nodes[NodeId(level, 2 * i)], nodes[NodeId(level, 2 * i + 1)]
            nodes[NodeId(level + 1, i)] = merkle.node_hash(left, right)
        level += 1
    return nodes


def fetch_for(leaves: list[bytes]) -> merkle.Fetch:
    return merkle.from_mapping(stored_nodes(leaves))


@pytest.mark.parametrize("size", range(0, 9))
def test_roots_of_every_prefix_are_the_ct_known_answers(size: int) -> None:
    assert merkle.root_hash(size, fetch_for(LEAVES[:size])) == ROOTS[size]
    assert naive_mth(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_paths_are_the_ct_known_answers(index: int, size: int, path: list[str]) -> None:
    proof = merkle.inclusion_proof(index, size, fetch_for(LEAVES))
    assert [p.hex() for p in proof] == path
    merkle.verify_inclusion(index, size, merkle.leaf_hash(LEAVES[index]), proof, ROOTS[size])


@pytest.mark.parametrize(("first", "second", "path"), CONSISTENCY)
def test_consistency_paths_are_the_ct_known_answers(
    first: int, second: int, path: list[str]
) -> None:
    proof = merkle.consistency_proof(first, second, fetch_for(LEAVES))
    assert [p.hex() for p in proof] == path
    merkle.verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


def test_every_proof_up_to_40_leaves_agrees_with_the_naive_tree() -> None:
    leaves = [f"leaf-{i}".encode() for i in range(40)]
    fetch = fetch_for(leaves)
    for size in range(1, 41):
        root = naive_mth(leaves[:size])
        assert merkle.root_hash(size, fetch) == root
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, fetch)
            merkle.verify_inclusion(index, size, merkle.leaf_hash(leaves[index]), proof, root)
            assert set(merkle.inclusion_plan(index, size)) <= set(stored_nodes(leaves))
        for first in range(0, size + 1):
            proof = merkle.consistency_proof(first, size, fetch)
            merkle.verify_consistency(first, size, naive_mth(leaves[:first]), root, proof)


def test_plans_are_logarithmic_at_a_million_leaves() -> None:
    assert len(merkle.inclusion_plan(123_456, 1_000_000)) <= 2 * 20
    assert len(merkle.consistency_plan(500_001, 1_000_000)) <= 4 * 20


def test_corrupted_inclusion_proofs_are_refused() -> None:
    index, size, path = INCLUSION[1]
    proof = [bytes.fromhex(p) for p in path]
    leaf = merkle.leaf_hash(LEAVES[index])
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, leaf, bad, ROOTS[size])
    for wrong in ((index + 1, size), (index - 1, size), (index, size * 2), (index, size // 2)):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*wrong, leaf, proof, ROOTS[size])
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, leaf, proof[:-1], ROOTS[size])
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, leaf, [*proof, ROOTS[size]], ROOTS[size])


def test_corrupted_consistency_proofs_are_refused() -> None:
    first, second, path = CONSISTENCY[2]
    proof = [bytes.fromhex(p) for p in path]
    r1, r2 = ROOTS[first], ROOTS[second]
    cases = [
        (first - 1, second, r1, r2, proof),
        (first + 1, second, r1, r2, proof),
        (first, second, r2, r1, proof),
        (first, second, r1, r2, []),
        (first, second, r1, r2, proof[:-1]),
        (first, second, r1, r2, [*proof, r1]),
        (first, second, r1, r2, [bytes([proof[0][0] ^ 16]) + proof[0][1:], *proof[1:]]),
    ]
    for case in cases:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*case)


def test_tree_head_signs_the_50_byte_rfc6962_structure() -> None:
    key = Ed25519PrivateKey.generate()
    head = TreeHead.sign(key, tree_size=8, timestamp_ms=1_700_000_000_000, root_hash=ROOTS[8])
    message = TreeHead.signed_bytes(8, 1_700_000_000_000, ROOTS[8])
    assert len(message) == 50
    assert message[:2] == b"\x00\x01"
    assert message[2:10] == (1_700_000_000_000).to_bytes(8, "big")
    assert message[10:18] == (8).to_bytes(8, "big")
    key.public_key().verify(head.signature, message)
    forged = TreeHead(9, head.timestamp_ms, head.root_hash, head.signature)
    with pytest.raises(ReceiptInvalid):
        forged.verify(key.public_key())


def test_receipt_round_trip_and_a_later_head_with_consistency() -> None:
    key = Ed25519PrivateKey.generate()
    fetch = fetch_for(LEAVES)
    head6 = TreeHead.sign(key, tree_size=6, timestamp_ms=1, root_hash=ROOTS[6])
    head8 = TreeHead.sign(key, tree_size=8, timestamp_ms=2, root_hash=ROOTS[8])
    receipt = Receipt(LEAVES[5], 5, merkle.inclusion_proof(5, 6, fetch), head6)
    parsed = Receipt.from_json(receipt.to_json())
    with pytest.raises(ReceiptInvalid, match="JSON"):  # test leaves are not evidence packages
        verify_receipt(parsed, public_key=key.public_key())
    with pytest.raises(ReceiptInvalid):  # a later head needs the consistency proof
        verify_receipt(parsed, public_key=key.public_key(), trusted_head=head8)
    with pytest.raises(ReceiptInvalid):
        verify_receipt(parsed, public_key=Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize("shape", [[1, 2], "text", 7, None, {"receipt": [1]}])
def test_verify_receipt_command_reports_a_receipt_of_the_wrong_json_shape_as_invalid(
    tmp_path: Path, shape: object
) -> None:
    """Found by fuzzing (tests/chaos/fuzz.py): a receipt or consistency file holding JSON that
    is not an object crashed the command with AttributeError instead of INVALID."""
    from cryptography.hazmat.primitives import serialization

    from zerocontact.identity.trust.cli import check

    key = Ed25519PrivateKey.generate()
    head = TreeHead.sign(key, tree_size=6, timestamp_ms=1, root_hash=ROOTS[6])
    (tmp_path / "sth.json").write_text(json.dumps(head.to_json()))
    (tmp_path / "key.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "bad.json").write_text(json.dumps(shape))
    receipt = Receipt(LEAVES[5], 5, merkle.inclusion_proof(5, 6, fetch_for(LEAVES)), head)
    (tmp_path / "receipt.json").write_text(json.dumps(receipt.to_json()))
    paths = (tmp_path / "sth.json", tmp_path / "key.pem")
    with pytest.raises(ReceiptInvalid):
        check(tmp_path / "bad.json", *paths)
    with pytest.raises(ReceiptInvalid):
        check(tmp_path / "receipt.json", *paths, consistency_file=tmp_path / "bad.json")


@pytest.mark.parametrize(
    "field, value",
    [
        ("tree_size", 1 << 64),
        ("timestamp_ms", 170000000088888888888888888888888888888888888888888888),  # the fuzzer's
        ("timestamp_ms", -1),
        ("timestamp_ms", float("inf")),  # the fuzzer's second: 1E700000000000 in the JSON
        ("tree_size", 6.0),
        ("tree_size", "6"),
        ("tree_size", True),
        ("leaf_index", 1 << 64),
        ("leaf_index", -5),
    ],
)
def test_a_receipt_with_a_number_outside_uint64_is_invalid(field: str, value: object) -> None:
    """Found by the full fuzzing budget (tests/chaos/fuzz.py, 200,000 runs): a tree head whose
    timestamp did not fit RFC 6962's 64-bit field crashed the check with `struct.error` while
    building the signed bytes, and one of 1E700000000000 (infinity) with OverflowError, instead
    of answering INVALID. Only JSON integers are taken."""
    key = Ed25519PrivateKey.generate()
    head = TreeHead.sign(key, tree_size=6, timestamp_ms=1, root_hash=ROOTS[6])
    doc = Receipt(LEAVES[5], 5, merkle.inclusion_proof(5, 6, fetch_for(LEAVES)), head).to_json()
    if field == "leaf_index":
        doc[field] = value
    else:
        doc["tree_head"][field] = value
    with pytest.raises(ReceiptInvalid, match="64-bit"):
        verify_receipt(Receipt.from_json(doc), public_key=key.public_key())
