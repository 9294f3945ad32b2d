"""The scopes a partner's credential may hold; each RPC requires one."""

from __future__ import annotations

IDENTITY_WRITE = "identity:write"
IDENTITY_READ = "identity:read"
LOANS_WRITE = "loans:write"
LOANS_READ = "loans:read"
PAYROLL_WRITE = "payroll:write"
PAYROLL_READ = "payroll:read"
SIGNALS_READ = "signals:read"
WEBHOOKS_WRITE = "webhooks:write"
WEBHOOKS_READ = "webhooks:read"
ASSISTANT_WRITE = "assistant:write"
ASSISTANT_READ = "assistant:read"
SCOPES = (
    IDENTITY_WRITE, IDENTITY_READ, LOANS_WRITE, LOANS_READ, PAYROLL_WRITE, PAYROLL_READ,
    SIGNALS_READ, WEBHOOKS_WRITE, WEBHOOKS_READ, ASSISTANT_WRITE, ASSISTANT_READ,
)  # fmt: skip
