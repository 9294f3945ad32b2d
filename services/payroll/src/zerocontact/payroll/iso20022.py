"""ISO 20022 messages with lxml's element builder: pain.001.001.09 in and out, pain.002 out.

* pain.001.001.09 (CustomerCreditTransferInitiation): one PmtInf per batch, category purpose
  SALA, one CdtTrfTxInf per salary with its EndToEndId; GrpHdr and PmtInf carry NbOfTxs and
  CtrlSum, which validation compares with the items.
* pain.002.001.10 (CustomerPaymentStatusReport): the group status (ACCP, PDNG, ACSC, PART,
  RJCT) and each transaction's status with its reason code (e.g. AC04 closed account).

An exported pain.001 carries card numbers MASKED (first 6 / last 4): it is a record of the
batch, not a payment file; an imported one must carry full card numbers. Parsing refuses DTDs
and entities (no XXE) and oversized documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker  # type: ignore[import-not-found, unused-ignore]

from zerocontact.payroll.domain.aggregates import Batch, ItemLine
from zerocontact.payroll.domain.batches import DEDUCTION_KINDS, RawItem
from zerocontact.platform.money import Money

PAIN_001 = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
PAIN_002 = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"
MAX_BYTES = 64 * 1024 * 1024


class MalformedMessage(ValueError):
    """Not a readable pain.001.001.09 document."""


@dataclass(frozen=True)
class Pain001:
    """A parsed initiation: its items and declared totals."""

    message_id: str
    items: list[RawItem]
    declared_count: int | None
    declared_sum: Decimal | None
    requested_execution: date | None


def _amount(money: Money) -> str:
    return str(money.to_decimal())


def _iso_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def export_pain001(batch: Batch, items: Iterable[ItemLine], *, debtor_name: str) -> bytes:
    """A pain.001.001.09 of a stored batch (cards masked)."""
    e = ElementMaker(namespace=PAIN_001, nsmap={None: PAIN_001})
    currency = batch.currency
    total = batch.control_sum
    count = str(batch.item_count)
    scheduled = batch.scheduled_for or batch.submitted_at
    transactions = [
        e.CdtTrfTxInf(
            e.PmtId(e.EndToEndId(item.end_to_end_id)),
            e.Amt(e.InstdAmt(_amount(Money(currency, item.amount_minor)), Ccy=currency)),
            e.CdtrAgt(e.FinInstnId(e.Nm(item.bank or "UNKNOWN"))),
            e.Cdtr(e.Nm(item.payee_name)),
            e.CdtrAcct(e.Id(e.Othr(e.Id(item.card_masked)))),
            e.RmtInf(e.Ustrd(f"salary {batch.batch_id}")),
        )
        for item in items
    ]
    document = e.Document(
        e.CstmrCdtTrfInitn(
            e.GrpHdr(
                e.MsgId(batch.batch_id.replace("-", "")[:35]),
                e.CreDtTm(_iso_time(batch.submitted_at)),
                e.NbOfTxs(count),
                e.CtrlSum(_amount(total)),
                e.InitgPty(e.Nm(debtor_name)),
            ),
            e.PmtInf(
                e.PmtInfId(batch.batch_id),
                e.PmtMtd("TRF"),
                e.NbOfTxs(count),
                e.CtrlSum(_amount(total)),
                e.PmtTpInf(e.CtgyPurp(e.Cd("SALA"))),
                e.ReqdExctnDt(e.Dt(scheduled.astimezone(UTC).date().isoformat())),
                e.Dbtr(e.Nm(debtor_name)),
                e.DbtrAcct(e.Id(e.Othr(e.Id(f"payroll:employer:{batch.employer_id}")))),
                e.DbtrAgt(e.FinInstnId(e.Nm("zerocontact"))),
                *transactions,
            ),
        )
    )
    return bytes(etree.tostring(document, xml_declaration=True, encoding="UTF-8"))


def _text(node: Any, path: str, ns: Mapping[str, str]) -> str | None:
    found = node.find(path, ns)
    return None if found is None or found.text is None else str(found.text).strip()


def parse_pain001(data: bytes) -> Pain001:
    """Read a pain.001.001.09; raise :class:`MalformedMessage` when it is not one."""
    if len(data) > MAX_BYTES:
        raise MalformedMessage("the document is too large")
    head = data[:4096]
    if b"<!DOCTYPE" in head or b"<!ENTITY" in data:
        raise MalformedMessage("DTDs and entities are not accepted")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise MalformedMessage(f"not well-formed XML: {exc}") from None
    if root.tag != f"{{{PAIN_001}}}Document":
        raise MalformedMessage("not a pain.001.001.09 Document")
    ns = {"p": PAIN_001}
    initiation = root.find("p:CstmrCdtTrfInitn", ns)
    if initiation is None:
        raise MalformedMessage("CstmrCdtTrfInitn is missing")
    payment_infos = initiation.findall("p:PmtInf", ns)
    if len(payment_infos) != 1:
        raise MalformedMessage("exactly one PmtInf (one batch) is accepted")
    info = payment_infos[0]
    purpose = _text(info, "p:PmtTpInf/p:CtgyPurp/p:Cd", ns)
    if purpose not in (None, "SALA"):
        raise MalformedMessage("the category purpose must be SALA")
    try:
        count_text = _text(initiation, "p:GrpHdr/p:NbOfTxs", ns)
        sum_text = _text(initiation, "p:GrpHdr/p:CtrlSum", ns)
        declared_count = int(count_text) if count_text is not None else None
        declared_sum = Decimal(sum_text) if sum_text is not None else None
        info_sum = _text(info, "p:CtrlSum", ns)
        if info_sum is not None and declared_sum is not None and Decimal(info_sum) != declared_sum:
            declared_sum = Decimal(info_sum)  # the mismatch surfaces as control_sum_mismatch
        dt = _text(info, "p:ReqdExctnDt/p:Dt", ns)
        requested = date.fromisoformat(dt) if dt else None
    except (ValueError, InvalidOperation) as exc:
        raise MalformedMessage(f"bad group header: {exc}") from None
    items = []
    for tx in info.findall("p:CdtTrfTxInf", ns):
        amount = tx.find("p:Amt/p:InstdAmt", ns)
        if amount is not None and amount.get("Ccy") not in (None, "CNY"):
            amount_text = "wrong currency"
        else:
            amount_text = "" if amount is None or amount.text is None else amount.text.strip()
        items.append(
            RawItem(
                payee_name=_text(tx, "p:Cdtr/p:Nm", ns) or "",
                card_number=_text(tx, "p:CdtrAcct/p:Id/p:Othr/p:Id", ns) or "",
                amount=amount_text,
                end_to_end_id=_text(tx, "p:PmtId/p:EndToEndId", ns) or "",
                deductions=dict.fromkeys(DEDUCTION_KINDS, ""),
            )
        )
    return Pain001(
        message_id=_text(initiation, "p:GrpHdr/p:MsgId", ns) or "",
        items=items,
        declared_count=declared_count,
        declared_sum=declared_sum,
        requested_execution=requested,
    )


def status_report(batch: Batch, items: Iterable[ItemLine], *, group_status: str) -> bytes:
    """A pain.002.001.10 status report of a batch."""
    e = ElementMaker(namespace=PAIN_002, nsmap={None: PAIN_002})
    transactions = []
    for item in items:
        status = {"PAID": "ACSC", "FAILED": "RJCT"}.get(item.state, "PDNG")
        children = [e.OrgnlEndToEndId(item.end_to_end_id), e.TxSts(status)]
        if status == "RJCT":
            children.append(e.StsRsnInf(e.Rsn(e.Cd(item.reason_code or "NARR"))))
        transactions.append(e.TxInfAndSts(*children))
    document = e.Document(
        e.CstmrPmtStsRpt(
            e.GrpHdr(
                e.MsgId(f"STS{batch.batch_id.replace('-', '')}"[:35]),
                e.CreDtTm(_iso_time(datetime.now(UTC))),
            ),
            e.OrgnlGrpInfAndSts(
                e.OrgnlMsgId(batch.batch_id.replace("-", "")[:35]),
                e.OrgnlMsgNmId("pain.001.001.09"),
                e.OrgnlNbOfTxs(str(batch.item_count)),
                e.OrgnlCtrlSum(_amount(batch.control_sum)),
                e.GrpSts(group_status),
            ),
            e.OrgnlPmtInfAndSts(e.OrgnlPmtInfId(batch.batch_id), *transactions),
        )
    )
    return bytes(etree.tostring(document, xml_declaration=True, encoding="UTF-8"))
