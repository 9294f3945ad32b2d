"""Shared runtime of every zerocontact service: settings, Kafka, outbox, Mongo, money, ledger."""
