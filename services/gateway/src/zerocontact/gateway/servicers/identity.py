"""IdentityService: registration and authentication of a partner's parties."""

from __future__ import annotations

from typing import Any

import grpc
import jwt

from zerocontact.gateway import convert
from zerocontact.gateway.convert import require_uuid
from zerocontact.gateway.errors import GatewayError, invalid, invalid_fields
from zerocontact.gateway.guard import Caller, Gateway, unary
from zerocontact.gateway.servicers.scopes import IDENTITY_READ, IDENTITY_WRITE
from zerocontact.gateway.v1 import identity_pb2, identity_pb2_grpc


def _subject(token: str) -> str:
    """The subject of an access token identity just issued (read, not verified: the token came
    straight from identity; the services verify every token they are given)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return str(claims.get("sub", ""))


def _required(request: Any, *names: str) -> None:
    missing = [(n, "required") for n in names if not getattr(request, n)]
    if missing:
        raise invalid_fields(missing)


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    """Registration and authentication of a partner's parties."""

    SERVICE = "IdentityService"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @unary(IDENTITY_WRITE, mutating=True, response=identity_pb2.RegisterCustomerResponse)
    async def RegisterCustomer(
        self, request: identity_pb2.RegisterCustomerRequest, caller: Caller
    ) -> identity_pb2.RegisterCustomerResponse:
        """Register a customer; the partner owns it."""
        _required(request, "name", "resident_id", "phone", "date_of_birth", "address", "password")
        body = {
            "name": request.name, "resident_id": request.resident_id, "phone": request.phone,
            "date_of_birth": request.date_of_birth, "address": request.address,
            "password": request.password,
        }  # fmt: skip
        view = await self.gateway.backends.identity.request(
            "POST", "/v1/customers", caller.call(with_token=False), body=body
        )
        await self.gateway.record_owner("party", view["customer_id"], caller.partner)
        return identity_pb2.RegisterCustomerResponse(party=convert.customer(view))

    @unary(IDENTITY_WRITE, mutating=True, response=identity_pb2.RegisterEnterpriseResponse)
    async def RegisterEnterprise(
        self, request: identity_pb2.RegisterEnterpriseRequest, caller: Caller
    ) -> identity_pb2.RegisterEnterpriseResponse:
        """Register an enterprise whose representative is a customer of the partner."""
        _required(request, "name", "credit_code", "legal_representative_id", "business_category")
        rep = require_uuid(request.legal_representative_id, "legal_representative_id")
        amount, currency = convert.major(request.registered_capital, "registered_capital")
        caller.require_token()
        await self.gateway.require_owner("party", rep, caller.partner)
        body = {
            "name": request.name, "credit_code": request.credit_code,
            "legal_representative_id": rep, "business_category": request.business_category,
            "registered_capital": {"amount": amount, "currency": currency},
        }  # fmt: skip
        view = await self.gateway.backends.identity.request(
            "POST", "/v1/enterprises", caller.call(), body=body
        )
        await self.gateway.record_owner("party", view["enterprise_id"], caller.partner)
        await self.gateway.record_owner("enterprise", view["enterprise_id"], caller.partner)
        return identity_pb2.RegisterEnterpriseResponse(party=convert.enterprise(view))

    @unary(IDENTITY_READ)
    async def GetParty(
        self, request: identity_pb2.GetPartyRequest, caller: Caller
    ) -> identity_pb2.GetPartyResponse:
        """A party of the partner, masked (with the party's own token)."""
        party_id = require_uuid(request.party_id, "party_id")
        await self.gateway.require_owner("party", party_id, caller.partner)
        caller.require_token()
        if await self.gateway.owners.owner("enterprise", party_id) == caller.partner.partner_id:
            view = await self.gateway.backends.identity.request(
                "GET", f"/v1/enterprises/{party_id}", caller.call()
            )
            return identity_pb2.GetPartyResponse(party=convert.enterprise(view))
        view = await self.gateway.backends.identity.request(
            "GET", f"/v1/customers/{party_id}", caller.call()
        )
        return identity_pb2.GetPartyResponse(party=convert.customer(view))

    @unary(IDENTITY_WRITE)
    async def StartAuthentication(
        self, request: identity_pb2.StartAuthenticationRequest, caller: Caller
    ) -> identity_pb2.StartAuthenticationResponse:
        """Password login (AAL1) of a customer of the partner; optionally an SMS challenge.

        Not replayed by idempotency key: the answer is a bearer token, which the gateway does
        not store; a retry simply authenticates again."""
        _required(request, "phone", "password", "device_id")
        view = await self.gateway.backends.identity.request(
            "POST",
            "/v1/sessions",
            caller.call(with_token=False, device_id=request.device_id),
            body={"phone": request.phone, "password": request.password},
        )
        party_id = _subject(view["access_token"])
        await self._owned_subject(party_id, caller)
        response = identity_pb2.StartAuthenticationResponse(
            party_id=party_id,
            access_token=view["access_token"],
            expires_in=int(view["expires_in"]),
            assurance_level=convert.aal(view["aal"]),
        )
        if request.send_sms_challenge:
            caller.token = view["access_token"]
            challenge = await self.gateway.backends.identity.request(
                "POST",
                "/v1/sessions/sms-challenges",
                caller.call(device_id=request.device_id),
            )
            response.sms_challenge_id = challenge["challenge_id"]
        return response

    async def _owned_subject(self, party_id: str, caller: Caller) -> None:
        if await self.gateway.owners.owner("party", party_id) != caller.partner.partner_id:
            raise GatewayError(
                grpc.StatusCode.PERMISSION_DENIED,
                "PARTY_NOT_OF_PARTNER",
                "this customer was not registered through this partner",
            )

    @unary(IDENTITY_WRITE)
    async def CompleteAuthentication(
        self, request: identity_pb2.CompleteAuthenticationRequest, caller: Caller
    ) -> identity_pb2.CompleteAuthenticationResponse:
        """Second factor on the AAL1 token: an AAL2 token (not stored, so not replayed)."""
        token = caller.require_token()
        methods = {
            identity_pb2.SECOND_FACTOR_TOTP: "totp",
            identity_pb2.SECOND_FACTOR_SMS: "sms",
            identity_pb2.SECOND_FACTOR_RECOVERY_CODE: "recovery_code",
        }
        if request.factor not in methods:
            raise invalid("factor", "must be TOTP, SMS or RECOVERY_CODE")
        _required(request, "code", "device_id")
        body: dict[str, Any] = {"method": methods[request.factor], "code": request.code}
        if request.factor == identity_pb2.SECOND_FACTOR_SMS:
            body["challenge_id"] = require_uuid(request.sms_challenge_id, "sms_challenge_id")
        try:
            await self._owned_subject(_subject(token), caller)
        except jwt.InvalidTokenError as exc:
            raise invalid("authorization", "not an access token") from exc
        view = await self.gateway.backends.identity.request(
            "POST",
            "/v1/sessions/step-up",
            caller.call(device_id=request.device_id),
            body=body,
        )
        return identity_pb2.CompleteAuthenticationResponse(
            party_id=_subject(view["access_token"]),
            access_token=view["access_token"],
            expires_in=int(view["expires_in"]),
            assurance_level=convert.aal(view["aal"]),
            methods=list(view.get("amr") or []),
        )

    @unary(IDENTITY_WRITE, mutating=True, response=identity_pb2.VerifyCustomerResponse)
    async def VerifyCustomer(
        self, request: identity_pb2.VerifyCustomerRequest, caller: Caller
    ) -> identity_pb2.VerifyCustomerResponse:
        """KYC BASIC → VERIFIED by the customer's recent two-factor authentication."""
        party_id = require_uuid(request.party_id, "party_id")
        await self.gateway.require_owner("party", party_id, caller.partner)
        caller.require_token()
        view = await self.gateway.backends.identity.request(
            "POST", f"/v1/customers/{party_id}/kyc/verification", caller.call()
        )
        return identity_pb2.VerifyCustomerResponse(party=convert.customer(view))
