"""WebhookService: a partner's webhook endpoints, its delivery log and replays
(:mod:`zerocontact.gateway.webhooks`)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.gateway import convert
from zerocontact.gateway.errors import GatewayError, invalid, invalid_fields, not_found
from zerocontact.gateway.guard import Caller, Gateway, unary
from zerocontact.gateway.servicers.scopes import WEBHOOKS_READ, WEBHOOKS_WRITE
from zerocontact.gateway.v1 import webhooks_pb2, webhooks_pb2_grpc
from zerocontact.gateway.webhooks.dispatcher import WebhookDispatcher
from zerocontact.gateway.webhooks.events import ALL, TYPE_NAMES
from zerocontact.gateway.webhooks.signing import new_secret
from zerocontact.gateway.webhooks.store import Endpoint, WebhookStore, aware

MAX_URL = 2048
Status = webhooks_pb2.WebhookDeliveryStatus


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(aware(value))
    return stamp


def _endpoint(e: Endpoint) -> webhooks_pb2.WebhookEndpoint:
    return webhooks_pb2.WebhookEndpoint(
        endpoint_id=e.endpoint_id, url=e.url, event_types=sorted(e.event_types),
        create_time=_ts(e.created_at), active=e.active,
    )  # fmt: skip


def _delivery(doc: dict[str, Any]) -> webhooks_pb2.WebhookDelivery:
    return webhooks_pb2.WebhookDelivery(
        delivery_id=doc["_id"], endpoint_id=doc["endpoint_id"], event_id=doc["event_id"],
        event_type=doc["event_type"], event_time=_ts(doc.get("event_time")),
        status=Status.Value(f"WEBHOOK_DELIVERY_STATUS_{doc['status']}"),
        attempts=int(doc.get("attempts", 0)), last_error=doc.get("last_error", ""),
        last_status_code=int(doc.get("last_status_code", 0)),
        next_attempt_time=_ts(doc.get("next_attempt_at")),
        delivered_time=_ts(doc.get("delivered_at")), create_time=_ts(doc.get("created_at")),
    )  # fmt: skip


def _page_token(doc: dict[str, Any]) -> str:
    mark = json.dumps([aware(doc["created_at"]).isoformat(), doc["_id"]])
    return base64.urlsafe_b64encode(mark.encode()).decode()


def _page_mark(token: str) -> tuple[datetime, str]:
    try:
        created, last_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(created), str(last_id)
    except (binascii.Error, ValueError, TypeError):
        raise invalid("page_token", "not a page token of this list") from None


class WebhookServicer(webhooks_pb2_grpc.WebhookServiceServicer):
    """A partner's webhook endpoints, delivery log and replays."""

    SERVICE = "WebhookService"

    def __init__(
        self, gateway: Gateway, store: WebhookStore, dispatcher: WebhookDispatcher | None
    ) -> None:
        self.gateway = gateway
        self.store = store
        self.dispatcher = dispatcher

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        schemes = {"https", "http"} if self.gateway.settings.webhook_allow_http else {"https"}
        if len(url) > MAX_URL or parts.scheme not in schemes or not parts.hostname:
            raise invalid("url", f"an absolute {' or '.join(sorted(schemes))} URL")
        if parts.username or parts.password:
            raise invalid("url", "must not carry credentials")

    @unary(WEBHOOKS_WRITE, mutating=True, response=webhooks_pb2.CreateWebhookEndpointResponse)
    async def CreateWebhookEndpoint(
        self, request: webhooks_pb2.CreateWebhookEndpointRequest, caller: Caller
    ) -> webhooks_pb2.CreateWebhookEndpointResponse:
        """Register an endpoint; its signing secret is in this answer only."""
        self._check_url(request.url)
        types = list(request.event_types)
        unknown = [t for t in types if t != ALL and t not in TYPE_NAMES]
        if not types or unknown:
            raise invalid_fields(
                [("event_types", f"unknown: {', '.join(unknown)}" if unknown else "required")]
            )
        partner_id = caller.partner.partner_id
        limit = self.gateway.settings.webhook_max_endpoints_per_partner
        if await self.store.count_active(partner_id) >= limit:
            raise GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "TOO_MANY_WEBHOOK_ENDPOINTS",
                f"at most {limit} active endpoints per partner: delete one first",
            )
        secret = new_secret()
        endpoint = await self.store.create_endpoint(partner_id, request.url, types, secret)
        if self.dispatcher is not None:
            self.dispatcher.endpoints_changed()
        return webhooks_pb2.CreateWebhookEndpointResponse(
            endpoint=_endpoint(endpoint), signing_secret=secret
        )

    @unary(WEBHOOKS_READ)
    async def ListWebhookEndpoints(
        self, request: webhooks_pb2.ListWebhookEndpointsRequest, caller: Caller
    ) -> webhooks_pb2.ListWebhookEndpointsResponse:
        """The partner's endpoints."""
        endpoints = await self.store.list_endpoints(caller.partner.partner_id)
        return webhooks_pb2.ListWebhookEndpointsResponse(
            endpoints=[_endpoint(e) for e in endpoints]
        )

    @unary(WEBHOOKS_WRITE, mutating=True, response=webhooks_pb2.DeleteWebhookEndpointResponse)
    async def DeleteWebhookEndpoint(
        self, request: webhooks_pb2.DeleteWebhookEndpointRequest, caller: Caller
    ) -> webhooks_pb2.DeleteWebhookEndpointResponse:
        """Stop an endpoint."""
        endpoint = await self.store.deactivate(caller.partner.partner_id, request.endpoint_id)
        if endpoint is None:
            raise not_found("webhook_endpoint")
        if self.dispatcher is not None:
            self.dispatcher.endpoints_changed()
        return webhooks_pb2.DeleteWebhookEndpointResponse(endpoint=_endpoint(endpoint))

    async def _own_endpoint(self, caller: Caller, endpoint_id: str) -> None:
        """NOT_FOUND for an endpoint the partner does not have (another partner's included):
        naming one is refused like any other object of another partner, not answered empty."""
        if endpoint_id and not await self.store.owns_endpoint(
            caller.partner.partner_id, endpoint_id
        ):
            raise not_found("webhook_endpoint")

    @unary(WEBHOOKS_READ)
    async def ListWebhookDeliveries(
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest, caller: Caller
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        """The delivery log, oldest first."""
        if request.page_size < 0:
            raise invalid("page_size", "must not be negative")
        size = min(request.page_size or 50, 500)
        await self._own_endpoint(caller, request.endpoint_id)
        status = ""
        if request.status:
            if request.status not in Status.values():
                raise invalid("status", "not a WebhookDeliveryStatus")
            status = Status.Name(request.status).removeprefix("WEBHOOK_DELIVERY_STATUS_")
        docs = await self.store.list_deliveries(
            caller.partner.partner_id, endpoint_id=request.endpoint_id, status=status,
            event_ids=list(request.event_ids),
            after=_page_mark(request.page_token) if request.page_token else None,
            limit=size + 1,
        )  # fmt: skip
        more = len(docs) > size
        docs = docs[:size]
        return webhooks_pb2.ListWebhookDeliveriesResponse(
            deliveries=[_delivery(d) for d in docs],
            next_page_token=_page_token(docs[-1]) if more else "",
        )

    @unary(WEBHOOKS_WRITE, mutating=True, response=webhooks_pb2.ReplayWebhooksResponse)
    async def ReplayWebhooks(
        self, request: webhooks_pb2.ReplayWebhooksRequest, caller: Caller
    ) -> webhooks_pb2.ReplayWebhooksResponse:
        """Queue deliveries again, by event ids or by the events' time range."""
        ids = list(request.event_ids)
        has_range = request.HasField("start_time") or request.HasField("end_time")
        if not ids and not has_range:
            raise invalid_fields([("event_ids", "event ids, or start_time/end_time")])
        start = (
            convert.when(request.start_time, "start_time")
            if request.HasField("start_time")
            else None
        )
        end = convert.when(request.end_time, "end_time") if request.HasField("end_time") else None
        if start and end and end <= start:
            raise invalid("end_time", "must be after start_time")
        await self._own_endpoint(caller, request.endpoint_id)
        replayed = await self.store.replay(
            caller.partner.partner_id, endpoint_id=request.endpoint_id, event_ids=ids,
            start=start, end=end, max_age_s=self.gateway.settings.webhook_max_age_s,
        )  # fmt: skip
        if self.dispatcher is not None and replayed:
            self.dispatcher.sender.wake()
        return webhooks_pb2.ReplayWebhooksResponse(replayed=replayed)
