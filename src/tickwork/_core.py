"""The planning core: what runs when. Pure: no clock, no I/O, no locks, no threads.

Theory of operation
-------------------
Every task is an ``Entry`` with at most one pending nominal occurrence (``next_nominal``)
and the instant it becomes due (``next_due`` = nominal + jitter). Two heaps drive it:

* the *timer heap* orders future instants: occurrences coming due, retries, attempt
  deadlines. Items carry a token; changing an entry bumps its token, so stale items are
  skipped when popped instead of being searched for (O(log n) everywhere).
* the *ready heap* orders work that is due, by (priority desc, nominal time, add order).
  ``collect(now, free)`` moves due timers to the ready heap and starts at most ``free``
  runs from it, so priority decides only when workers are scarce (API 4.4).

An occurrence that cannot start (``max_instances`` reached, dependencies not done) is
*parked*, holding no heap slot, and re-queued by ``release`` of the run that blocked it.
When it finally starts, everything it fell behind is resolved by ``_catch_up``: all
occurrences up to now collapse into one run, or those later than ``misfire_grace`` are
recorded missed (API 4.6). The same path handles downtime after a restart, saturation
and parking, so there is one misfire rule, not three.

An execution is a ``Run``: attempts 1..n share it. ``attempt_finished`` decides between a
retry (a timer) and the end; ``release`` (called once the outcome is durable) frees the
instance, plans a fixed-delay task's next occurrence and wakes dependents, so that a
task's next execution never starts before the previous one's bookkeeping is written.

Times are POSIX seconds (floats); datetimes live at the API boundary.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ._model import Priority, RetryPolicy, RunStatus
from ._timing import Timing

_new = object.__new__
_DUE, _MANUAL, _RETRY, _DEADLINE = 0, 1, 2, 3
# A due occurrence of a dormant task in the ready heap: the object is its id, the entry is
# woken only when the run starts (see Planner.collect).
_DUE_ID = 4
# A task down for a year with a 1-second schedule must not produce 31 million records:
# the first MAX_MISSED occurrences are recorded one by one, the rest in one summary record.
MAX_MISSED = 100
_COUNT_CAP = 100_000

_FAILED_EXEC = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED})


# Definition fields kept in Entry.defn, in this order (see Entry.schedule).
DEFN_FIELDS = ("schedule", "name", "description", "def_enabled", "def_priority", "def_timeout",
               "misfire_grace", "before_run", "after_run", "on_lease_loss")
_NO_DEFN: tuple[Any, ...] = (None, "", "", True, 50, None, None, None, None, "retry")
_DEFNS: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_DEFNS_MAX = 4096
_DEFAULT_DEFNS: dict[int, tuple[Any, ...]] = {}
_MEDIUM = Priority.MEDIUM


def definition(schedule: Any, name: str, description: str, enabled: bool, priority: int,
               timeout: Any, misfire_grace: Any, before_run: Any, after_run: Any,
               on_lease_loss: str) -> tuple[Any, ...]:
    """The definition tuple for ``Entry.defn``, shared with every equal one seen recently.

    Keyed by the schedule's identity (the engine shares one object per distinct schedule;
    the cached tuple keeps it alive, so its id stays unique) and the other values with
    their types (True == 1 must not share). Metadata is not part of it (Entry.metadata):
    a dict is unhashable, and in a tuple that also holds the (tracked) schedule it would
    make one more object per task for the garbage collector."""
    if (name == "" and description == "" and enabled is True and priority is _MEDIUM
            and timeout is None and misfire_grace is None and before_run is None
            and after_run is None and on_lease_loss == "retry"):
        # Everything at its default but the schedule: the usual bulk-added task, found
        # without building and hashing an 11-tuple key (issue 7, W1).
        hit = _DEFAULT_DEFNS.get(id(schedule))
        if hit is not None and hit[0] is schedule:
            return hit
        d: tuple[Any, ...] = (schedule, "", "", True, _MEDIUM, None, None, None, None, "retry")
        if len(_DEFAULT_DEFNS) >= _DEFNS_MAX:
            _DEFAULT_DEFNS.clear()
        _DEFAULT_DEFNS[id(schedule)] = d  # d keeps schedule alive: its id stays unique
        return d
    d = (schedule, name, description, enabled, priority, timeout, misfire_grace, before_run,
         after_run, on_lease_loss)
    key = (id(schedule), name, description, enabled, priority, type(priority), timeout,
           misfire_grace, before_run, after_run, on_lease_loss)
    try:
        hit = _DEFNS.get(key)
    except TypeError:  # an unhashable hook object: keep it unshared
        return d
    if hit is not None and hit[0] is schedule:
        return hit
    if len(_DEFNS) >= _DEFNS_MAX:
        _DEFNS.clear()
    _DEFNS[key] = d
    return d


# Where fields read once per run sit in Entry.defn: read there without the property's
# call (issue 7, W3).
DEFN_MISFIRE_GRACE, DEFN_BEFORE_RUN, DEFN_AFTER_RUN = 6, 7, 8


def _defn_field(i: int) -> Any:
    def get(self: Entry) -> Any:
        return self.defn[i]

    def set_(self: Entry, value: Any) -> None:
        d = list(self.defn)
        d[i] = value
        self.defn = definition(*d)

    return property(get, set_, doc=f"Definition field {DEFN_FIELDS[i]!r} (in Entry.defn).")


@dataclass(slots=True, eq=False)
class Entry:
    """The planner's view of one task."""

    task_id: str
    seq: int
    timing: Timing
    priority: int = 50
    retry: RetryPolicy | None = None
    timeout: float | None = None
    max_instances: int = 1
    deps: tuple[str, ...] = ()
    enabled: bool = True
    runnable: bool = True
    removed: bool = False
    finished: bool = False
    next_nominal: float | None = None
    next_due: float | None = None
    token: int = 0
    parked: bool = False
    unblocked_at: float | None = None
    running: int = 0
    # Requested run_now instants; None until the first one (an empty deque is 624 bytes,
    # more than the rest of the entry, and most tasks are never run by hand).
    manual: deque[float] | None = None
    manual_parked: bool = False
    last_run: float | None = None
    run_count: int = 0
    error_count: int = 0
    last_error: str | None = None
    last_status: RunStatus | None = None
    last_exec_status: RunStatus | None = None
    # The task's definition as given (the engine's copy, see Engine.tasks). It lives here
    # rather than in a Task object of its own so that each task is ONE object the cyclic
    # garbage collector tracks: its full collections walk every live tracked object, and
    # with a Task beside each Entry they made adds 1.6x slower at 100k tasks (issue 7).
    # The planner never reads these; fields it needs (retry, max_instances) are shared.
    # The fields that are the same for most tasks (schedule, name, hooks…) are one tuple
    # shared by equal definitions (``definition()``), read through the properties below:
    # 10 slots fewer per task, ~70 bytes of 1,000,000 tasks (issue 7, round 3).
    handler: Any = None
    defn: tuple[Any, ...] = _NO_DEFN
    metadata: Any = None
    # The handler resolved by the engine (Engine.resolved reads it): a slot here instead
    # of a dict entry per task.
    res: Any = None
    # How long recent attempts took (seconds; the longest, decaying, see
    # Engine._finish_take; -1: none yet): whether a watching worker may run this task's
    # handler and still be back for the next due time, and how long a burst is held.
    took: float = -1.0

    schedule = _defn_field(0)
    name = _defn_field(1)
    description = _defn_field(2)
    def_enabled = _defn_field(3)
    def_priority = _defn_field(4)
    def_timeout = _defn_field(5)
    misfire_grace = _defn_field(DEFN_MISFIRE_GRACE)
    before_run = _defn_field(DEFN_BEFORE_RUN)
    after_run = _defn_field(DEFN_AFTER_RUN)
    on_lease_loss = _defn_field(9)

    @property
    def grace(self) -> float | None:
        """misfire_grace in seconds (None: any lateness runs), from the shared definition."""
        g = self.defn[6]
        return None if g is None else (g.total_seconds() if type(g) is timedelta else float(g))

    @property
    def jitter(self) -> float:
        """The schedule's jitter in seconds, from the (shared) timing: no slot per task."""
        return self.timing.jitter


