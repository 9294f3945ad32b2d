"""The demo catalog and segment a local suite starts with (``ZC_MARKETING_DEMO_CATALOG=true``,
set for ``make up`` in deploy/local/services.toml; docs/marketing.md, "Demo catalog").

Written only when absent, so a restart never overwrites what an operator changed, and a
deployment (the setting's default is off) starts with an empty catalog.
"""

from __future__ import annotations

import contextlib

from pymongo.errors import DuplicateKeyError

from zerocontact.marketing.domain.catalog import ProductKind
from zerocontact.marketing.repository import Repository
from zerocontact.platform.mongo import Document

DEMO_PRODUCTS: list[Document] = [
    {
        "_id": "demo-merchant-loan",
        "kind": ProductKind.LOAN.value,
        "name": "Merchant 310 loan (demo)",
        "risk_level": 1,
        "annual_rate": "7.2%",
    },
    {
        "_id": "demo-payroll-account",
        "kind": ProductKind.PAYROLL.value,
        "name": "Payroll account (demo)",
        "risk_level": 1,
        "annual_rate": "",
    },
    {
        "_id": "demo-cash-fund",
        "kind": ProductKind.WEALTH.value,
        "name": "Cash management fund (demo)",
        "risk_level": 2,
        "annual_rate": "",
    },
]
# Customers (not enterprises) whose KYC is VERIFIED (identity's KycLevel 3) or above.
DEMO_SEGMENTS: list[Document] = [
    {
        "_id": "demo-verified-customers",
        "name": "Verified customers (demo)",
        "rule": {
            "all": [
                {"attr": "party_kind", "op": "==", "value": "customer"},
                {"attr": "kyc_level", "op": ">=", "value": 3},
            ]
        },
    },
]


async def seed_demo_catalog(repo: Repository) -> list[str]:
    """Insert the demo products and segments that are missing; the ids inserted."""
    inserted = []
    for collection, docs in ((repo.products, DEMO_PRODUCTS), (repo.segments, DEMO_SEGMENTS)):
        for doc in docs:
            with contextlib.suppress(DuplicateKeyError):  # present: left as it is
                await collection.insert_one(dict(doc))
                inserted.append(str(doc["_id"]))
    return inserted
