"""Where the library's log records go when ``ccnet`` runs: the console.

The library logs through ``logging.getLogger(__name__)`` and prints nothing itself; the command
line shows ccnet's INFO records on stdout, as plain messages above any progress bar (through
``tqdm.write``), and WARNING and up on stderr. Other packages' records keep Python's default
(WARNING and up)."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm


class ConsoleHandler(logging.Handler):
    """Writes each record's message to the *current* ``sys.stdout`` (``sys.stderr`` from WARNING
    up) with ``tqdm.write``: a stream redirected after set-up (a study run's ``train.log``, a
    test's capture) receives what is logged while it is redirected, and bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            tqdm.write(self.format(record), file=stream)
        except Exception:
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Show ccnet's log records on the console at ``level`` and up; called once per ``ccnet``
    invocation, idempotent (one handler however often it is called)."""
    root = logging.getLogger()
    if not any(isinstance(handler, ConsoleHandler) for handler in root.handlers):
        handler = ConsoleHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    logging.getLogger("ccnet").setLevel(level)


__all__ = ["ConsoleHandler", "configure_logging"]
