"""``zerocontact gateway ...``: development certificates and partner registration."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from zerocontact.gateway import certs

if TYPE_CHECKING:
    from zerocontact.gateway.store import PartnerStore

T = TypeVar("T")

app = typer.Typer(help="The partner gateway: certificates and partners.", no_args_is_help=True)
certs_app = typer.Typer(help="A development CA and certificates (local runs and tests).")
partners_app = typer.Typer(help="Partner registrations (scopes, rate, API credential).")
app.add_typer(certs_app, name="certs")
app.add_typer(partners_app, name="partners")

OutDir = Annotated[Path, typer.Option("--out", help="directory for the .crt/.key files")]


@certs_app.command("ca")
def issue_ca(out: OutDir = Path(".cache/gateway-certs")) -> None:
    """Issue a development CA (ca.crt, ca.key)."""
    ca = certs.issue_ca()
    cert, _ = ca.write(out, "ca")
    typer.echo(f"CA: {cert}")


@certs_app.command("server")
def issue_server(
    out: OutDir = Path(".cache/gateway-certs"),
    host: Annotated[list[str] | None, typer.Option(help="DNS name or IP (repeat)")] = None,
) -> None:
    """Issue the gateway's server certificate (server.crt, server.key) from ca.crt/ca.key."""
    issued = certs.issue_server(certs.load(out, "ca"), host or None)
    cert, _ = issued.write(out, "server")
    typer.echo(f"server certificate: {cert}")


@certs_app.command("partner")
def issue_partner(
    partner_id: Annotated[str, typer.Argument(help="the partner's id")],
    out: OutDir = Path(".cache/gateway-certs"),
) -> None:
    """Issue a partner's client certificate (<id>.crt, <id>.key) from ca.crt/ca.key."""
    issued = certs.issue_partner(certs.load(out, "ca"), partner_id)
    cert, _ = issued.write(out, partner_id)
    typer.echo(f"partner certificate: {cert}")


@certs_app.command("dev")
def issue_dev(
    partner: Annotated[list[str], typer.Option(help="partner id (repeat)")],
    out: OutDir = Path(".cache/gateway-certs"),
) -> None:
    """A CA, the server certificate and one certificate per partner, in one go."""
    ca = certs.issue_ca()
    ca.write(out, "ca")
    certs.issue_server(ca).write(out, "server")
    for partner_id in partner:
        certs.issue_partner(ca, partner_id).write(out, partner_id)
    typer.echo(f"wrote ca, server and {len(partner)} partner certificate(s) to {out}")


def _with_partners(action: Callable[[PartnerStore], Awaitable[T]]) -> T:
    """Run ``action`` on the partner registrations of the gateway configured by the environment."""
    from zerocontact.gateway.settings import GatewaySettings
    from zerocontact.gateway.store import PartnerStore
    from zerocontact.platform.mongo import create_mongo_client

    settings = GatewaySettings()  # type: ignore[call-arg]  # from the environment

    async def run() -> T:
        client = create_mongo_client(settings.mongodb_uri, app_name="gateway-cli")
        try:
            store = PartnerStore(
                client[settings.mongodb_database],
                settings.credential_pepper.get_secret_value().encode(),
            )
            return await action(store)
        finally:
            await client.close()

    return asyncio.run(run())


@partners_app.command("register")
def register(
    partner_id: Annotated[str, typer.Argument(help="the partner's id (its certificate's)")],
    scope: Annotated[list[str], typer.Option(help="scope (repeat), e.g. loans:read")],
    rate: Annotated[float, typer.Option(help="calls per second")] = 200.0,
) -> None:
    """Register or re-key a partner; prints the API credential once (only a digest is kept)."""
    credential = _with_partners(lambda store: store.register(partner_id, scope, rate_per_s=rate))
    typer.echo(f"partner {partner_id} registered; credential (shown once): {credential}")


@partners_app.command("deactivate")
def deactivate(
    partner_id: Annotated[str, typer.Argument(help="the partner's id (its certificate's)")],
) -> None:
    """Revoke a partner: refused by every instance within 30 s (their registration cache)."""
    if not _with_partners(lambda store: store.deactivate(partner_id)):
        typer.echo(f"no partner {partner_id} is registered", err=True)
        raise typer.Exit(1)
    typer.echo(f"partner {partner_id} deactivated")
