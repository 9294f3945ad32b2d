"""Resolving a catalog value message to its generated protobuf class."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from zerocontact.platform.topics.catalog import VALUE_MESSAGE

__all__ = ["message_class"]


@cache
def message_class(full_name: str) -> type[Message]:
    """The generated class of a proto message, e.g. ``zerocontact.skeleton.v1.SkeletonEvent``.

    Imports every ``*_pb2`` module of the message's package (``zerocontact.<domain>.vN``) so
    that its descriptors are in the default pool, then looks the message up there. Raises
    ``LookupError`` when the package or the message does not exist (or ``make proto`` has not
    run). A found class is remembered: ``topics tail`` asks once per record, and the package
    scan lists its directory.
    """
    match = VALUE_MESSAGE.match(full_name)
    if match is None:
        raise LookupError(f"{full_name!r} is not a zerocontact.<domain>.vN message name")
    package_name = f"zerocontact.{match['domain']}.{match['version']}"
    try:
        package = importlib.import_module(package_name)
    except ModuleNotFoundError as exc:
        raise LookupError(f"no generated package {package_name} (run `make proto`)") from exc
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith("_pb2"):
            importlib.import_module(f"{package_name}.{module.name}")
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError as exc:
        raise LookupError(f"no message {full_name} in {package_name}") from exc
    return GetMessageClass(descriptor)
