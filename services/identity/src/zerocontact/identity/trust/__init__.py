"""Trust services of identity: face verification, liveness, dual recording, e-contracts and
the append-only Merkle log (RFC 9162) that makes each contract's evidence verifiable offline."""
