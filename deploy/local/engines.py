#!/usr/bin/env python3
"""Fetch, start, wait for and stop the embedded engines (Kafka, FerretDB) and the services.

Standard library only: it runs before anything else is installed. Invoke it with the
project's venv interpreter, because supervisord is looked up next to ``sys.executable``::

    .venv/bin/python deploy/local/engines.py fetch
    .venv/bin/python deploy/local/engines.py start [--engines-only] [--if-needed] [--timeout 90]
    .venv/bin/python deploy/local/engines.py up | status | stop | down

Environment: ``ZC_KAFKA_PORT`` (9092), ``ZC_KAFKA_CONTROLLER_PORT`` (9093),
``ZC_KAFKA_SASL_PORT`` (9094), ``ZC_MONGODB_PORT`` (27017), ``ZC_LOCAL_HOME``
(``<repo>/.cache``). See docs/engines.md.

This file is the entry point only; the code is in the package ``localsuite`` next to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# port_owner is re-exported for bench/loan_310.py, which loads this file as a module.
from localsuite.cli import main  # noqa: E402
from localsuite.ports import port_owner  # noqa: E402

__all__ = ["main", "port_owner"]

if __name__ == "__main__":
    sys.exit(main())
