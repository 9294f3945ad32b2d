"""A partner's first call: ``LoanService/ListLoanProducts``, and where its request id is.

    .venv/bin/python examples/first_call.py --credential-file .cache/run/demo-partner.json

Every gateway response carries a request id (the ``x-request-id`` trailing metadata; in an
error also ``google.rpc.RequestInfo``): quote it to support with the time of the call
(docs/gateway.md, "Request ids"). The second call is refused on purpose (an unknown loan) to
show the id of a failed call too. Connection flags: those of ``examples/partner_310.py``.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
from partner_310 import partner_args, partner_parser

from zerocontact.gateway.v1 import loan_pb2
from zerocontact.partner_client import PartnerClient, error_details, request_id_of


async def first_call(target: str, ca: str, cert: str, key: str, credential: str) -> int:
    async with PartnerClient.connect(
        target, ca=Path(ca), cert=Path(cert), key=Path(key), credential=credential
    ) as zc:
        call = zc.loans.ListLoanProducts(loan_pb2.ListLoanProductsRequest(), metadata=zc.metadata())
        response = await call
        for product in response.products:
            print(
                f"product {product.product_id}: {product.name}, annual rate {product.annual_rate}"
            )
        trailers = dict(await call.trailing_metadata() or ())
        print(f"request id (trailing metadata x-request-id): {trailers['x-request-id']}")
        try:
            await zc.loans.GetLoan(
                loan_pb2.GetLoanRequest(loan_id=str(uuid.uuid4())), metadata=zc.metadata()
            )
        except grpc.aio.AioRpcError as exc:
            reasons = [getattr(d, "reason", "") for d in error_details(exc)]
            print(f"refused as expected: {exc.code().name} {' '.join(filter(None, reasons))}")
            print(f"its request id: {request_id_of(exc)}")
    return 0


def main() -> int:
    args = partner_args(partner_parser(__doc__.split("\n\n")[0]))
    return asyncio.run(first_call(args.target, args.ca, args.cert, args.key, args.credential))


if __name__ == "__main__":
    raise SystemExit(main())
