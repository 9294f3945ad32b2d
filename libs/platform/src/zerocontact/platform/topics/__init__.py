"""The topic catalog (``proto/topics.toml``): loading, validation and applying it to a broker.

The catalog is the contract of every Kafka topic: its key, its value message (a generated
protobuf wrapper class), partitions, cleanup policy, retention, owner and dead-letter twin.
``load_catalog`` reads and validates it (pure, :mod:`.catalog`), ``message_class`` resolves a
value message to its generated class (:mod:`.messages`), and ``ensure_topics`` creates what is
missing on a broker and reports what differs, without ever changing an existing topic (that is
an operator's decision; :mod:`.broker`).
"""

from zerocontact.platform.topics.broker import (
    ConfigDrift,
    EnsureReport,
    PartitionDrift,
    TopicCreationError,
    TopicState,
    ensure_topics,
    inspect_topics,
)
from zerocontact.platform.topics.catalog import (
    DEFAULT_CATALOG,
    RAW_BYTES,
    CatalogError,
    TopicCatalog,
    TopicSpec,
    load_catalog,
    parse_catalog,
)
from zerocontact.platform.topics.messages import message_class

__all__ = [
    "DEFAULT_CATALOG",
    "RAW_BYTES",
    "CatalogError",
    "ConfigDrift",
    "EnsureReport",
    "PartitionDrift",
    "TopicCatalog",
    "TopicCreationError",
    "TopicSpec",
    "TopicState",
    "ensure_topics",
    "inspect_topics",
    "load_catalog",
    "message_class",
    "parse_catalog",
]
