"""Commands of identity: each loads aggregates, applies the domain, stores state and events."""
