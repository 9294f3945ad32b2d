"""The services the assistant acts in, called over HTTP with the customer's own bearer token.

Never a service key: loan, payroll and identity see the customer's token and apply their own
rules (a loan of another party is refused by loan, a batch of another employer by payroll).
Every call has a connect and a total timeout; what comes back is a :class:`Called`: the body
on success, or the refusal (the owning service's problem ``title``), or ``unavailable``
when the service did not answer in time or failed. Nothing here raises for a refusal, so a
refusal becomes an answer to the customer, never a 500.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

__all__ = ["Backends", "Called"]


@dataclass(frozen=True)
class Called:
    """The outcome of one call: ``succeeded``, ``refused`` (with the service's problem code),
    ``step_up_required`` or ``unavailable``."""

    outcome: str
    body: Any = None
    refusal: str = ""
    status: int = 0

    @property
    def ok(self) -> bool:
        """The owning service did it."""
        return self.outcome == "succeeded"


def _called(response: httpx.Response) -> Called:
    if response.is_success:
        return Called("succeeded", response.json(), status=response.status_code)
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    code = str(problem.get("title") or "") if isinstance(problem, dict) else ""
    if code == "step_up_required":
        return Called("step_up_required", refusal=code, status=response.status_code)
    if response.status_code >= 500 or response.status_code == 429:
        return Called("unavailable", refusal=code or "unavailable", status=response.status_code)
    return Called(
        "refused", refusal=code or f"http_{response.status_code}", status=response.status_code
    )


class Backends:
    """One HTTP client per owning service (identity, loan, payroll)."""

    def __init__(
        self,
        *,
        identity_url: str,
        loan_url: str,
        payroll_url: str,
        connect_timeout_s: float,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self._clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout, transport=transport)
            for name, url in (
                ("identity", identity_url),
                ("loan", loan_url),
                ("payroll", payroll_url),
            )
        }

    async def start(self) -> None:
        """Nothing to open: connections are made on first use."""

    async def stop(self) -> None:
        """Close every connection."""
        for client in self._clients.values():
            await client.aclose()

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        token: str,
        *,
        json: Any = None,
        key: str | None = None,
    ) -> Called:
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        try:
            response = await self._clients[service].request(
                method, path, json=json, headers=headers
            )
        except httpx.HTTPError as exc:
            log.warning(
                "backend call failed",
                extra={"backend": service, "path": path, "error": type(exc).__name__},
            )
            return Called("unavailable", refusal="unavailable")
        return _called(response)

    async def application(self, token: str, application_id: str) -> Called:
        """Loan: an application with its decision."""
        return await self._call("loan", "GET", f"/v1/applications/{application_id}", token)

    async def loan(self, token: str, loan_id: str) -> Called:
        """Loan: a loan with its schedule."""
        return await self._call("loan", "GET", f"/v1/loans/{loan_id}", token)

    async def payoff(self, token: str, loan_id: str) -> Called:
        """Loan: what settles the loan today."""
        return await self._call("loan", "GET", f"/v1/loans/{loan_id}/payoff", token)

    async def repay(
        self, token: str, loan_id: str, *, amount: str, currency: str, key: str
    ) -> Called:
        """Loan: repay ``amount`` from the borrower's settlement account (``key`` makes a retry
        the same repayment)."""
        return await self._call(
            "loan",
            "POST",
            f"/v1/loans/{loan_id}/repayments",
            token,
            json={"amount": amount, "currency": currency},
            key=key,
        )

    async def batch(self, token: str, batch_id: str) -> Called:
        """Payroll: a batch's state for the employer's representative."""
        return await self._call("payroll", "GET", f"/v1/batches/{batch_id}", token)

    async def sessions(self, token: str) -> Called:
        """Identity: the customer's live sessions (their devices)."""
        return await self._call("identity", "GET", "/v1/me/sessions", token)

    async def revoke_sessions(self, token: str, *, device_id: str | None, key: str) -> Called:
        """Identity: end the customer's other sessions, or those opened on ``device_id``."""
        body: dict[str, Any] = {"device_id": device_id} if device_id else {}
        return await self._call(
            "identity", "POST", "/v1/me/sessions/revocation", token, json=body, key=key
        )
