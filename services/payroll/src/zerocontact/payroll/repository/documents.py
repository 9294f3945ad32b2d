"""Payroll's aggregates as MongoDB documents and back (amounts as ``Int64`` minor units)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bson import Int64

from zerocontact.payroll.domain.aggregates import (
    Agent,
    Batch,
    BatchItem,
    Employer,
    GigPayout,
    ItemLine,
    Party,
)
from zerocontact.payroll.domain.batches import BatchState
from zerocontact.platform.mongo import Document


def party_from_document(doc: Mapping[str, Any]) -> Party:
    """A party of the directory projected from identity's events."""
    return Party(
        party_id=doc["_id"],
        kind=doc.get("kind") or "",
        name=doc.get("name") or "",
        kyc_level=doc.get("kyc_level") or "",
        legal_representative_id=doc.get("legal_representative_id") or "",
    )


def agent_document(agent: Agent) -> Document:
    """An agent entry of the employer's ``agents`` map."""
    return {"representative_id": agent.representative_id, "authorised_at": agent.authorised_at}


def employer_document(employer: Employer) -> Document:
    """A new employer document (the outbox adds ``version``)."""
    threshold = employer.sweep_threshold_minor
    return {
        "_id": employer.employer_id,
        "name": employer.name,
        "representative_id": employer.representative_id,
        "maker_checker": employer.maker_checker,
        "sweep_threshold_minor": Int64(threshold) if threshold is not None else None,
        "agents": {k: agent_document(a) for k, a in employer.agents.items()},
        "onboarded_at": employer.onboarded_at,
    }


def employer_from_document(doc: Mapping[str, Any]) -> Employer:
    """The employer of a stored document."""
    threshold = doc.get("sweep_threshold_minor")
    return Employer(
        employer_id=doc["_id"],
        name=doc["name"],
        representative_id=doc["representative_id"],
        maker_checker=bool(doc.get("maker_checker")),
        sweep_threshold_minor=int(threshold) if threshold is not None else None,
        agents={
            k: Agent(a["representative_id"], a["authorised_at"])
            for k, a in (doc.get("agents") or {}).items()
        },
        onboarded_at=doc["onboarded_at"],
        version=int(doc["version"]),
    )


def batch_document(batch: Batch) -> Document:
    """A new batch document: refused with its report, or submitted with its chunks."""
    doc: Document = {
        "_id": batch.batch_id,
        "employer_id": batch.employer_id,
        "currency": batch.currency,
        "item_count": batch.item_count,
        "control_sum_minor": Int64(batch.control_sum_minor),
        "submitted_by": batch.submitted_by,
        "submitted_at": batch.submitted_at,
        "source": batch.source,
        "scheduled_for": batch.scheduled_for,
        "state": str(batch.state),
    }
    if batch.report is not None:
        doc["report"] = dict(batch.report)
    else:
        doc["chunks"] = batch.chunks
        doc["chunks_done"] = {str(c): True for c in sorted(batch.chunks_done)}
    return doc


def batch_from_document(doc: Mapping[str, Any]) -> Batch:
    """The batch of a stored document."""
    return Batch(
        batch_id=doc["_id"],
        employer_id=doc["employer_id"],
        currency=doc["currency"],
        item_count=int(doc["item_count"]),
        control_sum_minor=int(doc["control_sum_minor"]),
        submitted_by=doc["submitted_by"],
        submitted_at=doc["submitted_at"],
        source=doc.get("source") or "",
        scheduled_for=doc.get("scheduled_for"),
        state=BatchState(doc["state"]),
        chunks=int(doc.get("chunks") or 0),
        chunks_done=frozenset(int(k) for k in (doc.get("chunks_done") or {})),
        report=doc.get("report"),
        approved_by=doc.get("approved_by"),
        version=int(doc["version"]),
    )


def item_document(item: BatchItem) -> Document:
    """A batch item's document (its payslip figures nested)."""
    return {
        "_id": item.item_id,
        "batch_id": item.batch_id,
        "seq": item.seq,
        "chunk": item.chunk,
        "end_to_end_id": item.end_to_end_id,
        "payee_name": item.payee_name,
        "card_enc": item.card_enc,
        "card_masked": item.card_masked,
        "bank": item.bank,
        "amount_minor": Int64(item.amount_minor),
        "customer_id": item.customer_id,
        "payslip": {
            "gross_minor": Int64(item.gross_minor),
            "deductions": {k: Int64(v) for k, v in item.deductions_minor.items()},
        },
    }


def item_line(item: Mapping[str, Any], outcome: Mapping[str, Any] | None) -> ItemLine:
    """An item with its outcome's state, attempts and reason (PENDING while undecided)."""
    return ItemLine(
        seq=int(item["seq"]),
        end_to_end_id=item["end_to_end_id"],
        payee_name=item["payee_name"],
        card_masked=item["card_masked"],
        bank=item["bank"],
        amount_minor=int(item["amount_minor"]),
        state="PENDING" if outcome is None else outcome["state"],
        attempts=0 if outcome is None else int(outcome["attempts"]),
        reason_code="" if outcome is None else outcome["reason_code"],
    )


def outcome_document(
    *,
    batch_id: str,
    currency: str,
    item: Mapping[str, Any],
    paid: bool,
    rail_reference: str,
    reason_code: str,
    reason: str,
    attempts: int,
    decided_at: datetime,
) -> Document:
    """An item's final outcome (``_id`` ``<batch>:<EndToEndId>``: the first decision wins)."""
    return {
        "_id": f"{batch_id}:{item['end_to_end_id']}",
        "item_id": item["_id"],
        "batch_id": batch_id,
        "chunk": item["chunk"],
        "end_to_end_id": item["end_to_end_id"],
        "state": "PAID" if paid else "FAILED",
        "amount_minor": item["amount_minor"],
        "currency": currency,
        "card_masked": item["card_masked"],
        "bank": item["bank"],
        "customer_id": item.get("customer_id") or "",
        "rail_reference": rail_reference,
        "reason_code": reason_code,
        "reason": reason,
        "attempts": attempts,
        "decided_at": decided_at,
    }


def gig_document(payout: GigPayout) -> Document:
    """A new gig payout's document."""
    return {
        "_id": payout.payout_id,
        "employer_id": payout.employer_id,
        "payee_name": payout.payee_name,
        "card_enc": payout.card_enc,
        "card_masked": payout.card_masked,
        "bank": payout.bank,
        "currency": payout.currency,
        "gross_minor": Int64(payout.gross_minor),
        "tax_minor": Int64(payout.tax_minor),
        "net_minor": Int64(payout.net_minor),
        "task_reference": payout.task_reference,
        "state": payout.state,
        "attempts": payout.attempts,
        "created_at": payout.created_at,
    }


def gig_from_document(doc: Mapping[str, Any]) -> GigPayout:
    """The gig payout of a stored document."""
    return GigPayout(
        payout_id=doc["_id"],
        employer_id=doc["employer_id"],
        payee_name=doc["payee_name"],
        card_enc=doc["card_enc"],
        card_masked=doc["card_masked"],
        bank=doc["bank"],
        currency=doc["currency"],
        gross_minor=int(doc["gross_minor"]),
        tax_minor=int(doc["tax_minor"]),
        net_minor=int(doc["net_minor"]),
        task_reference=doc["task_reference"],
        state=doc["state"],
        attempts=int(doc.get("attempts", 0)),
        created_at=doc["created_at"],
        reason_code=doc.get("reason_code", ""),
        version=int(doc["version"]),
    )
