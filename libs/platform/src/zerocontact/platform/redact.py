"""Masking the personal fields of a decoded protobuf message for display.

A proto field is personal when it carries the ``debug_redact`` option
(``string phone_masked = 3 [debug_redact = true];``). Events may already carry masked values
(``+86*******5678``); they are masked again here anyway, because a tool that shows records
must not depend on every producer having done it right.
"""

from __future__ import annotations

from typing import Any, Final, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

__all__ = ["MASK", "mask_value", "masked_dict", "personal_fields"]

MASK: Final = "***"
_KEEP: Final = 4  # the last characters a string keeps: enough to recognise, not to reuse


def mask_value(value: object) -> str:
    """The mask of one field value: a string keeps its last 4 characters, anything else none.

    The mask has a fixed prefix, so it does not reveal the length of what it hides.
    """
    if isinstance(value, str) and len(value) > _KEEP:
        return f"{MASK}{value[-_KEEP:]}"
    return MASK


def _is_personal(field: FieldDescriptor) -> bool:
    return bool(field.GetOptions().debug_redact)


def _map_value(field: FieldDescriptor) -> FieldDescriptor | None:
    """The value field of a map field's entry message, None for a field that is not a map."""
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        value: FieldDescriptor = entry.fields_by_name["value"]
        return value
    return None


def personal_fields(message: type[Message] | Message) -> list[str]:
    """Dotted paths of every personal field of a message class (``party.name``), nested ones
    included (for docs and tests)."""
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    return _personal_paths(descriptor, "", frozenset({descriptor.full_name}))


def _personal_paths(descriptor: Descriptor, prefix: str, path_types: frozenset[str]) -> list[str]:
    paths = []
    for field in descriptor.fields:
        path = f"{prefix}{field.name}"
        if _is_personal(field):
            paths.append(path)
            continue
        value = _map_value(field)
        nested = value.message_type if value else field.message_type
        # A message already on the path would recurse forever (a tree of comments, say).
        if nested is not None and nested.full_name not in path_types:
            paths += _personal_paths(nested, f"{path}.", path_types | {nested.full_name})
    return paths


def _mask_dict(descriptor: Descriptor, data: dict[str, Any]) -> None:
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        if _is_personal(field):
            if isinstance(value, list):
                data[field.name] = [mask_value(v) for v in value]
            elif isinstance(value, dict):  # a map: keys stay, values are personal
                data[field.name] = {k: mask_value(v) for k, v in value.items()}
            else:
                data[field.name] = mask_value(value)
            continue
        map_value = _map_value(field)
        nested = map_value.message_type if map_value else field.message_type
        if nested is None:
            continue
        if map_value is not None and isinstance(value, dict):
            children = list(value.values())
        else:
            children = value if isinstance(value, list) else [value]
        for child in children:
            # Well-known types render as strings (a Timestamp is "2026-...Z"): nothing inside.
            if isinstance(child, dict):
                _mask_dict(nested, child)


def masked_dict(message: Message) -> dict[str, Any]:
    """``message`` as JSON-ready data (proto field names), every personal field masked."""
    data: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    _mask_dict(cast(Descriptor, message.DESCRIPTOR), data)
    return data
