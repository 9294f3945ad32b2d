"""The tables' RocksDB store: Faust's, with the RocksDB options Faust does not pass on.

faust-streaming opens each table partition's rocksdict database with a fixed set of options
(write buffers, block cache, target file size, bloom filter, open files) and drops any other
option it is given. This store applies the others as well, each by its rocksdict setter
(``set_<name>``), and refuses a name rocksdict has no setter for when the table is created,
not when a partition is first opened.

The worker needs two of them: ``compaction_style`` (a name of ``rocksdict.DBCompactionStyle``)
and ``level_zero_file_num_compaction_trigger``. RocksDB keeps every SST file of a database
open. The tables' keys start with UUIDv7 ids (applications, parties), which arrive in time
order, so a flushed file never overlaps the older ones and leveled compaction, Faust's, only
moves it down a level: a database kept one ~1 MiB file per flush, for as long as its windows
keep the data (the 30-minute soak: +18 descriptors from the kept assessments alone;
docs/signals.md, "Files"). Universal compaction merges sorted runs whatever their key
ranges, so a database holds about as many files as its trigger.
"""

from __future__ import annotations

from typing import Any

import rocksdict
from faust.exceptions import ImproperlyConfigured
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as FaustRocksDBStore

__all__ = ["RocksDBStore"]


class _Options(RocksDBOptions):
    """Faust's options, then every extra one by its rocksdict setter."""

    def as_options(self) -> Any:
        options = super().as_options()
        for name, value in self.extra_options.items():
            if name == "compaction_style":
                value = getattr(rocksdict.DBCompactionStyle, value)()
            getattr(options, f"set_{name}")(value)
        return options


class RocksDBStore(FaustRocksDBStore):
    """Faust's RocksDB store on rocksdict, applying every RocksDB option it is given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.use_rocksdict:
            raise ImproperlyConfigured(
                f"table {self.table_name}: the signals worker's store needs rocksdict "
                "(the python-rocksdb driver is not supported)"
            )
        options = _Options(**dict(self.options or {}), use_rocksdict=True)
        probe = rocksdict.Options()
        unknown = sorted(
            name for name in options.extra_options if not hasattr(probe, f"set_{name}")
        )
        if unknown:
            raise ImproperlyConfigured(
                f"table {self.table_name}: RocksDB has no option {', '.join(unknown)}"
            )
        style = options.extra_options.get("compaction_style", "level")
        if style not in ("level", "universal", "fifo"):
            raise ImproperlyConfigured(
                f"table {self.table_name}: compaction_style {style!r} is not one of "
                "level, universal, fifo"
            )
        self.rocksdb_options = options
