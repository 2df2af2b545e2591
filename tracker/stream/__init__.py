"""Streaming results over ZeroMQ: protocol v1, publisher, subscriber, CURVE, recording and replay, bridges.

The wire format is specified for client authors in docs/protocol.md; :mod:`tracker.stream.protocol`
implements it.
"""

from tracker.stream.protocol import (
    SCHEMA_MAJOR,
    SCHEMA_MINOR,
    TOPIC_META,
    TOPIC_PREFIX,
    TOPIC_RESULT,
    Decoder,
    Skipped,
    StreamMetadata,
    StreamResult,
)
from tracker.stream.publisher import DEFAULT_ENDPOINT, Publisher, PublisherStats
from tracker.stream.subscriber import RawMessage, Subscriber, SubscriberStats

__all__ = [
    "DEFAULT_ENDPOINT", "SCHEMA_MAJOR", "SCHEMA_MINOR", "TOPIC_META", "TOPIC_PREFIX", "TOPIC_RESULT", "Decoder",
    "Publisher", "PublisherStats", "RawMessage", "Skipped", "StreamMetadata", "StreamResult", "Subscriber",
    "SubscriberStats",
]  # fmt: skip
