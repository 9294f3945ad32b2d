"""The ``zerocontact`` command: the platform's operator commands plus each service's own.

The platform's groups (``topics``, ``dlq``) live in :mod:`zerocontact.platform.cli`, which
knows no service; service groups are added here, so the platform never imports a service.
"""

from __future__ import annotations

from zerocontact.gateway.cli import app as gateway_app
from zerocontact.identity.trust.cli import app as identity_app
from zerocontact.payroll.cli import app as payroll_app
from zerocontact.platform.cli import app

app.add_typer(payroll_app, name="payroll")
app.add_typer(gateway_app, name="gateway")
app.add_typer(identity_app, name="identity")

__all__ = ["app"]

if __name__ == "__main__":
    app()
