"""SignalService: risk alerts about a partner's own parties."""

from __future__ import annotations

from collections.abc import AsyncIterator

from zerocontact.gateway.convert import require_uuid
from zerocontact.gateway.guard import Caller, Gateway, streaming
from zerocontact.gateway.servicers.scopes import SIGNALS_READ
from zerocontact.gateway.v1 import signals_pb2, signals_pb2_grpc
from zerocontact.gateway.watch import ALERTS, RESUME_TOKEN_HEADER, Resumable
from zerocontact.signals.v1 import risk_pb2


class SignalServicer(signals_pb2_grpc.SignalServiceServicer):
    """Risk alerts about the partner's own parties."""

    SERVICE = "SignalService"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @streaming(SIGNALS_READ, resumable=True)
    async def WatchRiskAlerts(
        self, request: signals_pb2.WatchRiskAlertsRequest, caller: Caller
    ) -> AsyncIterator[signals_pb2.WatchRiskAlertsResponse]:
        """Alerts raised from now on (or since ``resume_token``: those first) about the
        partner's parties, until cancelled; each carries the token of its position."""
        only = request.party_id
        if only:
            require_uuid(only, "party_id")
            await self.gateway.require_owner("party", only, caller.partner)
        hub = self.gateway.hub
        with hub.watch(ALERTS) as queue:
            # the token is bound to the filter: a party's stream skips other parties' alerts
            key = f"{ALERTS}:{only}" if only else ALERTS
            stream = Resumable(hub, hub.risk_topic, key, caller.partner.partner_id)
            stream.resume(request.resume_token)
            assert caller.accept is not None
            await caller.accept((RESUME_TOKEN_HEADER, stream.token()))
            replayed = await stream.replay([ALERTS])
            while True:
                notice = replayed.pop(0) if replayed else await queue.get()
                if not stream.take(notice):
                    continue
                alert = notice.message
                if only and alert.party_id != only:
                    continue
                if await self.gateway.owners.owner("party", alert.party_id) != (
                    caller.partner.partner_id
                ):
                    continue
                yield signals_pb2.WatchRiskAlertsResponse(
                    alert_id=alert.alert_id,
                    party_id=alert.party_id,
                    kind=risk_pb2.RiskAlertKind.Name(alert.kind),
                    reasons=[r.description for r in alert.reasons],
                    raised_at=alert.raised_at,
                    event_id=notice.event_id,
                    resume_token=stream.token(),
                )
