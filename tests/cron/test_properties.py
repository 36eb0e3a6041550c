"""Hypothesis properties of next/prev on generated expressions, zones and instants."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickwork._errors import CronSyntaxError
from tickwork.schedules import CronExpression

from .cron_oracle import Oracle
from .test_conformance import _TRANS, ZONES, gen_expr

SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def cases(draw):
    rng = random.Random(draw(st.integers(0, 2**32)))
    expr, seconds = gen_expr(rng)
    zone = draw(st.sampled_from(ZONES))
    try:
        c = CronExpression(expr, zone, seconds=seconds)
    except CronSyntaxError:
        c = CronExpression("*/5 1-3 * * *", zone)
    tz = ZoneInfo(zone)
    if _TRANS[zone] and draw(st.booleans()):
        u = draw(st.sampled_from(_TRANS[zone])) + draw(st.integers(-3 * 3600, 3 * 3600))
    else:
        u = draw(st.integers(946684800, 2524608000))  # 2000-2050
    t = datetime.fromtimestamp(u, tz)
    if draw(st.booleans()):
        t = t.astimezone(UTC)  # any zone is fine for input instants
    return c, t


@SETTINGS
@given(cases())
def test_next_properties(case):
    c, t = case
    n = c.next(t)
    if n is None:
        assert c.prev(t) is None or c.prev(t).timestamp() < t.timestamp()
        return
    assert n.timestamp() > t.timestamp()
    assert n.tzinfo is c.timezone
    assert c.matches(n)
    p = c.prev(n)  # the last fire before n is not after t: nothing in between
    assert p is None or p.timestamp() <= t.timestamp()
    # (arithmetic in UTC: aware wall-clock arithmetic would drop fold=1)
    assert c.next(n.astimezone(UTC) - timedelta(seconds=1)).timestamp() == n.timestamp()


@SETTINGS
@given(cases())
def test_prev_properties(case):
    c, t = case
    p = c.prev(t)
    if p is None:
        return
    assert p.timestamp() < t.timestamp()
    assert c.matches(p)
    n = c.next(p)
    assert n is not None and n.timestamp() >= t.timestamp()
    assert c.prev(p.astimezone(UTC) + timedelta(seconds=1)).timestamp() == p.timestamp()


@settings(max_examples=60, deadline=None)
@given(cases())
def test_nothing_fires_in_between_brute_force(case):
    """Independent check of 'no match between t and next(t)' over a bounded window."""
    c, t = case
    if c.seconds:
        return
    n = c.next(t)
    limit = t + timedelta(hours=30)
    if n is not None and n.timestamp() < limit.timestamp():
        limit = n
    o = Oracle(c.expr, c.timezone)
    fires = o.fires_between(int(t.timestamp()) + 1, int(limit.timestamp()))
    if n is None or n.timestamp() > limit.timestamp():
        assert fires == []
    else:
        assert fires[0] == int(n.timestamp())


@SETTINGS
@given(cases(), st.integers(1, 30))
def test_iter_agrees_with_repeated_next(case, k):
    c, t = case
    it = c.iter(t)
    cur = t
    for _ in range(min(k, 10)):
        a = next(it, None)
        b = c.next(cur)
        assert (a is None and b is None) or a.timestamp() == b.timestamp()
        if b is None:
            break
        cur = b
