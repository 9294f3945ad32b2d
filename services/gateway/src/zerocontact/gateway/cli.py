"""``zerocontact gateway ...``: development certificates and partner registration.

The partner commands use the gateway's settings (``ZC_GATEWAY_*``, ``MONGODB_URI``) from the
environment, and those it lacks from the running local suite (``make up``'s run directory,
``zerocontact.platform.cli_support``); a setting found in neither is one error line.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from zerocontact.gateway import certs
from zerocontact.platform.cli_support import fail, local_home, settings_or_exit

if TYPE_CHECKING:
    from zerocontact.gateway.settings import GatewaySettings
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
    renew: Annotated[
        bool, typer.Option("--renew", help="a new CA and certificates even if these are valid")
    ] = False,
) -> None:
    """A CA, the server certificate and one certificate per partner, in one go.

    Certificates still valid (30 days or more, signed by the CA there) are kept: `make up`
    runs this on every start, and a gateway already running keeps trusting what it loaded.
    """
    ca = None if renew else certs.still_valid(out, "ca")
    issued: list[str] = []
    if ca is None:
        ca = certs.issue_ca()
        ca.write(out, "ca")
        issued.append("ca")
    if certs.still_valid(out, "server", issuer=ca) is None:
        certs.issue_server(ca).write(out, "server")
        issued.append("server")
    for partner_id in partner:
        if certs.still_valid(out, partner_id, issuer=ca) is None:
            certs.issue_partner(ca, partner_id).write(out, partner_id)
            issued.append(partner_id)
    kept = len(partner) + 2 - len(issued)
    typer.echo(f"{out}: issued {', '.join(issued) or 'nothing'}; kept {kept} still valid")


def _gateway_settings() -> GatewaySettings:
    from zerocontact.gateway.settings import GatewaySettings

    return settings_or_exit(GatewaySettings, service="gateway")


def _with_partners(
    action: Callable[[PartnerStore], Awaitable[T]], settings: GatewaySettings | None = None
) -> T:
    """Run ``action`` on the partner registrations of the gateway configured by the environment
    (or the local suite); MongoDB trouble is one error line."""
    from pymongo.errors import PyMongoError

    from zerocontact.gateway.store import PartnerStore
    from zerocontact.platform.mongo import create_mongo_client

    settings = settings or _gateway_settings()

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

    try:
        return asyncio.run(run())
    except PyMongoError as exc:
        where = settings.mongodb_uri.rsplit("@", 1)[-1]  # never print a password
        fail(f"MongoDB at {where} failed: {str(exc).splitlines()[0] if str(exc) else exc!r}")


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


@partners_app.command("dev")
def register_dev(
    partner_id: Annotated[str, typer.Argument(help="the partner's id (its certificate's)")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="directory of <id>.json (default: the local suite's run/)"),
    ] = None,
    rate: Annotated[float, typer.Option(help="calls per second")] = 200.0,
    rotate: Annotated[bool, typer.Option("--rotate", help="issue a new credential")] = False,
) -> None:
    """Register a development partner with every scope and keep what a client needs in
    <out>/<id>.json (mode 0600): credential, gateway address and certificate paths.

    Run again, it keeps the credential of the file (re-registered, so it also survives a wiped
    database) unless --rotate; the gateway accepts a changed credential within 30 s.
    """
    from zerocontact.gateway.servicers.scopes import SCOPES

    settings = _gateway_settings()
    if out is None:
        home = local_home()
        if home is None:
            fail("no local suite here (no checkout found): pass --out DIR")
        out = home / "run"
    path = out / f"{partner_id}.json"
    kept = None if rotate else _stored_credential(path, partner_id)
    credential = _with_partners(
        lambda store: store.register(partner_id, list(SCOPES), rate_per_s=rate, credential=kept),
        settings,
    )
    certs_dir = Path(settings.client_ca_file).resolve().parent
    host = (
        "localhost" if settings.grpc_host in ("0.0.0.0", "127.0.0.1", "::") else settings.grpc_host
    )
    _write_private(
        path,
        {
            "partner_id": partner_id,
            "credential": credential,
            "scopes": list(SCOPES),
            "target": f"{host}:{settings.grpc_port}",
            "ca": str(certs_dir / "ca.crt"),
            "cert": str(certs_dir / f"{partner_id}.crt"),
            "key": str(certs_dir / f"{partner_id}.key"),
        },
    )
    state = "kept" if kept else "new"
    typer.echo(f"partner {partner_id} registered with every scope; {state} credential in {path}")


def _stored_credential(path: Path, partner_id: str) -> str | None:
    """The credential a previous ``partners dev`` kept in ``path`` (None if none usable)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("partner_id") != partner_id:
        return None
    credential = doc.get("credential")
    return credential if isinstance(credential, str) and credential.startswith("zcp_") else None


def _write_private(path: Path, doc: dict[str, object]) -> None:
    """Write ``doc`` as JSON readable by the owner only (0600), replacing ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(doc, file, indent=2)
            file.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
