"""Structured JSON logs on stdout, one object per line, with personal data masked.

Every line has ``ts`` (UTC ISO-8601), ``level``, ``logger``, ``message`` and ``service``,
``trace_id`` and ``span_id`` when it was written inside a span, then the record's ``extra``
fields, then ``exc`` when an exception is attached. A filter on the handler masks resident ID numbers, bank card numbers and phone numbers in the message, in the
extra fields and in exception text before any formatter sees them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from zerocontact.platform.pii import mask_card, mask_national_id, mask_phone
from zerocontact.platform.telemetry import current_ids

__all__ = ["JsonFormatter", "PersonalDataFilter", "configure_logging", "mask_personal_data"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_RESERVED = ("ts", "level", "logger", "message", "service", "trace_id", "span_id", "exc", "stack")

# One pass over candidate tokens, classified in _mask_token: 18-char resident IDs, E.164
# numbers, 11-digit CN mobiles, and 13-19 digit card numbers (also in 4-digit groups).
# ASCII boundaries on purpose: "\w" would count CJK characters and let "身份证号1101..." through.
_CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z+])"
    r"(?:"
    r"(?P<e164>\+\d{1,3}(?:[ -]?\d){6,14})"
    r"|(?P<grouped>\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?)"
    r"|(?P<mobile>1[3-9]\d[ -]\d{4}[ -]\d{4})"
    r"|(?P<digits>\d{11,19}[Xx]?)"
    r")"
    r"(?![0-9A-Za-z])"
)
_RESIDENT_ID = re.compile(
    r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dX]"
)
_CN_MOBILE = re.compile(r"1[3-9]\d{9}")


def _mask_token(match: re.Match[str]) -> str:
    token = match.group(0)
    if match.group("e164"):
        return mask_phone(token)
    if match.group("grouped"):
        return mask_card(token)
    if match.group("mobile"):
        return mask_phone(token)
    upper = token.upper()
    if len(upper) == 18 and _RESIDENT_ID.fullmatch(upper):
        return mask_national_id(upper)
    if _CN_MOBILE.fullmatch(token):
        return mask_phone(token)
    if token.isdigit() and 13 <= len(token) <= 19:
        return mask_card(token)
    return token  # e.g. 12 digits or a trailing X on a non-ID: not a known kind of PII


def mask_personal_data(text: str) -> str:
    """Replace resident IDs, card numbers and phone numbers in free text by their masks."""
    return _CANDIDATE.sub(_mask_token, text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_personal_data(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        # a card number passed as an int would otherwise leak untouched
        text = str(value)
        masked = mask_personal_data(text)
        return value if masked == text else masked
    if isinstance(value, Mapping):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_value(v) for v in value]
    return value


class PersonalDataFilter(logging.Filter):
    """Masks personal data in a record's message, extra fields and exception text.

    Installed on a handler it sees records from every logger; it rewrites the record in
    place, so handlers after it (and the formatter) only ever see the masked forms.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record and let it through."""
        record.msg = mask_personal_data(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, _mask_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_personal_data(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_personal_data(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring for the fields)."""

    def __init__(self, service: str) -> None:
        """``service`` is written on every line, e.g. ``"loan"``."""
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single-line JSON object."""
        ts = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service,
        }
        ids = current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS:
                continue
            line[f"extra_{key}" if key in _RESERVED else key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, default=str)


class _ServiceHandler(logging.StreamHandler[IO[str]]):
    """Marks the handler ``configure_logging`` installed so a second call replaces it."""


def configure_logging(service: str, level: str = "INFO", *, stream: IO[str] | None = None) -> None:
    """Send every logger's records to ``stream`` (stdout by default) as masked JSON lines.

    Calling it again replaces the previous configuration instead of doubling the output.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _ServiceHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _ServiceHandler(stream if stream is not None else sys.stdout)
    handler.addFilter(PersonalDataFilter())
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(level.upper())
