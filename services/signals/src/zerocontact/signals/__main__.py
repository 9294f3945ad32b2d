"""``python -m zerocontact.signals worker -l info``: the Faust command line of the signals app."""

from __future__ import annotations

from zerocontact.signals.app import app, settings

if __name__ == "__main__":
    # Faust keeps the RocksDB stores under the data directory; it must exist before start.
    (settings.data_dir / settings.app_id).mkdir(parents=True, exist_ok=True)
    app.main()
