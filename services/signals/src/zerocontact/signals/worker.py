"""The Faust worker of the signals process: the platform's JSON log lines and tracing.

Faust (through mode) configures logging itself when the worker starts: it clears the root
logger's handlers, installs a coloured text handler at the ``-l`` level and, when that level is
WARN or above, a terminal spinner handler. :class:`SignalsWorker` (the app's ``Worker`` class,
so ``python -m faust -A zerocontact.signals.app worker`` gets it too) replaces all of it in
mode's ``on_setup_root_logger`` hook with the platform's ``configure_logging``: one JSON object
per line on stdout, personal data masked, ``trace_id``/``span_id`` on a line written while an
event is handled. It has no spinner (its frames and " OK ^" are text on stdout, and its handler kept the root
logger at DEBUG: every ``log.debug`` on Faust's and aiokafka's per-message paths built a
record, 10 % of the worker's CPU when profiled) and is quiet
(the worker's own ``say`` writes text); the startup banner is the command's, which
``python -m zerocontact.signals`` runs with ``--quiet``. Python warnings go to the log too.

It also installs the process's tracing (service ``signals``), creates the app's topics
before its consumer joins (:mod:`.topics`), and exports what is buffered when the worker stops.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from zerocontact.platform.logging import configure_logging
from zerocontact.platform.telemetry import shutdown_tracing
from zerocontact.signals.settings import SignalsSettings
from zerocontact.signals.topics import declare_app_topics

__all__ = ["worker_class"]


def worker_class(settings: SignalsSettings) -> type[faust.Worker]:
    """The Faust Worker class of a process with these settings."""

    class SignalsWorker(faust.Worker):
        """JSON logs, no spinner, no text on stdout; tracing on (see the module docstring)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["quiet"] = True
            super().__init__(*args, **kwargs)
            self.spinner = None
            settings.configure_tracing()

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            logger.handlers.clear()  # mode's coloured text handler
            configure_logging(settings.service_name, logging.getLevelName(level or logging.INFO))
            logging.captureWarnings(True)

        async def on_first_start(self) -> None:
            # Before the app (and its consumer) starts: see zerocontact.signals.topics.
            await declare_app_topics(self.app, settings)
            await super().on_first_start()

        async def on_shutdown(self) -> None:
            await super().on_shutdown()
            shutdown_tracing()  # the app and its agents have stopped

    return SignalsWorker
