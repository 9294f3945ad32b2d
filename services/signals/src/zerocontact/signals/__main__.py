"""``python -m zerocontact.signals worker -l info``: the Faust command line of the signals app.

Every line the process writes is a JSON log line: logging is the platform's from the first
import (the worker re-applies it at its ``-l`` level, :mod:`zerocontact.signals.worker`), and
the command runs with ``--quiet``, which leaves out Faust's text banner (``--no-quiet`` keeps it).
"""

from __future__ import annotations

import logging
import sys

from zerocontact.platform.logging import configure_logging

QUIET_FLAGS = ("--quiet", "-q", "--no-quiet")


def main() -> None:
    """Run the Faust command line of the signals app."""
    configure_logging("signals")  # until the worker configures it at its level
    logging.captureWarnings(True)
    from zerocontact.signals.app import app, settings

    # Faust keeps the RocksDB stores under the data directory; it must exist before start.
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    if not any(flag in sys.argv[1:] for flag in QUIET_FLAGS):
        sys.argv.insert(1, "--quiet")  # a top-level option: before the command
    app.main()


if __name__ == "__main__":
    main()
