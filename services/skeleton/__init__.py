"""The walking skeleton: the smallest service that proves the platform's chain end to end.

HTTP call → aggregate + outbox event in one write → relay publishes protobuf with
CloudEvents headers → a consumer in a second app applies it idempotently.
"""