# A dormant entry: (kind index, seq, next_nominal, next_due), see EntryTable.
_Dormant = tuple[int, int, "float | None", "float | None"]
_KINDS_MAX = 4096
_NOTHING = object()  # matches no field
# dict's own methods, typed loosely: an EntryTable's values are Entries or dormant tuples.
_dget: Any = dict.get
_dset: Any = dict.__setitem__
_dgetitem: Any = dict.__getitem__
_dpop: Any = dict.pop
_dvalues: Any = dict.values
_ditems: Any = dict.items


class EntryTable(dict[str, Entry]):
    """``Planner.entries``: task id -> Entry, with most idle tasks kept *dormant*.

    Why: the cyclic garbage collector's full collections walk every tracked object, and
    an ``Entry`` (a slotted object) is always tracked. With 100,000 idle tasks a full
    collection took ~25 ms, and where one fell decided how fast a stretch of adds went
    (issue 7, W1 growth) and how long a million adds took (W6). A task added and not
    touched since is stored as a tuple of atomic values, ``(kind, seq, next_nominal,
    next_due)``, which the collector stops tracking; everything else about it (timing,
    handler, definition, priority, retry…) is its *kind*, one tuple shared by all tasks
    added alike (bounded: when the table is full, tasks stay plain entries).

    The first access through ``get``/``[]``/``pop``/``values``/``items`` turns a dormant
    task back into its ``Entry`` for good (the caller may change it); ``peek`` builds a
    throw-away one for read-only callers (snapshots, stats), so reading does not wake it.
    A task is only made dormant by ``Planner.add(..., dormant=True)``, whose caller
    promises not to keep the Entry it passed in.
    """

    __slots__ = ("_kind_ids", "_last", "dormant", "kinds")

    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[tuple[Any, ...]] = []
        self._kind_ids: dict[tuple[Any, ...], int] = {}
        self.dormant = 0  # how many values are dormant tuples
        self._last: tuple[int, tuple[Any, ...]] = (-1, (_NOTHING,) * 9)

    def sleep(self, e: Entry) -> bool:
        """Store ``e`` dormant if it is a fresh task that can be; True when it was."""
        if (e.deps or e.metadata is not None or not e.runnable or e.manual is not None
                or e.running or e.removed or e.finished or e.token != e.seq or e.parked
                or e.run_count or e.last_run is not None or e.last_status is not None):
            return False
        timing, priority, retry, timeout = e.timing, e.priority, e.retry, e.timeout
        max_instances, enabled, handler, defn, res = (
            e.max_instances, e.enabled, e.handler, e.defn, e.res)
        i, k = self._last
        # Tasks added in bulk are mostly alike: compare with the last kind first.
        if not (k[0] is timing and k[1] == priority and k[2] is retry and k[3] == timeout
                and k[4] == max_instances and k[5] is enabled and k[6] is handler
                and k[7] is defn and k[8] is res):
            key = (id(timing), priority, id(retry), timeout, max_instances, enabled,
                   id(handler), id(defn), id(res))
            ids = self._kind_ids
            found = ids.get(key)
            if found is None:
                if len(self.kinds) >= _KINDS_MAX:
                    return False
                found = ids[key] = len(self.kinds)
                # The kind holds its objects: their ids (in the key) stay unique.
                self.kinds.append((timing, priority, retry, timeout, max_instances, enabled,
                                   handler, defn, res))
            i = found
            self._last = (i, self.kinds[i])
        self.put_dormant(e.task_id, (i, e.seq, e.next_nominal, e.next_due))
        return True

    def kind_of(self, task_id: str) -> int | None:
        """The kind of a dormant task (None when it is an Entry or unknown)."""
        v = _dget(self, task_id)
        return v[0] if type(v) is tuple else None

    def put_dormant(self, task_id: str, rec: _Dormant) -> None:
        if type(_dget(self, task_id)) is not tuple:
            self.dormant += 1
        _dset(self, task_id, rec)

    def _build(self, task_id: str, rec: _Dormant) -> Entry:
        i, seq, nominal, due = rec
        (timing, priority, retry, timeout, max_instances, enabled, handler, defn,
         res) = self.kinds[i]
        return Entry(task_id, seq, timing, priority, retry, timeout, max_instances, (),
                     enabled, True, False, False, nominal, due, seq, False, None, 0, None,
                     False, None, 0, 0, None, None, None, handler, defn, None, res)

    def _wake(self, task_id: str, rec: _Dormant) -> Entry:
        e = self._build(task_id, rec)
        _dset(self, task_id, e)
        self.dormant -= 1
        return e

    def __setitem__(self, task_id: str, e: Entry) -> None:
        if type(_dget(self, task_id)) is tuple:
            self.dormant -= 1
        _dset(self, task_id, e)

    def __delitem__(self, task_id: str) -> None:
        self.pop(task_id)

    def get(self, task_id: str, default: Any = None) -> Any:
        v = _dget(self, task_id, default)
        if type(v) is tuple:
            return self._wake(task_id, v)
        return v

    def __getitem__(self, task_id: str) -> Entry:
        v = _dgetitem(self, task_id)
        if type(v) is tuple:
            return self._wake(task_id, v)
        e: Entry = v
        return e

    def peek(self, task_id: str) -> Entry | None:
        """The entry for reading only: a dormant one stays dormant (a copy is built)."""
        v = _dget(self, task_id)
        if type(v) is tuple:
            return self._build(task_id, v)
        e: Entry | None = v
        return e

    def token_of(self, task_id: str) -> int | None:
        """The task's current timer token (None: no such task), without waking it: a
        dormant task's token is its seq (see ``_build``)."""
        v = _dget(self, task_id)
        if v is None:
            return None
        tok: int = v[1] if type(v) is tuple else v.token
        return tok

    def pop(self, task_id: str, *default: Any) -> Any:
        v = _dpop(self, task_id, *default)
        if type(v) is tuple:
            self.dormant -= 1
            return self._build(task_id, v)
        return v

    def _wake_all(self) -> None:
        if self.dormant:
            for tid, v in list(_ditems(self)):
                if type(v) is tuple:
                    self._wake(tid, v)

    def values(self) -> Any:
        self._wake_all()
        return _dvalues(self)

    def items(self) -> Any:
        self._wake_all()
        return _ditems(self)

    def peek_values(self) -> Iterator[Entry]:
        """Every entry for reading only, dormant ones as throw-away copies."""
        for tid, v in _ditems(self):
            yield self._build(tid, v) if type(v) is tuple else v

    def count_unrunnable(self) -> int:
        """Tasks without a handler (dormant tasks always have one)."""
        if not self.dormant:
            return sum(1 for e in _dvalues(self) if not e.runnable)
        return sum(1 for e in _dvalues(self) if type(e) is not tuple and not e.runnable)

    def setdefault(self, *a: Any) -> Any:
        raise NotImplementedError("EntryTable.setdefault")

    def popitem(self) -> Any:
        raise NotImplementedError("EntryTable.popitem")

    def copy(self) -> Any:
        raise NotImplementedError("EntryTable.copy")


