"""Which address identity counts a request against, behind trusted proxies (addresses or CIDRs)."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from starlette.requests import Request

from zerocontact.identity.api.deps import source_address

PROXIES = [ip_network("10.42.0.0/16"), ip_network("192.0.2.10/32")]


def _request(peer: str, forwarded: str | None) -> Request:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    return Request({"type": "http", "client": (peer, 40000), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # A pod of the gateway (inside the trusted network) forwards the partner's address.
        ("10.42.3.17", "203.0.113.7", "203.0.113.7"),
        # Two trusted hops: the nearest untrusted address is the client.
        ("10.42.3.17", "198.51.100.1, 203.0.113.7, 192.0.2.10", "203.0.113.7"),
        # An untrusted peer's header is ignored: it could write anything.
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        # A trusted peer with no header is the source itself.
        ("10.42.0.5", None, "10.42.0.5"),
        # Garbage written by the client ends the walk at the last trusted hop.
        ("10.42.3.17", "not-an-ip, 192.0.2.10", "192.0.2.10"),
    ],
)
def test_source_address_behind_trusted_networks(
    peer: str, forwarded: str | None, expected: str
) -> None:
    assert source_address(_request(peer, forwarded), PROXIES) == expected
