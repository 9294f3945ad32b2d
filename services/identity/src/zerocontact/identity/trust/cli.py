"""``zerocontact identity verify-receipt``: check a contract receipt offline.

Needs only the files: the receipt (from the signature response or ``GET /v1/contracts/{id}``),
a signed tree head the auditor trusts (e.g. fetched by a partner bank from
``/v1/trust-log/tree-head`` and kept), the log's public key (PEM), and, when that head is
larger than the receipt's, the consistency proof between the two sizes. No network access.
Exit status 0 when everything verifies, 1 when something does not (the reason is printed).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from zerocontact.identity.trust.treehead import Receipt, ReceiptInvalid, TreeHead, verify_receipt

app = typer.Typer(help="Identity: offline checks of trust-log receipts.", no_args_is_help=True)


@app.callback()
def identity() -> None:
    """Identity: offline checks of trust-log receipts."""


Existing = typer.Argument(exists=True, dir_okay=False, readable=True)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReceiptInvalid(f"{path.name} is not JSON") from exc


def check(
    receipt_file: Path, sth_file: Path, public_key_file: Path,
    consistency_file: Path | None = None, contract_file: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Verify; return the evidence package or raise :class:`ReceiptInvalid`."""
    key = load_pem_public_key(public_key_file.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ReceiptInvalid("the public key is not an Ed25519 key")
    doc = _json(receipt_file)
    if isinstance(doc, dict) and "receipt" in doc:  # the signature response, else the receipt
        doc = doc["receipt"]
    receipt = Receipt.from_json(doc)
    head = TreeHead.from_json(_json(sth_file))
    proof = None
    if consistency_file is not None:
        c = _json(consistency_file)
        if not isinstance(c, dict):
            raise ReceiptInvalid("malformed consistency proof")
        if (c.get("first"), c.get("second")) != (receipt.tree_head.tree_size, head.tree_size):
            raise ReceiptInvalid("the consistency proof is not between these two tree sizes")
        try:
            proof = [base64.b64decode(p, validate=True) for p in c["proof"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ReceiptInvalid("malformed consistency proof") from exc
    contract = contract_file.read_bytes() if contract_file is not None else None
    return verify_receipt(
        receipt, public_key=key, trusted_head=head, consistency=proof, contract=contract
    )


@app.command("verify-receipt")
def verify_receipt_command(
    receipt: Annotated[Path, Existing],
    sth: Annotated[Path, Existing],
    public_key: Annotated[Path, Existing],
    consistency: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="consistency proof JSON")
    ] = None,
    contract: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="the signed contract text")
    ] = None,
) -> None:
    """Check RECEIPT against the signed tree head STH and the log's PUBLIC_KEY (PEM)."""
    try:
        evidence = check(receipt, sth, public_key, consistency, contract)
    except (ReceiptInvalid, ValueError) as exc:
        typer.echo(f"INVALID: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"OK: contract {evidence.get('contract_id')} (sha256 {evidence.get('contract_sha256')}) "
        f"signed by {evidence.get('signer')} at {evidence.get('signed_at')} is in the log"
    )


if __name__ == "__main__":
    app()
