"""Pure rules of marketing: no I/O, ``now`` always passed in."""