@dataclass(slots=True, eq=False)
class Run:
    """One execution: the first attempt and its retries."""

    run_id: str
    entry: Entry
    scheduled_for: float
    manual: bool = False
    attempt: int = 0
    token: int = 0
    active: bool = False
    done: bool = False
    started_at: float = 0.0
    attempt_started: float = 0.0
    deadline: float | None = None
    finished_at: float | None = None
    last_error: str | None = None
    timed_out: bool = False
    status: RunStatus = RunStatus.RUNNING
    ctx: Any = None
    retry_at: float | None = None
    result: Any = None
    handler: Any = None
    future: Any = None


@dataclass(slots=True, frozen=True)
class Timeout:
    run: Run


@dataclass(slots=True, frozen=True)
class Occurrence:
    """A skipped or missed occurrence, to be recorded."""

    entry: Entry
    scheduled_for: float
    status: RunStatus
    reason: str


@dataclass(slots=True, frozen=True)
class Retrying:
    run: Run
    at: float


@dataclass(slots=True)  # not frozen: a frozen __init__ costs more, and one is made per run
class Done:
    run: Run


# A Run in collect's decisions is a run to start (no wrapper object: one per run).
Decision = Run | Timeout | Occurrence
Outcome = Retrying | Done


class Planner:
    """All scheduling decisions. Every method takes ``now``; none reads a clock."""

    def __init__(
        self,
        *,
        default_retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        new_run_id: Callable[[], str] | None = None,
    ) -> None:
        self.entries = EntryTable()
        self.runs: dict[str, Run] = {}
        self.default_retry = default_retry or RetryPolicy()
        self.dependents: dict[str, set[str]] = {}
        # Timer items: (at, tie, task_id) for an entry's due time, live while the entry's
        # token equals tie (each arm takes a fresh tie as the token); (at, tie, kind, run,
        # token) for a run's retry or deadline. A due item holds only atomic values, so
        # the garbage collector stops tracking it: with a million tasks the full
        # collections otherwise walk a million extra tuples (issue 7).
        self._timers: list[tuple[Any, ...]] = []
        # Runs to start as soon as a worker is free, in priority order (read by the
        # engine: a non-empty list means work is waiting).
        self.ready: list[tuple[int, float, int, int, int, Any, int]] = []
        self._tie = itertools.count()
        self._rng = rng or random.Random()
        self._new_run_id = new_run_id or _counter_ids()
        # Set when work was queued earlier than the runner's current wake-up time.
        self.wake_needed = False
        self.armed_until: float | None = None
        self.enabled_count = 0
        self.running_tasks = 0

    # ----- task table ---------------------------------------------------------------
    def add(self, entry: Entry, now: float, *, next_nominal: float | None = None,
            fresh: bool = True, dormant: bool = False) -> None:
        """Insert an entry; plan its first occurrence from ``now`` (or keep a stored one).

        ``dormant``: the caller will not use ``entry`` again, so it may be stored as a
        dormant tuple (see EntryTable); later reads get an equal Entry."""
        # The add order is the first tie: the entry's first token is the same int object,
        # one int per task fewer (28 bytes of 1,000,000 tasks; ties only grow, so seq
        # still orders entries by addition).
        seq = entry.seq = next(self._tie)
        for d in entry.deps:
            self.dependents.setdefault(d, set()).add(entry.task_id)
        if entry.enabled:
            self.enabled_count += 1
        if fresh:
            next_nominal = entry.timing.first(now) if entry.enabled else None
        entry.next_nominal = next_nominal
        self._arm(entry, seq)  # reads no table: the entry goes in once, in its final form
        if not (dormant and self.entries.sleep(entry)):
            self.entries[entry.task_id] = entry

    def add_alike(self, task_id: str, kind: int, now: float) -> float | None:
        """Insert a new task (``task_id`` not in the table: the caller checked) of
        dormant kind ``kind`` (``EntryTable.kinds``) straight as a dormant record: what
        ``add(entry, now, dormant=True)`` does for an entry of that kind, without
        building the entry (issue 7, W1: tasks added in bulk are alike). Returns when
        it is first due (None: not planned)."""
        entries = self.entries
        k = entries.kinds[kind]
        timing = k[0]
        seq = next(self._tie)
        nominal = due = None
        if k[5]:  # enabled
            self.enabled_count += 1
            nominal = timing.first(now)
            if nominal is not None:
                due = self._push_due(task_id, nominal, seq, timing.jitter)
        # The caller checked that task_id is new: one dict store, no lookup first.
        _dset(entries, task_id, (kind, seq, nominal, due))
        entries.dormant += 1
        return due

    def remove(self, task_id: str, now: float) -> list[Done]:
        e = self.entries.pop(task_id)
        e.removed = True
        e.token += 1
        if e.enabled:
            self.enabled_count -= 1
        for d in e.deps:
            self.dependents.get(d, set()).discard(task_id)
        self.dependents.pop(task_id, None)
        return self._end_waiting_retries(e, now)

    def set_enabled(self, task_id: str, enabled: bool, now: float) -> list[Done]:
        e = self.entries[task_id]
        if e.enabled == enabled:
            return []
        e.enabled = enabled
        e.token += 1
        e.parked = e.manual_parked = False
        if enabled:
            self.enabled_count += 1
            e.finished = False
            e.next_nominal = e.timing.first(now)
            self._arm(e)
            return []
        self.enabled_count -= 1
        e.next_nominal = e.next_due = None
        e.manual = None
        return self._end_waiting_retries(e, now)

    def replace(self, old: Entry, new: Entry, now: float, *, replan: bool) -> None:
        """Swap in an updated definition, keeping runtime state and running executions."""
        new.seq, new.running = old.seq, old.running
        new.last_run, new.run_count, new.error_count = old.last_run, old.run_count, old.error_count
        new.last_error, new.last_status = old.last_error, old.last_status
        new.last_exec_status, new.manual, new.finished = (
            old.last_exec_status, old.manual, old.finished)
        new.token = old.token + 1
        old.token += 1
        if new.res is None:
            new.res = old.res  # resolved for this id before the swap (Engine._set_resolved)
        for d in old.deps:
            self.dependents.get(d, set()).discard(old.task_id)
        for d in new.deps:
            self.dependents.setdefault(d, set()).add(new.task_id)
        self.entries[new.task_id] = new
        self.enabled_count += int(new.enabled) - int(old.enabled)
        for r in self.runs.values():
            if r.entry is old:
                r.entry = new
        if not new.enabled:
            new.next_nominal = None
        elif replan or not old.enabled:
            new.next_nominal = new.timing.first(now)
        else:
            new.next_nominal = old.next_nominal
        self._arm(new)
        if new.manual:
            self._push_ready(new, _MANUAL, new.manual[0])

    def set_runnable(self, task_id: str, runnable: bool) -> None:
        """Orphans (no handler) are kept but never queued; a registered handler re-arms them."""
        e = self.entries[task_id]
        if e.runnable == runnable:
            return
        e.runnable = runnable
        e.token += 1
        self._arm(e)

    def run_now(self, task_id: str, now: float) -> None:
        e = self.entries[task_id]
        if e.manual is None:
            e.manual = deque()
        e.manual.append(now)
        if len(e.manual) == 1 and not e.manual_parked:
            self._push_ready(e, _MANUAL, now)

    # ----- time ---------------------------------------------------------------------
    def next_wakeup(self) -> float | None:
        """The earliest instant at which ``collect`` may have something to do."""
        t = self._timers
        entries = self.entries
        while t:
            item = t[0]
            if len(item) == 3:  # _live's first case inline: called once per run (W3)
                v = _dget(entries, item[2])
                if v is not None and (v[1] if type(v) is tuple else v.token) == item[1]:
                    at: float = item[0]  # (a dormant task's token is its seq)
                    return at
            elif self._live(item):
                at = item[0]
                return at
            heapq.heappop(t)
        return None

    def collect(self, now: float, free: int, upto: float | None = None) -> list[Decision]:
        """Due work at ``now``: runs to start (at most ``free``), timeouts, skips, misses.

        ``upto``: take only timers due at or before it (default ``now``); what is due
        later stays queued for whoever ticks at that time."""
        timers = self._timers
        entries = self.entries
        limit = now if upto is None else upto
        out: list[Decision] = []
        if not self.ready:
            if not timers or timers[0][0] > limit:
                return out  # nothing due (the timer thread's backstop wake-up, mostly)
            if free > 0:
                lone = self.start_lone(now, limit)
                if lone is not None:
                    out.append(lone)
                    return out
            item = timers[0]
            if free > 0 and len(item) == 3:
                # The usual tick: one live task due, nothing ready: it goes first anyway,
                # so skip the lists and loops below (issue 7, W3: the watcher's tick). A
                # stale or dormant item, or a second one due, takes the general path.
                e = _dget(entries, item[2])
                if type(e) is Entry and e.token == item[1]:
                    heapq.heappop(timers)
                    if not timers or timers[0][0] > limit:
                        self._due(e, now, out)
                        return out
                    heapq.heappush(timers, item)
        due: list[Entry] = []
        sleeping: list[tuple[str, _Dormant]] = []  # due, still dormant
        while timers and timers[0][0] <= limit:
            item = heapq.heappop(timers)
            if len(item) == 3:
                v = _dget(entries, item[2])
                if v is None:
                    continue
                if type(v) is tuple:
                    if v[1] == item[1]:  # a dormant task's token is its seq
                        sleeping.append((item[2], v))
                elif v.token == item[1]:
                    due.append(v)
                continue
            _, _, kind, obj, tok = item
            if kind == _RETRY:
                if tok == obj.token and not obj.done:
                    self._push_ready(obj.entry, _RETRY, obj.scheduled_for, obj)
            elif tok == obj.token and obj.active:  # _DEADLINE
                out.append(Timeout(obj))
        ready = self.ready
        if len(due) + len(sleeping) > 16:
            # Thousands due at one instant: one O(n) heapify instead of n pushes, so the
            # first of them starts milliseconds sooner (issue 7, W2). Dormant tasks stay
            # dormant in the ready heap until their run starts (waking 5,000 entries here
            # took 10 ms before the first start).
            tie = self._tie
            ready.extend((-e.priority, e.next_nominal or 0.0, e.seq, next(tie), _DUE, e, e.token)
                         for e in due)
            kinds = entries.kinds
            ready.extend((-kinds[v[0]][1], v[2] or 0.0, v[1], next(tie), _DUE_ID, tid, v[1])
                         for tid, v in sleeping)
            heapq.heapify(ready)
            self.wake_needed = True
        else:
            if sleeping:
                due.extend(entries[tid] for tid, _ in sleeping)
            if len(due) == 1 and not ready and free > 0:
                # The usual tick: one task due, nothing else waiting: it goes first
                # anyway, so skip the ready heap's push and pop (issue 7, W3).
                free -= self._due(due[0], now, out)
            else:
                for e in due:
                    self._push_ready(e, _DUE, e.next_nominal)
        while free > 0 and ready:
            _, _, _, _, kind, obj, tok = heapq.heappop(ready)
            if kind == _RETRY:
                run: Run = obj
                if tok != run.token or run.done:
                    continue
                if run.entry.removed or not run.entry.enabled:
                    continue  # ended by remove/disable already
                self._start_attempt(run, now)
                out.append(run)
                free -= 1
            elif kind == _MANUAL:
                e = obj
                if e.removed or not e.manual or not e.runnable:
                    continue
                if e.running >= e.max_instances:
                    e.manual_parked = True
                    continue
                requested = e.manual.popleft()
                run = self._new_run(e, requested, now, manual=True)
                out.append(run)
                free -= 1
                if e.manual:
                    self._push_ready(e, _MANUAL, e.manual[0])
            elif kind == _DUE_ID:
                e = entries.get(obj)
                if e is not None and e.token == tok:
                    free -= self._due(e, now, out)
            elif tok == obj.token:
                started = self._due(obj, now, out)
                free -= started
        # wake_needed is left as it is: a worker collecting here (Engine.finish_take) must
        # still wake the timer for what it armed (a deadline, a fixed-delay occurrence);
        # the timer thread clears it itself before computing its next wake-up.
        return out

    def start_lone(self, now: float, limit: float) -> Run | None:
        """``collect(now, 1, limit)`` for the steady case, in one frame: nothing ready,
        one task due (by ``limit``), on time and plain: no dependencies, jitter, fixed
        delay or occurrence missed. Returns its started run, or None with nothing
        changed (the caller takes ``collect``'s general path, the rules this short-cuts;
        tests/core/test_fast_paths.py compares the two). Why: the watcher runs this
        right after its wake-up, where each step costs 4-5x (issue 7, W3)."""
        timers = self._timers
        if self.ready or not timers:
            return None
        item = timers[0]
        at = item[0]
        if at > limit or len(item) != 3:
            return None
        e = _dget(self.entries, item[2])
        if (type(e) is not Entry or e.token != item[1] or e.next_nominal != at
                or not e.enabled or e.removed or not e.runnable or e.deps
                or e.running >= e.max_instances or e.unblocked_at is not None):
            return None
        timing = e.timing
        if timing.fixed_delay or timing.jitter:
            return None
        if e.defn[DEFN_MISFIRE_GRACE] is not None:
            g = e.grace
            if g is not None and at < now - g:
                return None
        nxt = timing.next_after(at, at)
        if nxt is not None and nxt <= now:
            return None  # fell behind: the catch-up walk decides
        heapq.heappop(timers)
        if timers and timers[0][0] <= limit:
            heapq.heappush(timers, item)  # another one due: priority decides
            return None
        run = self._new_run(e, at, now, manual=False)
        # _arm without jitter
        e.next_nominal = nxt
        tie = e.token = next(self._tie)
        if nxt is None:
            e.next_due = None
        else:
            e.next_due = nxt
            heapq.heappush(timers, (nxt, tie, e.task_id))
            armed = self.armed_until
            if armed is None or nxt < armed:
                self.wake_needed = True
        return run

    # ----- outcomes -----------------------------------------------------------------
    def attempt_finished(
        self, run: Run, token: int, now: float, *, error: str | None,
        timed_out: bool = False, stopping: bool = False,
    ) -> Outcome | None:
        """Record an attempt's end; None when the attempt is stale (already timed out)."""
        if token != run.token or not run.active:
            return None
        run.active = False
        if error is None:
            return self._finish(run, RunStatus.SUCCEEDED, now)
        run.last_error = error
        run.timed_out = timed_out
        e = run.entry
        policy = e.retry or self.default_retry
        if not stopping and e.enabled and not e.removed and run.attempt <= policy.max_retries:
            at = now + policy.delay_for(run.attempt, self._rng.random())
            run.retry_at = at
            self._push_timer(at, _RETRY, run, run.token)
            return Retrying(run, at)
        return self._finish(run, RunStatus.TIMED_OUT if timed_out else RunStatus.FAILED, now)

    def end_ok(self, run: Run, now: float) -> bool:
        """``attempt_finished`` with success and ``release`` in one frame, for the steady
        case: an active run of a plain task (no fixed delay, dependents, parked or
        finite schedule) whose outcome needs nothing outside the engine's lock. False:
        nothing changed, take the general path (tests/core/test_fast_paths.py compares
        the two). The caller has checked the attempt's token (issue 7, W3)."""
        e = run.entry
        timing = e.timing
        if (not run.active or e.removed or e.parked or e.manual_parked or timing.fixed_delay
                or timing.finite or (self.dependents and e.task_id in self.dependents)):
            return False
        ok = RunStatus.SUCCEEDED
        run.active = False
        run.done = True
        run.status = ok
        run.finished_at = now
        run.last_error = None
        e.run_count += 1
        e.last_run = run.started_at
        e.last_status = e.last_exec_status = ok
        e.last_error = None
        self.runs.pop(run.run_id, None)
        e.running -= 1
        if e.running == 0:
            self.running_tasks -= 1
        return True

    def cancel(self, run: Run, now: float, reason: str) -> Done:
        """End an execution as cancelled (stop() timed out while it ran)."""
        run.active = False
        run.token += 1
        run.last_error = reason
        return self._finish(run, RunStatus.CANCELLED, now)

    def end_waiting_retries(self, now: float) -> list[Done]:
        """On stop: executions waiting for a retry end with their last failure."""
        out: list[Done] = []
        for e in list(self.entries.values()):
            out.extend(self._end_waiting_retries(e, now))
        return out

    def release(self, run: Run, now: float) -> None:
        """The run's outcome is durable: free the instance and wake what waited on it."""
        self.runs.pop(run.run_id, None)
        e = run.entry
        e.running -= 1
        if e.running == 0:
            self.running_tasks -= 1
        if e.removed:
            return
        if e.timing.fixed_delay and not run.manual and e.enabled and e.next_nominal is None:
            e.next_nominal = e.timing.after_finish(run.finished_at or now)
            self._arm(e)
        if e.parked:
            e.parked = False
            self._push_ready(e, _DUE, e.next_nominal)
        if e.manual_parked and e.manual:
            e.manual_parked = False
            self._push_ready(e, _MANUAL, e.manual[0])
        for dep_id in self.dependents.get(e.task_id, ()):
            d = self.entries.get(dep_id)
            if d is not None and d.parked and d.running < d.max_instances:
                d.parked = False
                d.unblocked_at = now
                self._push_ready(d, _DUE, d.next_nominal)
        if e.timing.finite:
            self._check_finished(e)

    def record_occurrence(self, occ: Occurrence) -> None:
        """Count a skipped/missed occurrence in the task's runtime state."""
        e = occ.entry
        e.last_status = occ.status

    # ----- internals ----------------------------------------------------------------
    def _due(self, e: Entry, now: float, out: list[Decision]) -> int:
        """Handle a due occurrence of ``e``; returns 1 if a run started."""
        if not e.enabled or e.removed or not e.runnable or e.next_nominal is None:
            return 0
        if e.running >= e.max_instances:
            e.parked = True
            return 0
        failed = None
        if e.deps:
            waiting, failed = self._deps_state(e)
            if waiting:
                e.parked = True
                return 0
        nominal = e.next_nominal
        timing = e.timing
        if (failed is None and e.next_due == nominal and e.unblocked_at is None
                and not timing.fixed_delay):
            # On time (the usual case): the next occurrence is still ahead and this one
            # is within misfire_grace: _catch_up's answer is (nominal, no misses), found
            # with one next_after instead of its walk (issue 7, W3).
            nxt = timing.next_after(nominal, nominal)
            if nxt is None or nxt > now:
                g = e.grace
                if g is None or nominal >= now - g:
                    out.append(self._new_run(e, nominal, now, manual=False))
                    e.next_nominal = nxt
                    self._arm(e)
                    return 1  # (not finished: its run has just started)
        run_at, missed, more, last, latest = self._catch_up(e, now)
        e.unblocked_at = None
        for occ in missed:
            out.append(Occurrence(e, occ, RunStatus.MISSED,
                                  "missed: could not start within misfire_grace"))
        if more:
            out.append(Occurrence(e, last, RunStatus.MISSED,
                                  f"missed: {more} more occurrences up to this one "
                                  "could not start within misfire_grace"))
        started = 0
        if run_at is not None and failed is not None:
            out.append(Occurrence(e, run_at, RunStatus.SKIPPED,
                                  f"skipped: dependency {failed!r} failed"))
        elif run_at is not None:
            out.append(self._new_run(e, run_at, now, manual=False))
            started = 1
            if e.timing.fixed_delay:
                # Fixed delay: the next occurrence is planned when this run ends.
                e.next_nominal = None
                self._arm(e)
                return started
        e.next_nominal = e.timing.next_after(latest, e.next_nominal or latest)
        self._arm(e)
        self._check_finished(e)
        return started

    def _deps_state(self, e: Entry) -> tuple[bool, str | None]:
        failed = None
        for d in e.deps:
            de = self.entries.get(d)
            if de is None:
                continue
            if de.last_exec_status is None or de.running > 0:
                return True, None
            if failed is None and de.last_exec_status in _FAILED_EXEC:
                failed = d
        return False, failed

    def _catch_up(
        self, e: Entry, now: float
    ) -> tuple[float | None, list[float], int, float, float]:
        """Resolve everything ``e`` fell behind.

        Returns (occurrence to run or None, missed occurrences, count of further missed
        ones, the last of those, the latest occurrence at or before now).
        """
        nominal = e.next_nominal
        assert nominal is not None
        offset = (e.next_due or nominal) - nominal
        latest = e.timing.last_at_or_before(now - offset, nominal)
        if latest is None or latest < nominal:
            latest = nominal
        grace = e.grace
        if grace is None:
            return latest, [], 0, latest, latest
        # Waiting for dependencies is deliberate, not lateness: count from the unblocking.
        base = e.unblocked_at if e.unblocked_at is not None else float("-inf")
        cutoff = now - grace

        def late(o: float) -> bool:
            return max(o + (offset if o == nominal else 0.0), base) < cutoff

        run_at = None if late(latest) else latest
        missed: list[float] = []
        more = 0
        last = latest
        for o in self._iter(e, nominal, latest):
            if (run_at is not None and o >= run_at) or not late(o):
                break
            if len(missed) < MAX_MISSED:
                missed.append(o)
            else:
                more += 1
                last = o
                if more >= _COUNT_CAP:
                    break
        return run_at, missed, more, last, latest

    def _iter(self, e: Entry, start: float, stop: float) -> Iterator[float]:
        o: float | None = start
        while o is not None and o <= stop:
            yield o
            o = e.timing.next_after(o, start)

    def _new_run(self, e: Entry, scheduled_for: float, now: float, *, manual: bool) -> Run:
        # What Run(run_id, e, scheduled_for, manual=manual, started_at=now) and
        # _start_attempt make, slot by slot without the dataclass's keyword __init__ and
        # a second call: one Run per run (issue 7, W3; tests/core/test_fast_paths.py
        # compares the two).
        run: Run = _new(Run)
        run.run_id = rid = self._new_run_id()
        run.entry = e
        run.scheduled_for = scheduled_for
        run.manual = manual
        run.attempt = run.token = 1
        run.active = True
        run.done = run.timed_out = False
        run.started_at = run.attempt_started = now
        t = e.timeout
        run.deadline = deadline = None if t is None else now + t
        run.finished_at = run.last_error = run.retry_at = run.result = None
        run.ctx = run.handler = run.future = None
        run.status = RunStatus.RUNNING
        self.runs[rid] = run
        if e.running == 0:
            self.running_tasks += 1
        e.running += 1
        if deadline is not None:
            self._push_timer(deadline, _DEADLINE, run, 1)
        return run

    def _start_attempt(self, run: Run, now: float) -> None:
        run.attempt += 1
        run.token += 1
        run.active = True
        run.retry_at = None
        run.attempt_started = now
        t = run.entry.timeout
        run.deadline = None if t is None else now + t
        if run.deadline is not None:
            self._push_timer(run.deadline, _DEADLINE, run, run.token)

    def _finish(self, run: Run, status: RunStatus, now: float) -> Done:
        run.done = True
        run.status = status
        run.finished_at = now
        e = run.entry
        if status is RunStatus.SUCCEEDED:
            run.last_error = None
        if not e.removed:
            e.run_count += 1
            e.last_run = run.started_at
            e.last_status = e.last_exec_status = status
            if status is RunStatus.SUCCEEDED:
                e.last_error = None
            else:
                e.error_count += 1
                e.last_error = run.last_error
        return Done(run)

    def _end_waiting_retries(self, e: Entry, now: float) -> list[Done]:
        out = []
        for run in list(self.runs.values()):
            if run.entry is e and not run.active and not run.done:
                run.token += 1
                out.append(self._finish(run, RunStatus.TIMED_OUT if run.timed_out
                                        else RunStatus.FAILED, now))
        return out

    def _check_finished(self, e: Entry) -> None:
        if (e.timing.finite and e.next_nominal is None and e.running == 0
                and not e.manual and e.enabled):
            e.finished = True
            e.enabled = False
            self.enabled_count -= 1

    def _arm(self, e: Entry, tie: int | None = None) -> None:
        if tie is None:
            tie = next(self._tie)
        e.token = tie  # above every tie this entry's earlier items carry: they are stale
        if e.next_nominal is None or not e.enabled or not e.runnable or e.removed:
            e.next_due = None
            return
        e.next_due = self._push_due(e.task_id, e.next_nominal, tie, e.timing.jitter)

    def _push_due(self, task_id: str, nominal: float, tie: int, jitter: float) -> float:
        """Queue a task's occurrence; returns when it is due (nominal + jitter)."""
        at = nominal + jitter * self._rng.random() if jitter else nominal
        heapq.heappush(self._timers, (at, tie, task_id))
        if self.armed_until is None or at < self.armed_until:
            self.wake_needed = True
        return at

    def _push_timer(self, at: float, kind: int, obj: Any, token: int) -> None:
        heapq.heappush(self._timers, (at, next(self._tie), kind, obj, token))
        if self.armed_until is None or at < self.armed_until:
            self.wake_needed = True

    def _push_ready(self, e: Entry, kind: int, nominal: float | None, obj: Any = None) -> None:
        target = e if obj is None else obj
        token = target.token
        heapq.heappush(self.ready, (-e.priority, nominal or 0.0, e.seq, next(self._tie),
                                     kind, target, token))
        self.wake_needed = True

    def _live(self, item: tuple[Any, ...]) -> bool:
        if len(item) == 3:
            return bool(self.entries.token_of(item[2]) == item[1])
        _, _, kind, obj, tok = item
        if kind == _RETRY:
            return bool(tok == obj.token and not obj.done)
        return bool(tok == obj.token and obj.active)


def _counter_ids() -> Callable[[], str]:
    import os

    prefix = os.urandom(6).hex()
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter):x}"
