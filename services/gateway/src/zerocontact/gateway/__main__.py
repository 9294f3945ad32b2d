"""``python -m zerocontact.gateway``: run the partner gateway."""

from __future__ import annotations

import asyncio

from zerocontact.gateway.app import serve
from zerocontact.gateway.settings import GatewaySettings
from zerocontact.platform.logging import configure_logging


def main() -> None:
    """Read ZC_GATEWAY_* and serve."""
    settings = GatewaySettings()  # type: ignore[call-arg]  # from the environment
    configure_logging(settings.service_name, settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
