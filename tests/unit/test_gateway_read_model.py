"""The gateway's read model serves a view again only while no event, no mutation of the
partner and no more than ``max_age_s`` separate it from the read that stored it."""

from __future__ import annotations

from zerocontact.gateway.readmodel import ReadModel

KEY = "loan:0190a0c4-0000-7000-8000-000000000001"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def filled(clock: Clock | None = None, **options: float) -> ReadModel:
    views = ReadModel(max_age_s=2.0, clock=clock or Clock(), **options)  # type: ignore[arg-type]
    views.store(KEY, "view-1", views.begin(KEY, "p1"))
    return views


def test_a_stored_view_is_served_to_its_partner_until_it_is_too_old() -> None:
    clock = Clock()
    views = filled(clock)
    assert views.get(KEY, "p1") == "view-1"
    clock.now += 2.5
    assert views.get(KEY, "p1") is None
    assert (views.hits, views.misses) == (1, 1)


def test_an_event_about_the_key_drops_the_view() -> None:
    views = filled()
    views.changed(KEY)
    assert views.get(KEY, "p1") is None
    views.changed("loan:another")  # others' events change nothing here
    views.store(KEY, "view-2", views.begin(KEY, "p1"))
    assert views.get(KEY, "p1") == "view-2"


def test_a_read_overlapping_an_event_is_not_stored() -> None:
    views = ReadModel(max_age_s=2.0)
    stamp = views.begin(KEY, "p1")  # the read starts
    views.changed(KEY)  # the event arrives before the service answered
    views.store(KEY, "stale", stamp)
    assert views.get(KEY, "p1") is None


def test_the_partners_own_mutation_stops_what_was_read_before_it() -> None:
    views = filled()
    in_flight = views.begin(KEY, "p1")
    views.mutated("p1")
    assert views.get(KEY, "p1") is None
    views.store(KEY, "read during the mutation", in_flight)
    assert views.get(KEY, "p1") is None
    views.store(KEY, "view-2", views.begin(KEY, "p1"))
    assert views.get(KEY, "p1") == "view-2"


def test_another_partners_mutation_does_not_drop_the_view() -> None:
    views = filled()
    views.mutated("p2")
    assert views.get(KEY, "p1") == "view-1"


def test_max_age_zero_stores_nothing() -> None:
    views = ReadModel(max_age_s=0)
    assert not views.enabled
    views.store(KEY, "view", views.begin(KEY, "p1"))
    assert views.get(KEY, "p1") is None


def test_the_capacity_bound_forgets_everything_and_refuses_older_reads() -> None:
    views = ReadModel(max_age_s=2.0, capacity=2)
    early = views.begin(KEY, "p1")
    views.store("loan:a", "a", views.begin("loan:a", "p1"))
    views.store("loan:b", "b", views.begin("loan:b", "p1"))
    views.store("loan:c", "c", views.begin("loan:c", "p1"))  # full: forgets a and b
    assert views.get("loan:a", "p1") is None
    assert views.get("loan:c", "p1") == "c"
    views.store(KEY, "read before the forgetting", early)
    assert views.get(KEY, "p1") is None
