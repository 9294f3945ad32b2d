"""Signed webhooks: events, the delivery log, the dispatcher and signatures."""
