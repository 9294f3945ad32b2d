"""The trust log with two identity replicas (two uvicorn servers, one database) on the real
engines: concurrent signings on both, one sequencer, a takeover, repair of stuck contracts."""

from __future__ import annotations

import asyncio
import base64
import io
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pymongo import AsyncMongoClient

from tests.fixtures import faces
from tests.integration.harness import RUN_ID, Engines, eventually, random_key, serve
from tests.integration.spans import trace_id
from tests.integration.test_identity_service import Identity, make_topics, settings_for
from tests.integration.test_identity_trust import b64, strong_customer
from zerocontact.identity.app import create_app
from zerocontact.identity.notifier import SmsGatewaySimulator
from zerocontact.identity.trust import domain, merkle
from zerocontact.identity.trust.sequencer import QUEUE
from zerocontact.identity.trust.treehead import (
    Receipt,
    TreeHead,
    canonical_json,
    verify_receipt,
)
from zerocontact.identity.v1 import events_pb2


@dataclass
class Pair:
    replicas: list[Identity]
    stacks: list[AsyncExitStack | None]  # None: that replica was stopped
    database: str

    def leader(self) -> int | None:
        found = [
            n for n, r in enumerate(self.replicas)
            if self.stacks[n] is not None and r.app.app.state.trust.sequencer.leader
        ]  # fmt: skip
        assert len(found) <= 1, "two replicas believe they sequence"
        return found[0] if found else None


