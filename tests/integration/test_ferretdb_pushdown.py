"""Equality filters pushed down to SQLite match exactly what MongoDB matches.

The embedded FerretDB carries deploy/local/ferretdb/scalar-pushdown.patch: a top-level
string or boolean equality becomes a SQL WHERE on the field's JSON value (or "the field is an
array"), answered from the field's index when it has one, and FerretDB's own filter still
runs on what SQLite returns. These tests hold it to MongoDB's semantics (arrays holding the
value, 1 vs "1" vs true, missing fields, nested documents) on every path that reads through
it (find, count, update, delete, findAndModify), and check that SQLite uses the index.
scalar-range-pushdown.patch does the same for a top-level `$lt`/`$lte` of a date.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import Int64, ObjectId
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

DOCS: list[dict[str, Any]] = [
    {"_id": 1, "s": "x", "b": True},
    {"_id": 2, "s": ["y", "x"], "b": [False, True]},
    {"_id": 3, "s": "1", "b": 1},
    {"_id": 4, "s": 1, "b": "true"},
    {"_id": 5},
    {"_id": 6, "s": {"s": "x"}, "b": {"b": True}},
    {"_id": 7, "s": ["z", "x"], "b": [1, True]},
    {"_id": 8, "s": None, "b": None},
    {"_id": 9, "s": "x ", "b": False},
    {"_id": 10, "s": "X", "b": 1.0},
    {"_id": 11, "s": [], "b": []},
    {"_id": 12, "s": [{"s": "x"}], "b": "True"},
    {"_id": 13, "s": "a<b", "b": 0},
    {"_id": 14, "s": "é", "b": True},
    {"_id": 15, "s": ObjectId("650000000000000000000001"), "b": True},
    {"_id": 16, "s": ["1", 1], "b": [0]},
    {"_id": 17, "s": "", "b": ""},
]

# filter -> the ids MongoDB matches in DOCS
CASES: list[tuple[dict[str, Any], list[int]]] = [
    ({"s": "x"}, [1, 2, 7]),  # the value, and arrays holding it; not {s: "x"} nested, not "x "
    ({"s": "1"}, [3, 16]),  # not the number 1
    ({"s": 1}, [4, 16]),  # numbers are not pushed down; the string "1" does not match
    ({"b": True}, [1, 2, 7, 14, 15]),  # not 1, 1.0, "true" or "True"
    ({"b": False}, [2, 9]),  # not 0 or [0]
    ({"s": ""}, [17]),  # not the empty array, not a missing field
    ({"s": "X"}, [10]),
    ({"s": "a<b"}, [13]),  # an escape in its JSON form: left to FerretDB's filter
    ({"s": "é"}, [14]),
    ({"s": "650000000000000000000001"}, []),  # an ObjectId is not its hex string
    ({"s": "x", "b": True}, [1, 2, 7]),
    ({"s": "x", "b": False}, [2]),
    ({"s": "x", "_id": 2}, [2]),
    ({"s": "missing"}, []),
    ({"t": "x"}, []),  # a field no document has
    ({"s.s": "x"}, [6, 12]),  # a path: not pushed down
    ({"s": {"s": "x"}}, [6]),  # a document value: not pushed down
    ({"$comment": "x", "s": "x"}, [1, 2, 7]),
    ({"s": "x", "$or": [{"b": True}, {"b": False}]}, [1, 2, 7]),
]


async def _collection(db: AsyncDatabase[dict[str, Any]], indexed: bool) -> AsyncCollection[Any]:
    docs = db["pushdown_indexed" if indexed else "pushdown_plain"]
    if indexed:
        await docs.create_index([("s", ASCENDING)], name="s")
        await docs.create_index([("b", ASCENDING)], name="b")
    await docs.insert_many([dict(d) for d in DOCS])
    return docs


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "no-index"])
async def test_equality_matches_what_mongodb_matches(
    mongo_db: AsyncDatabase[dict[str, Any]], indexed: bool
) -> None:
    docs = await _collection(mongo_db, indexed)
    for query, expected in CASES:
        found = [d["_id"] async for d in docs.find(query)]
        assert sorted(found) == expected, query
        assert await docs.count_documents(query) == len(expected), query


async def test_writes_through_the_pushdown_touch_exactly_the_matches(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    docs = await _collection(mongo_db, indexed=True)

    updated = await docs.update_many({"s": "x"}, {"$set": {"hit": True}})
    assert updated.matched_count == 3
    assert sorted([d["_id"] async for d in docs.find({"hit": True})]) == [1, 2, 7]

    found = await docs.find_one_and_update({"b": False, "s": "x "}, {"$set": {"b": True}})
    assert found is not None and found["_id"] == 9

    deleted = await docs.delete_many({"b": True})
    assert deleted.deleted_count == 6  # 1, 2, 7, 14, 15 and 9 (set just above)
    assert sorted([d["_id"] async for d in docs.find({})]) == [
        3,
        4,
        5,
        6,
        8,
        10,
        11,
        12,
        13,
        16,
        17,
    ]


async def test_natural_order_is_kept(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    docs = mongo_db["pushdown_order"]
    await docs.create_index([("state", ASCENDING)], name="state")
    # Inserted so that the index's order (values before arrays) differs from the table's.
    states: list[Any] = [
        "DONE",
        ["EXECUTING"],
        "EXECUTING",
        "DONE",
        ["X", "EXECUTING"],
        "EXECUTING",
    ]
    await docs.insert_many([{"_id": f"d{i}", "state": s} for i, s in enumerate(states)])
    found = [d["_id"] async for d in docs.find({"state": "EXECUTING"})]
    if not await _is_ferretdb(mongo_db):
        found.sort()  # MongoDB promises no order without a sort
    assert found == ["d1", "d2", "d4", "d5"]


async def test_sqlite_answers_an_indexed_equality_from_the_index(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    if not await _is_ferretdb(mongo_db):
        pytest.skip("the query plan checked here is the embedded FerretDB's SQLite plan")
    docs = mongo_db["pushdown_plan"]
    await docs.create_index([("_outbox_pending", ASCENDING)], name="outbox_pending")
    await docs.insert_many([{"_id": i, "_outbox_pending": i == 7} for i in range(20)])

    pending = await _plan(mongo_db, "pushdown_plan", {"_outbox_pending": True})
    assert any("USING INDEX" in step and "outbox_pending" in step for step in pending), pending
    assert not any("detail=SCAN" in step for step in pending), pending
    assert [d["_id"] async for d in docs.find({"_outbox_pending": True})] == [7]

    # A filter that cannot be pushed down still scans the table (and is answered in Go).
    numeric = await _plan(mongo_db, "pushdown_plan", {"_id": {"$gte": 0}})
    assert any("detail=SCAN" in step for step in numeric), numeric


# Dates: FerretDB stores one as the JSON integer of its milliseconds, and the index orders that
# text, so the pushdown of `$lt`/`$lte` (scalar-range-pushdown.patch) must keep dates of fewer
# digits (before 2001-09-09) and negative ones (before 1970) whose text sorts above the bound.
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DATED: list[dict[str, Any]] = [
    {"_id": 1, "t": NOW - MS},
    {"_id": 2, "t": NOW},
    {"_id": 3, "t": NOW + MS},
    {"_id": 4, "t": datetime(1990, 1, 1, tzinfo=UTC)},  # 12 digits: its text sorts above NOW's
    {"_id": 5, "t": EPOCH + 999_999_999_999 * MS},  # the last 12-digit date
    {"_id": 6, "t": datetime(1969, 12, 31, tzinfo=UTC)},  # negative
    {"_id": 7, "t": EPOCH},  # "0"
    {"_id": 8, "t": EPOCH + 5 * MS},  # "5"
    {"_id": 9, "t": datetime(2300, 1, 1, tzinfo=UTC)},  # 14 digits: its text sorts below NOW's
    {"_id": 10, "t": [NOW + DAY, NOW - DAY]},  # an element below
    {"_id": 11, "t": [NOW + DAY]},
    {"_id": 12, "t": Int64(int((NOW - EPOCH) / MS) - 1)},  # a number is not a date
    {"_id": 13, "t": 5},
    {"_id": 14, "t": "2020-01-01T00:00:00Z"},
    {"_id": 15, "t": None},
    {"_id": 16},
    {"_id": 17, "t": {"t": NOW - MS}},
    {"_id": 18, "t": []},
    {"_id": 19, "t": datetime(2100, 1, 1, tzinfo=UTC)},
    {"_id": 20, "t": EPOCH + 1_000_000_000_000 * MS},  # the first 13-digit date
]
DATED_CASES: list[tuple[dict[str, Any], list[int]]] = [
    ({"t": {"$lt": NOW}}, [1, 4, 5, 6, 7, 8, 10, 20]),
    ({"t": {"$lte": NOW}}, [1, 2, 4, 5, 6, 7, 8, 10, 20]),
    ({"t": {"$lt": NOW + MS, "$lte": NOW + DAY}}, [1, 2, 4, 5, 6, 7, 8, 10, 20]),
    ({"t": {"$lt": NOW, "$gte": EPOCH + 1_000_000_000_000 * MS}}, [1, 10, 20]),
    ({"t": {"$lte": EPOCH + 5 * MS}}, [6, 7, 8]),  # a bound of one digit: left to Go
    ({"t": {"$lt": datetime(1990, 1, 1, tzinfo=UTC)}}, [6, 7, 8]),  # 12 digits: left to Go
    ({"t": {"$lt": datetime(2300, 1, 1, tzinfo=UTC)}}, [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 19, 20]),
    ({"t": {"$gt": NOW}}, [3, 9, 10, 11, 19]),  # not pushed down
    ({"t": {"$lt": int((NOW - EPOCH) / MS)}}, [12, 13]),  # a number bound matches numbers only
    ({"t": {"t": NOW - MS}}, [17]),  # a document value: an equality, not a range
    ({"t": {"$lt": NOW}, "_id": 4}, [4]),
    ({"t": {"$lt": NOW}, "_id": 3}, []),
]


async def _dated(db: AsyncDatabase[dict[str, Any]], indexed: bool) -> AsyncCollection[Any]:
    docs = db["pushdown_dated_indexed" if indexed else "pushdown_dated_plain"]
    if indexed:
        await docs.create_index([("t", ASCENDING)], name="t")
    await docs.insert_many([dict(d) for d in DATED])
    return docs


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "no-index"])
async def test_a_date_bound_matches_what_mongodb_matches(
    mongo_db: AsyncDatabase[dict[str, Any]], indexed: bool
) -> None:
    docs = await _dated(mongo_db, indexed)
    for query, expected in DATED_CASES:
        found = [d["_id"] async for d in docs.find(query)]
        assert sorted(found) == expected, query
        assert await docs.count_documents(query) == len(expected), query


async def test_a_purge_below_a_date_deletes_exactly_the_matches(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    docs = await _dated(mongo_db, indexed=True)
    deleted = await docs.delete_many({"t": {"$lt": NOW}})
    assert deleted.deleted_count == 8
    left = sorted([d["_id"] async for d in docs.find({})])
    assert left == [2, 3, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19]


async def test_sqlite_answers_an_indexed_date_bound_from_the_index(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    if not await _is_ferretdb(mongo_db):
        pytest.skip("the query plan checked here is the embedded FerretDB's SQLite plan")
    docs = mongo_db["pushdown_dated_plan"]
    await docs.create_index([("due_at", ASCENDING)], name="due")
    await docs.insert_many(
        [
            {"_id": i, "due_at": NOW + (i - 17) * DAY} if i % 5 == 0 else {"_id": i}
            for i in range(20)
        ]
    )
    due = await _plan(mongo_db, "pushdown_dated_plan", {"due_at": {"$lte": NOW}})
    assert any("USING INDEX" in step and "due" in step for step in due), due
    assert not any("detail=SCAN" in step for step in due), due
    assert [d["_id"] async for d in docs.find({"due_at": {"$lte": NOW}})] == [0, 5, 10, 15]


async def _is_ferretdb(db: AsyncDatabase[dict[str, Any]]) -> bool:
    return "ferretdbVersion" in await db.client.admin.command("buildInfo")


async def _plan(db: AsyncDatabase[dict[str, Any]], name: str, query: dict[str, Any]) -> list[str]:
    explained = await db.command("explain", {"find": name, "filter": query})
    return [str(step) for step in explained["queryPlanner"]["Plan"]]
