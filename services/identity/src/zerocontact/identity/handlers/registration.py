"""Registering customers and enterprises."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

from zerocontact.identity.domain import events as ev
from zerocontact.identity.domain import parties
from zerocontact.identity.domain.authentication import Credentials, Throttle
from zerocontact.identity.domain.errors import DuplicateParty, Forbidden, RepresentativeNotFound
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.handlers.events import to_cloud_event
from zerocontact.identity.repository import CUSTOMERS, ENTERPRISES, CustomerRecord
from zerocontact.platform.auth import Principal
from zerocontact.platform.ids import new_id
from zerocontact.platform.money import Money

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisterCustomer:
    name: str
    resident_id: str
    phone: str
    birth_date: date
    address: str
    password: str


@dataclass(frozen=True)
class RegisterEnterprise:
    name: str
    credit_code: str
    representative_id: str
    business_category: str
    registered_capital: Money


async def register_customer(cmd: RegisterCustomer, *, ctx: IdentityContext) -> parties.Customer:
    """Validate, refuse duplicates, store encrypted, emit CustomerRegistered + KycLevelChanged."""
    now = datetime.now(UTC)
    customer = parties.register_customer(
        customer_id=new_id(),
        name=cmd.name,
        resident_id=cmd.resident_id,
        phone=cmd.phone,
        birth_date=cmd.birth_date,
        address=cmd.address,
        now=now,
    )
    rid = parties.normalise_resident_id(cmd.resident_id)
    phone = parties.normalise_phone(cmd.phone)
    cipher = ctx.cipher
    indexes = {"id_number": cipher.blind_index(rid), "phone": cipher.blind_index(phone)}
    clash = await ctx.parties.customer_exists_with(
        id_number_index=indexes["id_number"], phone_index=indexes["phone"]
    )
    if clash is None:  # skip the costly hash for a duplicate
        record = CustomerRecord(
            customer=customer,
            credentials=Credentials(password_hash=await ctx.passwords.hash(cmd.password)),
            throttle=Throttle(),
            encrypted={
                "id_number": cipher.encrypt(rid, context="customer.id_number"),
                "phone": cipher.encrypt(phone, context="customer.phone"),
                "birth_date": cipher.encrypt(
                    cmd.birth_date.isoformat(), context="customer.birth_date"
                ),
                "address": cipher.encrypt(cmd.address.strip(), context="customer.address"),
            },
            indexes=indexes,
        )
        topic = ctx.settings.events_topic
        events = [
            to_cloud_event(ev.CustomerRegistered(customer), topic=topic),
            to_cloud_event(
                ev.KycLevelChanged(customer.id, False, customer.kyc_history[-1]),
                topic=topic,
            ),
        ]
        if await ctx.parties.add_customer(record, events):
            ctx.relay.nudge(CUSTOMERS, customer.id)
            log.info("customer registered", extra={"customer_id": customer.id})
            return customer
        clash = await ctx.parties.customer_exists_with(
            id_number_index=indexes["id_number"], phone_index=indexes["phone"]
        )
    what = "resident ID number" if clash == "id_number" else "phone number"
    raise DuplicateParty(
        f"a customer with this {what} is registered already", field=clash or "id_number"
    )


async def register_enterprise(
    cmd: RegisterEnterprise,
    *,
    principal: Principal,
    ctx: IdentityContext,
) -> parties.Enterprise:
    """Register an enterprise; only its legal representative may do so, for themselves."""
    if principal.subject != cmd.representative_id:
        raise Forbidden("only the legal representative may register the enterprise")
    doc = await ctx.parties.get_customer_doc(cmd.representative_id)
    if doc is None:
        raise RepresentativeNotFound(
            f"legal representative {cmd.representative_id} is not a registered customer",
            field="legal_representative_id",
        )
    representative = ctx.parties.customer_record(
        doc, ctx.decrypt_birth_date(doc["birth_date_encrypted"])
    ).customer
    now = datetime.now(UTC)
    enterprise = parties.register_enterprise(
        enterprise_id=new_id(),
        name=cmd.name,
        credit_code=cmd.credit_code,
        representative=representative,
        business_category=cmd.business_category,
        registered_capital=cmd.registered_capital,
        now=now,
    )
    topic = ctx.settings.events_topic
    events = [to_cloud_event(ev.EnterpriseRegistered(enterprise), topic=topic)]
    events += [
        to_cloud_event(ev.KycLevelChanged(enterprise.id, True, t), topic=topic)
        for t in enterprise.kyc_history
    ]
    if not await ctx.parties.add_enterprise(enterprise, events):
        raise DuplicateParty(
            "an enterprise with this unified social credit code is registered already",
            field="credit_code",
        )
    ctx.relay.nudge(ENTERPRISES, enterprise.id)
    log.info("enterprise registered", extra={"enterprise_id": enterprise.id})
    return enterprise
