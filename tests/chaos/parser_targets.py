"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers that read outside input.

    python -m tests.chaos.parser_targets TARGET CORPUS_DIR -runs=N [libFuzzer flags]

One target per process (libFuzzer owns it and exits when done: 0 when the budget ran out with
no crash, non-zero on the first crash, with the input written to ``-artifact_prefix``). A
crash is an exception other than the parser's documented error:

* ``payroll-csv``: ``parse_csv`` of the bytes as the CSV route decodes them, then
  ``validate_batch`` of what it read (``MalformedCsv``, ``UnicodeDecodeError``);
* ``pain001``: ``parse_pain001`` then ``validate_batch`` (``MalformedMessage``) — the payroll
  import of ISO 20022 (the service imports pain.001 and only writes pain.002);
* ``cloudevents``: ``CloudEvent.from_record`` of fuzzed Kafka headers and value, and
  ``parse_dataschema`` of its ``ce_dataschema`` (``MalformedEvent``, ``ValueError``);
* ``receipt``: ``zerocontact identity verify-receipt``'s ``check`` of a fuzzed receipt file
  against a real signed tree head and key (``ReceiptInvalid``).

``seed(target, directory)`` writes valid inputs for a target, so the fuzzer starts from the
shapes the parser accepts.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["zerocontact"]):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from zerocontact.identity.trust.cli import check
    from zerocontact.identity.trust.merkle import leaf_hash
    from zerocontact.identity.trust.treehead import (
        Receipt,
        ReceiptInvalid,
        TreeHead,
        canonical_json,
    )
    from zerocontact.payroll import iso20022
    from zerocontact.payroll.domain.batches import (
        BatchLimits,
        MalformedCsv,
        parse_csv,
        validate_batch,
    )
    from zerocontact.platform.kafka.cloudevents import CloudEvent, MalformedEvent, parse_dataschema
    from zerocontact.platform.money import Money

LIMITS = BatchLimits(max_item_amount=Money.of(Decimal("50000"), "CNY"), max_items=1000)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
WORK = Path(tempfile.mkdtemp(prefix="zc-fuzz-receipt-"))


def payroll_csv(data: bytes) -> None:
    try:
        items = parse_csv(data.decode("utf-8"))
    except (UnicodeDecodeError, MalformedCsv):
        return
    validate_batch("batch", items, declared_count=len(items), declared_sum=None, limits=LIMITS)


def pain001(data: bytes) -> None:
    try:
        message = iso20022.parse_pain001(data)
    except iso20022.MalformedMessage:
        return
    validate_batch(
        "batch", message.items, declared_count=message.declared_count,
        declared_sum=message.declared_sum, limits=LIMITS,
    )  # fmt: skip


def cloudevents(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    names = ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject",
             "ce_dataschema", "content-type", "traceparent"]  # fmt: skip
    headers = []
    for _ in range(fdp.ConsumeIntInRange(0, 12)):
        name = (
            names[fdp.ConsumeIntInRange(0, len(names) - 1)]
            if fdp.ConsumeBool()
            else (fdp.ConsumeUnicodeNoSurrogates(12))
        )
        headers.append((name, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))))
    value = fdp.ConsumeBytes(fdp.remaining_bytes()) if fdp.ConsumeBool() else None
    try:
        event = CloudEvent.from_record(headers, value)
    except MalformedEvent:
        return
    if event.dataschema is not None:
        try:
            parse_dataschema(event.dataschema)
        except ValueError:
            return


def _signed_files() -> tuple[Path, Path, bytes]:
    leaf = canonical_json({"contract_id": "c-1", "contract_sha256": "00" * 32, "signer": "p-1"})
    head = TreeHead.sign(
        KEY, tree_size=1, timestamp_ms=1_700_000_000_000, root_hash=leaf_hash(leaf)
    )
    sth = WORK / "sth.json"
    sth.write_text(json.dumps(head.to_json()))
    public = WORK / "key.pem"
    public.write_bytes(
        KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    receipt = json.dumps({"receipt": Receipt(leaf, 0, [], head).to_json()}).encode()
    return sth, public, receipt


STH, PUBLIC_KEY, VALID_RECEIPT = _signed_files()


def receipt(data: bytes) -> None:
    path = WORK / "receipt.json"
    path.write_bytes(data)
    try:
        check(path, STH, PUBLIC_KEY)
    except ReceiptInvalid:  # a ValueError: what the command reports as INVALID
        return


TARGETS: dict[str, Callable[[bytes], None]] = {
    "payroll-csv": payroll_csv,
    "pain001": pain001,
    "cloudevents": cloudevents,
    "receipt": receipt,
}


def seed(target: str, directory: Path) -> None:
    """Valid inputs of ``target`` into ``directory`` (the fuzzer's starting corpus)."""
    directory.mkdir(parents=True, exist_ok=True)
    samples: list[bytes]
    if target == "payroll-csv":
        samples = [
            "payee_name,card_number,amount\n张三,6222021234567890128,100.00\n".encode(),
            b"\xef\xbb\xbfpayee_name,card_number,amount,end_to_end_id,gross,social_insurance\n"
            b"a,4111111111111111,1.5,E2E-1,2.5,1\n",
        ]
    elif target == "pain001":
        samples = [_pain001_sample()]
    elif target == "cloudevents":
        samples = [b"\x04\x00\x011.0\x01\x01\x02id\x02\x02src\x03\x03type\x01payload"]
    else:
        samples = [VALID_RECEIPT, json.dumps([1, 2]).encode()]
    for n, sample in enumerate(samples):
        (directory / f"seed-{n}").write_bytes(sample)


def _pain001_sample() -> bytes:
    ns = iso20022.PAIN_001
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="{ns}"><CstmrCdtTrfInitn>'
        "<GrpHdr><MsgId>M1</MsgId><NbOfTxs>1</NbOfTxs><CtrlSum>100.00</CtrlSum></GrpHdr>"
        "<PmtInf><PmtTpInf><CtgyPurp><Cd>SALA</Cd></CtgyPurp></PmtTpInf>"
        "<ReqdExctnDt><Dt>2026-12-01</Dt></ReqdExctnDt><CdtTrfTxInf><PmtId><EndToEndId>E1"
        '</EndToEndId></PmtId><Amt><InstdAmt Ccy="CNY">100.00</InstdAmt></Amt><Cdtr><Nm>张三'
        "</Nm></Cdtr><CdtrAcct><Id><Othr><Id>6222021234567890128</Id></Othr></Id></CdtrAcct>"
        "</CdtTrfTxInf></PmtInf></CstmrCdtTrfInitn></Document>"
    ).encode()


def main() -> None:
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--seed":
        seed(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
