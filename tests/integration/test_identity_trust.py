"""Identity's trust services on real engines: faces, liveness -> KYC VERIFIED, dual recording
in GridFS, e-contract signing with a Merkle-log receipt checked by the offline verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import AsyncMongoClient
from typer.testing import CliRunner

from tests.fixtures import faces
from tests.integration.harness import RUN_ID, Engines, eventually, random_key
from tests.integration.test_identity_service import (
    Identity,
    identity_events,
    make_topics,
    problem_code,
    read_topic,
    running_identity,
    settings_for,
)
from zerocontact.identity.notifier import SmsGatewaySimulator
from zerocontact.identity.trust import handlers
from zerocontact.identity.trust.cli import app as verifier_cli
from zerocontact.identity.trust.cli import check
from zerocontact.identity.trust.treehead import ReceiptInvalid

SCRIPT = ["risk_disclosure", "terms_read", "consent"]


@pytest.fixture(scope="module")
async def identity(
    engines: Engines, kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[Identity]:  # fmt: skip
    prefix = f"t{RUN_ID}-{uuid.uuid4().hex[:10]}"
    events, notes = await make_topics(kafka_admin, prefix)
    database = f"t_trust_{uuid.uuid4().hex[:12]}"
    gateway = SmsGatewaySimulator()
    settings = settings_for(
        engines, database=database, events=events, notes=notes, group=f"{prefix}-kyb",
        gateway=gateway, trust_log_signing_seed=random_key(), trust_head_interval_s=0.5,
    )  # fmt: skip
    try:
        async for running in running_identity(settings, engines, gateway):
            yield running
    finally:
        await mongo_client.drop_database(database)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def strong_customer(identity: Identity) -> tuple[str, str, str]:
    """A registered customer with TOTP: (id, AAL1 token, AAL2 token)."""
    person, customer = await identity.register()
    cid = customer["customer_id"]
    aal1 = (await identity.login(person)).json()["access_token"]
    totp, _ = await identity.enrol_totp(cid, aal1)
    aal2 = (await identity.login(person, totp.at(datetime.now(UTC), counter_offset=1))).json()
    return cid, aal1, aal2["access_token"]


def write(tmp: Path, name: str, content: Any) -> Path:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


async def test_face_enrolment_verification_kyc_dual_recording_and_signed_contract(
    identity: Identity, mongo_client: AsyncMongoClient[dict[str, Any]], tmp_path: Path
) -> None:
    cid, aal1, aal2 = await strong_customer(identity)
    db = mongo_client[identity.settings.mongodb_database]
    photo = faces.jpeg(faces.astronaut())

    # Enrolment needs AAL2; unusable photos are 422 with a reason and no echo.
    r = await identity.post(f"/v1/customers/{cid}/face", {"photo": b64(photo)}, token=aal1)
    assert r.status_code == 403 and problem_code(r) == "step_up_required"
    two = faces.jpeg(faces.side_by_side())
    r = await identity.post(f"/v1/customers/{cid}/face", {"photo": b64(two)}, token=aal2)
    assert r.status_code == 422 and problem_code(r) == "several_faces"
    blank = faces.jpeg(faces.astronaut()[:, :, :] * 0 + 128)
    r = await identity.post(f"/v1/customers/{cid}/face", {"photo": b64(blank)}, token=aal2)
    assert r.status_code == 422 and problem_code(r) == "no_face"
    r = await identity.post(f"/v1/customers/{cid}/face", {"photo": "@@not-base64@@"}, token=aal2)
    assert r.status_code == 422 and "not-base64" not in r.text
    assert await db["face_templates"].find_one({"_id": cid}) is None
    r = await identity.post(f"/v1/customers/{cid}/face", {"photo": b64(photo)}, token=aal2)
    assert r.status_code == 201, r.text
    assert r.json()["image_kept"] is False
    template = await db["face_templates"].find_one({"_id": cid})
    assert template is not None and template["embedding_encrypted"].startswith("v1:")
    assert template["image_file_id"] is None

    # Another person does not match; a still-photo video is not alive; neither verifies KYC.
    r = await identity.post(
        f"/v1/customers/{cid}/face/verifications",
        {"photo": b64(faces.jpeg(faces.grace_hopper()))}, token=aal1,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["matched"] is False and r.json()["kyc_level"] == "BASIC"
    probe = faces.jpeg(faces.variants(faces.astronaut())["rotated_5"])
    r = await identity.post(
        f"/v1/customers/{cid}/face/verifications",
        {"photo": b64(probe), "video": b64(faces.still_video())}, token=aal1,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["matched"] is True and r.json()["liveness"]["passed"] is False
    assert r.json()["kyc_level"] == "BASIC"

    # A live match raises KYC to VERIFIED with the verification as evidence.
    r = await identity.post(
        f"/v1/customers/{cid}/face/verifications",
        {"photo": b64(probe), "video": b64(faces.blink_video(2))}, token=aal1,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    verification = r.json()
    assert verification["matched"] and verification["liveness"]["passed"]
    assert verification["liveness"]["blinks"] == 2
    assert verification["kyc_level"] == "VERIFIED"
    customer = await db["customers"].find_one({"_id": cid})
    assert customer is not None
    step = customer["kyc_history"][-1]
    assert (step["from"], step["to"]) == ("BASIC", "VERIFIED")
    assert f"face_verification={verification['id']}" in step["evidence"]
    assert "liveness=blink:2 passed" in step["evidence"]

    # A contract template with a dual-recording script (reviewer only).
    tid = f"loan-{uuid.uuid4().hex[:8]}-v1"
    template_body = {
        "template_id": tid, "title": "Consumer loan", "product_code": "wealth",
        "body": "Loan contract\nBorrower: ${borrower_ref}\nAmount (CNY fen): ${amount}\n",
        "dual_recording_script": SCRIPT,
    }  # fmt: skip
    r = await identity.app.client.post("/v1/contract-templates", json=template_body)
    assert r.status_code == 403
    operator = {"X-Operator-Key": identity.settings.operator_key.get_secret_value()}
    r = await identity.app.client.post(
        "/v1/contract-templates", json=template_body, headers=operator
    )
    assert r.status_code == 201, r.text
    assert r.json()["fields"] == ["amount", "borrower_ref"]

    # Dual recording: stored in GridFS (encrypted), hash, duration, steps, face on frames.
    recording = faces.blink_video(2)
    steps = [{"step_id": s, "acknowledged_at_ms": 200 + 500 * i} for i, s in enumerate(SCRIPT)]
    bad = await identity.post(
        f"/v1/customers/{cid}/dual-recordings",
        {"template_id": tid, "video": b64(recording), "steps": steps[::-1]}, token=aal1,
    )  # fmt: skip
    assert bad.status_code == 422
    r = await identity.post(
        f"/v1/customers/{cid}/dual-recordings",
        {"template_id": tid, "video": b64(recording), "steps": steps}, token=aal1,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["content_sha256"] == hashlib.sha256(recording).hexdigest()
    assert rec["duration_ms"] == round(26 * 1000 / 15)
    assert rec["face_matched"] is True and rec["frames_matched"] == 5
    assert rec["retain_until"][:4] == str(datetime.now(UTC).year + 20)
    stored = await db["dual_recordings"].find_one({"_id": rec["id"]})
    assert stored is not None
    bucket = AsyncGridFSBucket(db, bucket_name="trust_recordings")
    sealed = await (await bucket.open_download_stream(stored["file_id"])).read()
    assert sealed.startswith(b"v1:") and recording[:64] not in sealed

    # Draft (needs the recording), then sign: AAL2 + recent live face verification.
    fields = {"borrower_ref": cid, "amount": "5000000"}
    r = await identity.post(
        f"/v1/customers/{cid}/contracts", {"template_id": tid, "fields": fields}, token=aal1
    )
    assert r.status_code == 409 and problem_code(r) == "contract_state"
    r = await identity.post(
        f"/v1/customers/{cid}/contracts", {"template_id": tid, "fields": {"amount": "1"}},
        token=aal1,
    )  # fmt: skip
    assert r.status_code == 422 and problem_code(r) == "invalid_contract_fields"
    r = await identity.post(
        f"/v1/customers/{cid}/contracts",
        {"template_id": tid, "fields": fields, "dual_recording_id": rec["id"]}, token=aal1,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    contract = r.json()
    assert contract["status"] == "DRAFT"
    r = await identity.post(f"/v1/contracts/{contract['id']}/signature", token=aal1)
    assert r.status_code == 403 and problem_code(r) == "step_up_required"
    r = await identity.post(f"/v1/contracts/{contract['id']}/signature", token=aal2)
    assert r.status_code == 201, r.text
    signed = r.json()
    receipt = signed["receipt"]
    again = await identity.post(f"/v1/contracts/{contract['id']}/signature", token=aal2)
    assert again.status_code == 409

    # The offline verifier: files only.
    key_pem = (await identity.app.client.get("/v1/trust-log/public-key")).text
    sth = receipt["tree_head"]
    receipt_file = write(tmp_path, "receipt.json", signed)
    sth_file = write(tmp_path, "sth.json", sth)
    key_file = write(tmp_path, "log.pem", key_pem)
    text_file = write(tmp_path, "contract.txt", contract["text"].encode())
    evidence = check(receipt_file, sth_file, key_file, contract_file=text_file)
    assert evidence["contract_sha256"] == contract["contract_sha256"]
    assert evidence["face_verification"]["id"] == verification["id"]
    assert evidence["authentication"]["aal"] == "AAL2"
    assert evidence["dual_recording_sha256"] == rec["content_sha256"]
    cli = CliRunner().invoke(
        verifier_cli,
        ["verify-receipt", str(receipt_file), str(sth_file), str(key_file), "--contract",
         str(text_file)],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    assert "OK: contract" in cli.output

    # Any changed byte fails: the contract, the leaf, the proof, the tree head.
    text = contract["text"].encode()
    tampered = write(tmp_path, "contract2.txt", text[:-2] + bytes([text[-2] ^ 1]) + text[-1:])
    with pytest.raises(ReceiptInvalid):
        check(receipt_file, sth_file, key_file, contract_file=tampered)
    leaf = bytearray(base64.b64decode(receipt["leaf"]))
    leaf[len(leaf) // 2] ^= 1
    bad_leaf = signed | {"receipt": receipt | {"leaf": b64(bytes(leaf))}}
    with pytest.raises(ReceiptInvalid):
        check(write(tmp_path, "r1.json", bad_leaf), sth_file, key_file)
    if receipt["inclusion_path"]:
        hop = bytearray(base64.b64decode(receipt["inclusion_path"][0]))
        hop[0] ^= 1
        path = [b64(bytes(hop)), *receipt["inclusion_path"][1:]]
        bad_path = signed | {"receipt": receipt | {"inclusion_path": path}}
        with pytest.raises(ReceiptInvalid):
            check(write(tmp_path, "r2.json", bad_path), sth_file, key_file)
    root = bytearray(base64.b64decode(sth["root_hash"]))
    root[5] ^= 1
    with pytest.raises(ReceiptInvalid):
        check(receipt_file, write(tmp_path, "sth2.json", sth | {"root_hash": b64(bytes(root))}),
              key_file)  # fmt: skip
    cli = CliRunner().invoke(
        verifier_cli, ["verify-receipt", str(receipt_file), str(sth_file), str(key_file),
                       "--contract", str(tampered)],
    )  # fmt: skip
    assert cli.exit_code == 1 and "INVALID" in cli.output

    # A second signature grows the log; the first receipt checks against the later head.
    r = await identity.post(
        f"/v1/customers/{cid}/contracts",
        {"template_id": tid, "fields": fields | {"amount": "7"}, "dual_recording_id": rec["id"]},
        token=aal1,
    )  # fmt: skip
    assert r.status_code == 201
    r2 = await identity.post(f"/v1/contracts/{r.json()['id']}/signature", token=aal2)
    assert r2.status_code == 201, r2.text
    later = (await identity.app.client.get("/v1/trust-log/tree-head")).json()
    assert later["tree_size"] > sth["tree_size"]
    proof = (await identity.app.client.get(
        "/v1/trust-log/proofs/consistency",
        params={"first": sth["tree_size"], "second": later["tree_size"]},
    )).json()  # fmt: skip
    later_file = write(tmp_path, "later.json", later)
    with pytest.raises(ReceiptInvalid):  # a later head needs the consistency proof
        check(receipt_file, later_file, key_file)
    consistency_file = write(tmp_path, "consistency.json", proof)
    check(receipt_file, later_file, key_file, consistency_file=consistency_file)
    bad_proof = proof | {"proof": [b64(bytes(32)), *proof["proof"][1:]]}
    with pytest.raises(ReceiptInvalid):
        check(receipt_file, later_file, key_file,
              consistency_file=write(tmp_path, "c2.json", bad_proof))  # fmt: skip
    r = await identity.app.client.get(
        "/v1/trust-log/proofs/inclusion",
        params={"leaf_index": signed["leaf_index"], "tree_size": later["tree_size"]},
    )
    assert r.status_code == 200 and r.json()["tree_size"] == later["tree_size"]
    r = await identity.app.client.get(
        "/v1/trust-log/proofs/inclusion", params={"leaf_index": 5, "tree_size": 10**9}
    )
    assert r.status_code == 422

    # Events on identity.events.v1 (protobuf CloudEvents).
    records = await read_topic(
        identity.engines.kafka_bootstrap, identity.settings.events_topic, at_least=10
    )
    kinds = [e.WhichOneof("event") for e in identity_events(records, cid)]
    for kind in ("face_enrolled", "face_verified", "kyc_level_changed", "dual_recording_stored",
                 "contract_signed"):  # fmt: skip
        assert kind in kinds, kinds
    heads = [e.tree_head_signed for e in identity_events(records, "trust-log")]
    assert any(h.tree_size == sth["tree_size"] for h in heads)
    assert photo[:32] not in b"".join(r.value for r in records)


async def test_signing_needs_a_recent_live_face_verification(identity: Identity) -> None:
    cid, aal1, aal2 = await strong_customer(identity)
    tid = f"plain-{uuid.uuid4().hex[:8]}-v1"
    operator = {"X-Operator-Key": identity.settings.operator_key.get_secret_value()}
    r = await identity.app.client.post(
        "/v1/contract-templates", headers=operator,
        json={"template_id": tid, "title": "T", "body": "Hello ${x}", "product_code": "loan"},
    )  # fmt: skip
    assert r.status_code == 201
    r = await identity.post(
        f"/v1/customers/{cid}/contracts", {"template_id": tid, "fields": {"x": "1"}}, token=aal1
    )
    assert r.status_code == 201
    r = await identity.post(f"/v1/contracts/{r.json()['id']}/signature", token=aal2)
    assert r.status_code == 403 and problem_code(r) == "face_verification_required"
    r = await identity.post(
        f"/v1/customers/{cid}/face/verifications",
        {"photo": b64(faces.jpeg(faces.astronaut()))}, token=aal1,
    )  # fmt: skip
    assert r.status_code == 409 and problem_code(r) == "face_not_enrolled"
    small = faces.jpeg(cv2.resize(faces.astronaut(), (220, 220)))
    r = await identity.post(f"/v1/customers/{cid}/face", {"photo": b64(small)}, token=aal2)
    assert r.status_code == 422 and problem_code(r) == "face_too_small"


async def test_the_enrolment_photo_is_kept_only_with_consent_and_encrypted(
    identity: Identity, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    cid, _, aal2 = await strong_customer(identity)
    photo = faces.jpeg(faces.grace_hopper())
    body = {"photo": b64(photo), "keep_image": True}
    r = await identity.post(f"/v1/customers/{cid}/face", body, token=aal2)
    assert r.status_code == 201, r.text
    assert r.json()["image_kept"] is True
    db = mongo_client[identity.settings.mongodb_database]
    template = await db["face_templates"].find_one({"_id": cid})
    assert template is not None and template["image_file_id"] is not None
    bucket = AsyncGridFSBucket(db, bucket_name="trust_face_images")
    sealed = await (await bucket.open_download_stream(template["image_file_id"])).read()
    assert sealed.startswith(b"v1:") and photo[:64] not in sealed


async def test_recordings_past_retention_lose_their_file_and_keep_their_record(
    identity: Identity, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    ctx = identity.app.app.state.trust
    db = mongo_client[identity.settings.mongodb_database]
    stored_at = datetime(2020, 1, 1, tzinfo=UTC)
    ids = {}
    for name, keep_days in (("expired", 30), ("kept", 400), ("file_gone", 30)):
        rid = str(uuid.uuid4())
        file_id = await ctx.repo.store_file(
            ctx.repo.recording_files, rid, b"v1:sealed-" + b"x" * 300_000
        )
        await db["dual_recordings"].insert_one(
            {"_id": rid, "customer_id": "c", "product_code": "loan", "file_id": file_id,
             "content_sha256": "ab" * 32, "stored_at": stored_at,
             "retain_until": stored_at + timedelta(days=keep_days)}
        )  # fmt: skip
        ids[name] = (rid, file_id)
    # A run that died after deleting this file but before marking its record.
    await ctx.repo.recording_files.delete(ids["file_gone"][1])
    clock = stored_at + timedelta(days=100)  # the injected "now"
    purged = await handlers.purge_expired_recordings(ctx, now=clock)
    mine = {rid for rid, _ in ids.values()}
    assert sorted(set(purged) & mine) == sorted([ids["expired"][0], ids["file_gone"][0]])
    for name in ("expired", "file_gone"):
        rid, file_id = ids[name]
        rec = await db["dual_recordings"].find_one({"_id": rid})
        assert rec is not None and rec["purged_at"] == clock  # the record stays, with the time
        assert rec["content_sha256"] == "ab" * 32
        with pytest.raises(NoFile):
            await ctx.repo.read_file(ctx.repo.recording_files, file_id)
    rid, file_id = ids["kept"]
    assert (await db["dual_recordings"].find_one({"_id": rid}) or {}).get("purged_at") is None
    assert (await ctx.repo.read_file(ctx.repo.recording_files, file_id)).startswith(b"v1:")
    again = await handlers.purge_expired_recordings(ctx, now=clock)
    assert not set(again) & mine  # idempotent: nothing left to purge
    later = await handlers.purge_expired_recordings(ctx, now=clock + timedelta(days=400))
    assert rid in later

    # Each purge is an event (once), naming the recording and the hash of what was deleted.
    async def purge_events() -> list[Any] | None:
        records = await read_topic(
            identity.engines.kafka_bootstrap, identity.settings.events_topic, at_least=1
        )
        found = [
            e.dual_recording_purged
            for e in identity_events(records, "c")
            if e.WhichOneof("event") == "dual_recording_purged"
            and e.dual_recording_purged.recording_id in mine
        ]
        return found if len(found) >= 3 else None

    purge_events_seen = await eventually(purge_events, within_s=20)
    assert sorted(p.recording_id for p in purge_events_seen) == sorted(mine)
    assert all(p.content_sha256 == "ab" * 32 for p in purge_events_seen)
