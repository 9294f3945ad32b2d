"""Readiness probes (real protocol requests: a TCP connect succeeds before the broker is ready).

Kafka Metadata v4, an OP_MSG ``ping``, HTTP 200, and an empty OTLP/HTTP export.
"""

from __future__ import annotations

import http.client
import socket
import struct
import urllib.error
import urllib.request


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _kafka_request(port: int, api_key: int, version: int, body: bytes) -> bytes:
    client_id = b"zc-engines"
    header = struct.pack(">hhih", api_key, version, 1, len(client_id)) + client_id
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        payload = _recv_exact(sock, size)
    (correlation,) = struct.unpack_from(">i", payload)
    if correlation != 1:
        raise ConnectionError("unexpected correlation id")
    return payload[4:]


def kafka_brokers(port: int) -> int:
    """Brokers listed by a Metadata v4 request (answered by Kafka 1.0 to 4.x alike)."""
    body = struct.pack(">i?", -1, False)  # all topics, no auto-creation
    resp = _kafka_request(port, api_key=3, version=4, body=body)
    _throttle, count = struct.unpack_from(">ii", resp)
    return int(count)


def kafka_ready(port: int) -> bool:
    try:
        return kafka_brokers(port) >= 1
    except (OSError, ConnectionError, struct.error):
        return False


def _bson_ping() -> bytes:
    elements = b"\x10ping\x00" + struct.pack("<i", 1)
    elements += b"\x02$db\x00" + struct.pack("<i", 6) + b"admin\x00"
    return struct.pack("<i", len(elements) + 5) + elements + b"\x00"


def _bson_ok(doc: bytes) -> bool:
    """Read the top-level ``ok`` field of a BSON document (only the types a reply uses)."""
    pos, end = 4, struct.unpack_from("<i", doc)[0] - 1
    fixed = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16}
    while pos < end:
        kind = doc[pos]
        name_end = doc.index(b"\x00", pos + 1)
        name = doc[pos + 1 : name_end]
        pos = name_end + 1
        if name == b"ok":
            if kind == 0x01:
                return bool(struct.unpack_from("<d", doc, pos)[0] == 1.0)
            if kind in (0x10, 0x12):
                return bool(struct.unpack_from("<i" if kind == 0x10 else "<q", doc, pos)[0] == 1)
            return False
        if kind in fixed:
            pos += fixed[kind]
        elif kind in (0x02, 0x0D, 0x0E):  # string-like: int32 length + bytes
            pos += 4 + struct.unpack_from("<i", doc, pos)[0]
        elif kind in (0x03, 0x04):  # embedded document / array
            pos += struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x05:  # binary: length + subtype + bytes
            pos += 5 + struct.unpack_from("<i", doc, pos)[0]
        else:
            return False
    return False


def mongodb_ready(port: int) -> bool:
    """An OP_MSG ``ping`` on the admin database answered with ok: 1."""
    doc = _bson_ping()
    body = struct.pack("<I", 0) + b"\x00" + doc
    header = struct.pack("<iiii", 16 + len(body), 1, 0, 2013)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(header + body)
            (size,) = struct.unpack("<i", _recv_exact(sock, 4))
            reply = _recv_exact(sock, size - 4)
        _req, response_to, opcode, _flags, kind = struct.unpack_from("<iiiIB", reply)
        if response_to != 1 or opcode != 2013 or kind != 0:
            return False
        return _bson_ok(reply[17:])
    except (OSError, ConnectionError, struct.error, ValueError, IndexError):
        return False


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return False


def otlp_http_ready(endpoint: str) -> bool:
    """An OTLP/HTTP receiver accepts an empty JSON export (``POST /v1/traces``) with 200."""
    request = urllib.request.Request(
        f"{endpoint}/v1/traces",
        data=b'{"resourceSpans":[]}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, http.client.HTTPException):
        return False
