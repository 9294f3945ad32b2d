"""Kafka edges of the platform: CloudEvents envelopes, the publisher and the consumer runner."""

from zerocontact.platform.kafka.cloudevents import CloudEvent, MalformedEvent
from zerocontact.platform.kafka.consumer import ConsumerRunner, TransientError
from zerocontact.platform.kafka.producer import EventPublisher

__all__ = ["CloudEvent", "ConsumerRunner", "EventPublisher", "MalformedEvent", "TransientError"]
