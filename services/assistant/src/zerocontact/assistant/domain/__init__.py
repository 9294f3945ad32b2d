"""The assistant's domain: the dialogue state machine, conversations and hand-offs (no I/O)."""