@pytest.fixture(scope="module")
async def pair(
    engines: Engines, kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[Pair]:  # fmt: skip
    prefix = f"t{RUN_ID}-{uuid.uuid4().hex[:10]}"
    events, notes = await make_topics(kafka_admin, prefix)
    database = f"t_trust_rep_{uuid.uuid4().hex[:12]}"
    gateway = SmsGatewaySimulator()
    settings = settings_for(
        engines, database=database, events=events, notes=notes, group=f"{prefix}-kyb",
        gateway=gateway, trust_log_signing_seed=random_key(), trust_log_lease_s=2.0,
        trust_sweep_after_s=1.0,
    )  # fmt: skip
    replicas: list[Identity] = []
    stacks: list[AsyncExitStack | None] = []
    try:
        for _ in range(2):  # two pods of one deployment: same settings, same database
            stack = AsyncExitStack()
            running = await stack.enter_async_context(serve(create_app(settings)))
            replicas.append(Identity(running, settings, engines, gateway, io.StringIO()))
            stacks.append(stack)
        yield Pair(replicas, stacks, database)
    finally:
        for stack in stacks:
            if stack is not None:
                await stack.aclose()
        await mongo_client.drop_database(database)


STORED_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def contract_signed_headers(
    engines: Engines, topic: str, contract_id: str
) -> dict[str, bytes]:
    """The record headers of the ContractSigned event of ``contract_id``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=engines.kafka_bootstrap, auto_offset_reset="earliest",
        group_id=None,
    )  # fmt: skip
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            while True:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    for record in batch:
                        event = events_pb2.IdentityEvent.FromString(record.value or b"")
                        if (
                            event.WhichOneof("event") == "contract_signed"
                            and event.contract_signed.contract_id == contract_id
                        ):
                            return dict(record.headers)
    finally:
        await consumer.stop()


async def signer(identity: Identity, contracts: int) -> tuple[str, str, list[dict[str, Any]]]:
    """A customer with a live face verification and ``contracts`` drafts: (id, AAL2, drafts)."""
    cid, aal1, aal2 = await strong_customer(identity)
    photo = faces.jpeg(faces.astronaut())
    r = await identity.post(f"/v1/customers/{cid}/face", {"photo": b64(photo)}, token=aal2)
    assert r.status_code == 201, r.text
    probe = faces.jpeg(faces.variants(faces.astronaut())["rotated_5"])
    r = await identity.post(
        f"/v1/customers/{cid}/face/verifications",
        {"photo": b64(probe), "video": b64(faces.blink_video(2))}, token=aal1,
    )  # fmt: skip
    assert r.status_code == 201 and r.json()["liveness"]["passed"], r.text
    tid = f"plain-{uuid.uuid4().hex[:8]}-v1"
    operator = {"X-Operator-Key": identity.settings.operator_key.get_secret_value()}
    r = await identity.app.client.post(
        "/v1/contract-templates", headers=operator,
        json={"template_id": tid, "title": "T", "body": "Loan ${n}", "product_code": "loan"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    drafts = []
    for n in range(contracts):
        r = await identity.post(
            f"/v1/customers/{cid}/contracts", {"template_id": tid, "fields": {"n": str(n)}},
            token=aal1,
        )  # fmt: skip
        assert r.status_code == 201, r.text
        drafts.append(r.json())
    return cid, aal2, drafts


async def public_key(identity: Identity) -> Ed25519PublicKey:
    pem = (await identity.app.client.get("/v1/trust-log/public-key")).text
    key = load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    return key


async def assert_log_verifies(
    pair: Pair, receipts: list[dict[str, Any]], db: Any, *, via: Identity
) -> TreeHead:
    """Every receipt is included under the final head (consistency proof from ``via``), and
    every head ever published is consistent with the final one: the log never forked."""
    key = await public_key(via)
    final = TreeHead.from_json((await via.app.client.get("/v1/trust-log/tree-head")).json())
    final.verify(key)

    async def consistency(first: int) -> list[bytes]:
        if first in (0, final.tree_size):
            return []
        r = await via.app.client.get(
            "/v1/trust-log/proofs/consistency",
            params={"first": first, "second": final.tree_size},
        )
        assert r.status_code == 200, r.text
        return [base64.b64decode(p) for p in r.json()["proof"]]

    for doc in receipts:
        receipt = Receipt.from_json(doc)
        proof = await consistency(receipt.tree_head.tree_size)
        verify_receipt(receipt, public_key=key, trusted_head=final, consistency=proof)
        r = await via.app.client.get(
            "/v1/trust-log/proofs/inclusion",
            params={"leaf_index": receipt.leaf_index, "tree_size": final.tree_size},
        )
        assert r.status_code == 200, r.text
        path = [base64.b64decode(p) for p in r.json()["inclusion_path"]]
        merkle.verify_inclusion(
            receipt.leaf_index, final.tree_size, merkle.leaf_hash(receipt.leaf), path,
            final.root_hash,
        )  # fmt: skip
    heads = [TreeHead.from_json(h) async for h in db["trust_tree_heads"].find({})]
    assert heads and max(h.tree_size for h in heads) == final.tree_size
    for head in heads:
        head.verify(key)
        merkle.verify_consistency(
            head.tree_size, final.tree_size, head.root_hash, final.root_hash,
            await consistency(head.tree_size),
        )  # fmt: skip
    return final


async def test_two_replicas_sign_concurrently_with_dense_indexes_and_one_unforked_log(
    pair: Pair, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    a, b = pair.replicas
    db = mongo_client[pair.database]
    await eventually(lambda: asyncio.sleep(0, pair.leader() is not None), within_s=10)
    _, aal2, drafts = await signer(a, 24)

    async def sign(n: int, contract: dict[str, Any]) -> Any:
        replica = pair.replicas[n % 2]  # the load balancer's round robin
        return await replica.post(f"/v1/contracts/{contract['id']}/signature", token=aal2)

    responses = await asyncio.gather(*(sign(n, c) for n, c in enumerate(drafts)))
    assert [r.status_code for r in responses] == [201] * len(drafts), [
        r.text for r in responses if r.status_code != 201
    ]
    signed = [r.json() for r in responses]
    assert sorted(s["leaf_index"] for s in signed) == list(range(len(drafts)))  # dense, unique
    for contract, result in zip(drafts, signed, strict=True):
        evidence = Receipt.from_json(result["receipt"]).evidence()
        assert evidence["contract_id"] == contract["id"] == result["contract_id"]
    # The non-sequencer replica serves proofs of leaves the sequencer wrote.
    follower = pair.replicas[1 - (pair.leader() or 0)]
    await assert_log_verifies(pair, [s["receipt"] for s in signed], db, via=follower)
    assert await db[QUEUE].count_documents({}) == 0  # every queued leaf completed and dropped
    again = await b.post(f"/v1/contracts/{drafts[0]['id']}/signature", token=aal2)
    assert again.status_code == 409  # signed once, one leaf


async def test_a_contract_stuck_in_signing_is_completed_from_its_queued_leaf(
    pair: Pair, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    a, b = pair.replicas
    db = mongo_client[pair.database]
    cid, aal2, drafts = await signer(a, 3)
    # Two crashes, written as the dying request left them: the leaf queued and the contract
    # claimed (SIGNING), or the leaf queued and the process gone before the claim (DRAFT).
    now = datetime.now(UTC)
    # The first dying request's trace context is stored with its leaf; the second had none.
    stored = {drafts[0]["id"]: STORED_TRACE, drafts[1]["id"]: None}
    for contract, claimed in ((drafts[0], True), (drafts[1], False)):
        evidence = domain.evidence_package(
            contract_id=contract["id"], template_id=contract["template_id"],
            contract_sha256=contract["contract_sha256"], signer=cid,
            auth=domain.AuthenticationFacts("AAL2", ("pwd", "otp"), now, "session-crashed"),
            face=domain.FaceFacts("verification-x", now, 0.07, True),
            dual_recording_sha256=None, signed_at=now,
        )  # fmt: skip
        await db[QUEUE].insert_one(
            {"_id": contract["id"], "leaf": canonical_json(evidence), "queued_at": now,
             "signed_at": now, "traceparent": stored[contract["id"]]}
        )  # fmt: skip
        if claimed:
            await db["contracts"].update_one(
                {"_id": contract["id"]}, {"$set": {"status": "SIGNING", "version": 2}}
            )
    key = await public_key(a)

    async def signed(contract_id: str) -> dict[str, Any] | None:
        doc = await db["contracts"].find_one({"_id": contract_id})
        return doc if doc and doc["status"] == "SIGNED" else None

    for contract in drafts[:2]:  # the sequencer's sweep completes both
        doc = await eventually(lambda c=contract: signed(c["id"]), within_s=15)
        evidence = verify_receipt(
            Receipt.from_json(doc["receipt"]), public_key=key,
            contract=contract["text"].encode(),
        )  # fmt: skip
        assert evidence["authentication"]["session"] == "session-crashed"
        assert await db[QUEUE].find_one({"_id": contract["id"]}) is None
    # The sweep's completion continued the stored trace: ContractSigned is in it.
    headers = await contract_signed_headers(a.engines, a.settings.events_topic, drafts[0]["id"])
    assert trace_id(headers["traceparent"]) == trace_id(STORED_TRACE)

    # A request whose wait runs out gets 202 (the contract stays SIGNING); a retry with the
    # same Idempotency-Key gets the receipt of the same leaf.
    follower = pair.replicas[1 - (pair.leader() or 0)]
    headers = follower.headers(aal2)
    wait_s = follower.settings.trust_sign_wait_s
    follower.settings.trust_sign_wait_s = 0.0  # shared settings object: both replicas
    try:
        path = f"/v1/contracts/{drafts[2]['id']}/signature"
        r = await follower.app.client.post(path, headers=headers)
    finally:
        follower.settings.trust_sign_wait_s = wait_s
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "SIGNING" and int(r.headers["Retry-After"]) >= 1
    retry = await follower.app.client.post(path, headers=headers)
    assert retry.status_code == 201, retry.text
    assert "Idempotent-Replayed" not in retry.headers
    # No second leaf: the log holds exactly one leaf per signed contract.
    signed_count = await db["contracts"].count_documents({"status": "SIGNED"})
    head = (await follower.app.client.get("/v1/trust-log/tree-head")).json()
    assert head["tree_size"] == signed_count
    r = await b.app.client.get(f"/v1/contracts/{drafts[2]['id']}", headers=b.headers(aal2))
    assert r.json()["status"] == "SIGNED"
    assert r.json()["leaf_index"] == retry.json()["leaf_index"]


async def test_the_sequencer_dies_and_the_other_replica_takes_over_within_the_lease(
    pair: Pair, mongo_client: AsyncMongoClient[dict[str, Any]]
) -> None:
    db = mongo_client[pair.database]
    leader = pair.leader()
    assert leader is not None
    survivor = pair.replicas[1 - leader]
    _, aal2, drafts = await signer(survivor, 4)
    before = (await survivor.app.client.get("/v1/trust-log/tree-head")).json()["tree_size"]
    # The sequencing pod is killed: its loop stops dead, the lease is NOT released (a clean
    # stop releases it: tests/integration/test_identity_trust_log.py).
    dead = pair.replicas[leader].app.app.state.trust.sequencer
    assert dead.job is not None and dead.job.running
    await dead.job.stop()  # the loop only: Sequencer.stop would release the lease
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    results = await asyncio.gather(
        *(survivor.post(f"/v1/contracts/{c['id']}/signature", token=aal2) for c in drafts)
    )
    elapsed = loop.time() - killed_at
    assert [r.status_code for r in results] == [201] * 4, [r.text for r in results]
    assert survivor.app.app.state.trust.sequencer.leader
    settings = survivor.settings
    # The lease was renewed at most a third of it before the kill; the survivor tries to claim
    # five times per lease: the signings wait out (most of) the lease, then go through.
    print(f"takeover: 4 signings answered {elapsed:.2f} s after the sequencer died")
    assert settings.trust_log_lease_s / 2 <= elapsed < settings.trust_log_lease_s + 2.0
    indexes = sorted(r.json()["leaf_index"] for r in results)
    assert indexes == list(range(before, before + 4))
    all_receipts = [d["receipt"] async for d in db["contracts"].find({"status": "SIGNED"})]
    final = await assert_log_verifies(pair, all_receipts, db, via=survivor)
    assert final.tree_size == before + 4 == len(all_receipts)
    assert sorted(Receipt.from_json(r).leaf_index for r in all_receipts) == list(
        range(final.tree_size)
    )
    # The dead pod's process goes away; its late release is fenced (older epoch).
    stack = pair.stacks[leader]
    assert stack is not None
    await stack.aclose()
    pair.stacks[leader] = None
    assert survivor.app.app.state.trust.sequencer.leader
    r = await survivor.post(f"/v1/contracts/{drafts[0]['id']}/signature", token=aal2)
    assert r.status_code == 409
