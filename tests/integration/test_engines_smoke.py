"""The engines the suite runs on are real: Kafka answers its admin protocol, FerretDB the wire protocol."""

from collections.abc import Awaitable, Callable

from aiokafka.admin import AIOKafkaAdminClient
from pymongo.asynchronous.database import AsyncDatabase


async def test_topic_is_created_on_the_broker(
    kafka_admin: AIOKafkaAdminClient, create_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await create_topic("smoke", partitions=2)
    described = await kafka_admin.describe_topics([topic])
    assert described[0]["topic"] == topic
    assert len(described[0]["partitions"]) == 2


async def test_mongodb_wire_server_stores_documents(
    mongo_db: AsyncDatabase[dict[str, object]],
) -> None:
    await mongo_db.things.insert_one({"_id": "a", "amount_minor": 125})
    assert await mongo_db.things.find_one({"_id": "a"}) == {"_id": "a", "amount_minor": 125}
