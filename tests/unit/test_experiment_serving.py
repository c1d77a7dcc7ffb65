"""Experiments in serving without Ray: sticky assignment, weights, consistent buckets, the
routing of arms to versions, the impression log (durable, exported once), attribution."""

import asyncio
import os
import signal
import threading
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest
from llmrec.api.experiment import ExperimentSpec, parse_spec
from llmrec.experiments.assignment import BUCKETS, Assigner, allocate, bucket_of, shares
from llmrec.experiments.attribution import AttributionError, Impression, attribute
from llmrec.experiments.impressions import ImpressionLog, read_log
from llmrec.experiments.routing import APP, Router, reroute, status
from llmrec.serving import ServeSettings, SettingsError
from llmrec.serving.history import Event
from llmrec.serving.versions import VersionCache
from pydantic import ValidationError


def spec(name="exp", **weights):
    weights = weights or {"control": 0.9, "challenger": 0.1}
    return ExperimentSpec(
        name=name,
        variants=[
            {"name": v, "model_uri": f"models:/m@{v}", "weight": w} for v, w in weights.items()
        ],
    )


def assigner(s, previous=None):
    return Assigner(s, allocate(s.weights(), previous))


USERS = [f"u{i}" for i in range(40_000)]


def test_the_same_user_always_gets_the_same_variant():
    s = spec(control=0.5, challenger=0.5)
    one, two = assigner(s), assigner(s)  # two processes
    first = [one.assign(u, None, "r").variant for u in USERS[:2000]]
    again = [two.assign(u, "another-session", f"r{i}").variant for i, u in enumerate(USERS[:2000])]
    assert first == again  # another replica, another request: the same variant
    by_session = one.assign(None, "s-42", "r3")
    assert by_session.unit == "s-42" and by_session.unit_kind == "session"
    assert {two.assign(None, "s-42", f"r{i}").variant for i in range(50)} == {by_session.variant}
    # the hash is of (experiment, unit): another experiment splits users independently
    other = assigner(spec("other", control=0.5, challenger=0.5))
    agree = sum(
        other.assign(u, None, "r").variant == v for u, v in zip(USERS[:2000], first, strict=True)
    )
    assert 900 < agree < 1100  # as by chance, not the same split
    assert bucket_of("exp", "用户一") == bucket_of("exp", "用户一") < BUCKETS


@pytest.mark.parametrize("weights", [(0.9, 0.1), (0.5, 0.5), (1, 3), (0.7, 0.2, 0.1)])
def test_weights_are_honoured_over_many_users(weights):
    names = ["control", "b", "c"][: len(weights)]
    s = spec(**dict(zip(names, weights, strict=True)))
    a = assigner(s)
    counts = dict.fromkeys(names, 0)
    for u in USERS:
        counts[a.assign(u, None, "r").variant] += 1
    total = sum(weights)
    for name, w in zip(names, weights, strict=True):
        p = w / total
        sigma = (p * (1 - p) / len(USERS)) ** 0.5
        assert abs(counts[name] / len(USERS) - p) < 4 * sigma, (name, counts)
    assert a.split() == pytest.approx({n: w / total for n, w in zip(names, weights, strict=True)})
    # no ids at all: each request is its own unit, drawn at random with the same weights
    drawn = [a.assign(None, None, f"req-{i}") for i in range(4000)]
    assert all(d.unit_kind == "request" and d.unit == f"req-{i}" for i, d in enumerate(drawn))
    share = sum(d.variant == "control" for d in drawn) / len(drawn)
    assert abs(share - weights[0] / total) < 0.05


def test_weight_changes_move_only_the_users_they_must():
    ramp = [spec(control=0.9, challenger=0.1), spec(control=0.8, challenger=0.2)]
    before = assigner(ramp[0])
    after = Assigner(ramp[1], allocate(ramp[1].weights(), before.allocation))
    moved = [
        (before.assign(u, None, "r").variant, after.assign(u, None, "r").variant) for u in USERS
    ]
    changed = [m for m in moved if m[0] != m[1]]
    assert set(changed) == {("control", "challenger")}  # nobody leaves the challenger
    assert abs(len(changed) / len(USERS) - 0.1) < 0.01
    # three variants: a must move 10% to c; b (unchanged weight) keeps every user
    three = spec(a=0.5, b=0.3, c=0.2), spec(a=0.4, b=0.3, c=0.3)
    old = allocate(three[0].weights())
    new = allocate(three[1].weights(), old)
    assert new.moved(old) == BUCKETS // 10  # the least possible
    pairs = {(x, y) for x, y in zip(old.owners, new.owners, strict=True) if x != y}
    assert pairs == {("a", "c")}
    # a variant removed: only its users move; a variant added: only users it takes move
    fewer = allocate((("a", 0.5), ("c", 0.5)), new)
    assert all(y == x for x, y in zip(new.owners, fewer.owners, strict=True) if x != "b")
    more = allocate((("a", 0.3), ("c", 0.5), ("d", 0.2)), fewer)
    assert {(x, y) for x, y in zip(fewer.owners, more.owners, strict=True) if x != y} == {
        ("a", "d")
    }
    assert sum(shares((("x", 1), ("y", 1), ("z", 1))).values()) == BUCKETS


def test_the_allocation_is_kept_in_the_log_for_every_replica(tmp_path):
    log = ImpressionLog(tmp_path / "i.sqlite", tmp_path / "seg")
    first = log.allocation(spec(control=0.9, challenger=0.1))
    replica = ImpressionLog(tmp_path / "i.sqlite", tmp_path / "seg")  # another process
    assert replica.allocation(spec(control=0.9, challenger=0.1)) == first
    ramped = replica.allocation(spec(control=0.5, challenger=0.5))
    assert ramped.moved(first) == 4000  # from 10% to 50%: 40% of users move
    assert log.allocation(spec(control=0.5, challenger=0.5)) == ramped
    assert log.allocation(spec("fresh", control=0.5, challenger=0.5)) == allocate(
        (("control", 0.5), ("challenger", 0.5))
    )


def test_a_spec_names_every_problem():
    with pytest.raises(ValidationError) as err:
        ExperimentSpec(
            name="bad name",
            variants=[{"name": "a", "model_uri": "runs:/x", "weight": -1}],
        )
    text = str(err.value)
    assert "name" in text and "model_uri" in text and "weight" in text
    twice = {
        "name": "e",
        "variants": [
            {"name": "a", "model_uri": "models:/m/1", "weight": 1},
            {"name": "a", "model_uri": "models:/m/2", "weight": 1},
        ],
    }
    assert ExperimentSpec(**twice).problems() == ["variant names must differ; repeated: a"]
    with pytest.raises(SettingsError, match="variant names must differ; repeated: a"):
        ServeSettings.from_args({"experiment": twice})
    with pytest.raises(ValueError, match="variant names must differ"):
        Assigner(ExperimentSpec(**twice), allocate((("a", 1.0), ("b", 1.0))))
    with pytest.raises(ValidationError, match="at least one variant needs a weight > 0"):
        spec(a=0, b=0)
    with pytest.raises(SettingsError, match="experiment: Value error, experiment is not JSON"):
        ServeSettings.from_args({"experiment": "{name: x}"})
    text = '{"name": "e", "variants": [{"name": "a", "model_uri": "models:/m/1", "weight": 1},'
    text += ' {"name": "b", "model_uri": "models:/m@challenger", "weight": 1}]}'
    assert ServeSettings.from_args({"experiment": text}).experiment == parse_spec(text)
    assert ServeSettings.from_args({}).experiment is None


def impression(rid, unit="u1", items=("a", "b", "c"), variant="control", user="u1", ts=1.0):
    return Impression(
        request_id=rid,
        timestamp=ts,
        experiment="exp",
        variant=variant,
        model_uri="models:/m/1",
        model_version="1",
        unit=unit,
        unit_kind="user" if user else "session",
        user_id=user,
        session_id=None if user else unit,
        items=tuple(items),
        latency_ms=12.5,
    )


def test_feedback_is_attributed_to_the_answer_it_names():
    shown = {"r1": impression("r1"), "r2": impression("r2", unit="s9", user=None)}
    out = attribute(
        [
            ("r1", Event("u1", "b", "click")),
            ("r1", Event("u1", "zzz", "like", 1.0)),
            ("r2", Event("whoever-signed-in", "a", "purchase", 9.5, timestamp=7)),
        ],
        shown,
    )
    assert [(a.variant, a.model_version, a.position, a.unit) for a in out] == [
        ("control", "1", 2, "u1"),
        ("control", "1", None, "u1"),  # not in that answer
        ("control", "1", 1, "s9"),
    ]
    assert out[2].value == 9.5 and out[2].timestamp == 7
    with pytest.raises(AttributionError, match="unknown request_id: 'nope'") as err:
        attribute([("nope", Event("u1", "a"))], shown)
    assert err.value.status == 404
    with pytest.raises(AttributionError, match="answered user_id 'u1', not 'u2'") as err:
        attribute([("r1", Event("u2", "a"))], shown)
    assert err.value.status == 422


def test_the_log_records_counts_and_exports_each_row_once(tmp_path):
    log = ImpressionLog(tmp_path / "i.sqlite", tmp_path / "seg")
    log.record([impression("r1"), impression("r2", unit="u2", user="u2", variant="challenger")])
    log.record([impression("r3", items=("中文", "b"))])
    found = log.lookup(["r3", "r1", "missing"])
    assert set(found) == {"r1", "r3"} and found["r3"].items == ("中文", "b")
    events = attribute([("r1", Event("u1", "c", "click")), ("r3", Event("u1", "x", "like"))], found)
    log.record_events(events)
    counts = log.counts("exp")
    assert counts["control"] == {
        "requests": 2,
        "users": 1,
        "impressions": 5,
        "events": {"click": 1, "like": 1},
        "value": 2.0,
    }
    assert counts["challenger"]["requests"] == 1 and counts["challenger"]["events"] == {}
    written = log.export()
    assert len(written) == 2 and log.export() == []  # nothing new: nothing written
    log.record([impression("r4")])
    (segment,) = log.export()
    assert segment.name == "part-000000000004-000000000004.parquet"
    shown, clicked = read_log(tmp_path / "seg", "exp")
    assert shown["request_id"].to_pylist() == ["r1", "r2", "r3", "r4"]
    assert shown["items"].to_pylist()[2] == ["中文", "b"]
    assert clicked.to_pylist()[0]["position"] == 3
    assert read_log(tmp_path / "seg", "other")[0].num_rows == 0


def test_concurrent_exporters_never_overlap_and_a_lost_segment_is_rewritten(tmp_path):
    db, seg = tmp_path / "i.sqlite", tmp_path / "seg"
    logs = [ImpressionLog(db, seg) for _ in range(3)]  # three replicas
    stop = threading.Event()

    def writer(k):
        n = 0
        while not stop.is_set():
            logs[k].record([impression(f"w{k}-{n}")])
            n += 1

    def exporter(k):
        while not stop.is_set():
            logs[k].export()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    threads += [threading.Thread(target=exporter, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    threading.Event().wait(1.5)
    stop.set()
    for t in threads:
        t.join()
    logs[0].export()
    ids = read_log(seg)[0]["request_id"].to_pylist()
    assert len(ids) == len(set(ids)) > 20  # every answer once
    assert len(ids) == logs[0]._conn().execute("SELECT COUNT(*) FROM impressions").fetchone()[0]
    # an exporter died after claiming a range, before writing it: the next export writes it
    first = sorted((seg / "impressions").glob("part-*"))[0]
    first.unlink()
    logs[1]._conn().execute("UPDATE segments SET written = 0 WHERE first_seq = 1")
    assert logs[2].export() == [first]
    assert pq.read_table(first).num_rows > 0
    # the report exports to another folder: every segment is written there too
    elsewhere = ImpressionLog(db, tmp_path / "report")
    assert len(elsewhere.export()) == len(list(seg.glob("*/part-*.parquet")))
    assert sorted(read_log(tmp_path / "report")[0]["request_id"].to_pylist()) == sorted(ids)
    assert elsewhere.export() == []


def test_a_logged_answer_survives_a_killed_process(tmp_path):
    """The log is committed with synchronous=NORMAL in WAL mode: what was committed before
    the process died without closing anything (SIGKILL) is there afterwards. The process is
    a fork of this one (nothing to import again)."""
    pid = os.fork()
    if pid == 0:  # the child: log, then die without closing the connection
        try:
            log = ImpressionLog(tmp_path / "i.sqlite", tmp_path / "seg")
            for i in range(50):
                log.record([impression(f"k{i}")])
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    log = ImpressionLog(tmp_path / "i.sqlite", tmp_path / "seg")
    assert len(log.lookup(f"k{i}" for i in range(50))) == 50


def test_the_running_experiment_follows_the_latest_decision(tmp_path):
    state = ImpressionLog(tmp_path / "i.sqlite", tmp_path / "seg").experiments
    a, b = spec("a"), spec("b")
    assert state.configured(None) is None and state.current() is None
    assert state.configured(a) == a  # the config starts one
    state.set(b)  # the admin API replaces it
    assert state.configured(a) == b  # a restart with the same config keeps b
    state.set(None)
    assert state.configured(a) is None  # stopped by the API, still stopped
    assert state.configured(spec("a", control=0.5, challenger=0.5)).weights()[0][1] == 0.5


@dataclass(frozen=True)
class Version:
    uri: str
    version: str


def test_reroute_loads_every_new_version_before_switching_and_reuses_the_others():
    loaded: list[tuple[str, int]] = []
    aliases = {"models:/m@champion": "models:/m/1", "models:/m@challenger": "models:/m/2"}

    async def resolve(target):
        if target not in aliases:
            raise LookupError(target)
        return aliases[target]

    async def prepare(uri, live):
        loaded.append((uri, live))
        return Version(uri, uri.rsplit("/", 1)[1])

    async def scenario():
        app = await reroute(None, {APP: "models:/m@champion"}, None, resolve, prepare)
        s = spec(control=0.5, challenger=0.5)
        follows = {APP: "models:/m@champion", "control": "models:/m@champion"}
        follows["challenger"] = "models:/m@challenger"
        exp = await reroute(app, follows, assigner(s), resolve, prepare)
        assert loaded == [("models:/m/1", 1), ("models:/m/2", 2)]  # v1 reused
        assert exp.changed == ("control", "challenger")
        served = {exp.route(u, None, "r")[0].version for u in USERS[:200]}
        assert served == {"1", "2"}
        for u in USERS[:200]:
            version, assigned = exp.route(u, None, "r")
            assert version.version == {"control": "1", "challenger": "2"}[assigned.variant]
        aliases["models:/m@challenger"] = "models:/m/3"  # the challenger's alias moves
        swapped = await reroute(exp, exp.follows, exp.assigner, resolve, prepare)
        assert swapped.changed == ("challenger",) and loaded[-1] == ("models:/m/3", 2)
        assert [v.version for v in swapped.live()] == ["1", "3"]
        with pytest.raises(LookupError):  # nothing switches when a target does not resolve
            await reroute(
                swapped, {**follows, "challenger": "models:/m@gone"}, None, resolve, prepare
            )
        counts = {"control": {"requests": 4, "users": 2, "impressions": 40, "events": {"click": 2}}}
        st = status(swapped, counts, "models:/m@champion")
        assert [(v.name, v.model_version, v.share, v.ctr) for v in st.variants] == [
            ("control", "1", 0.5, 0.05),
            ("challenger", "3", 0.5, None),
        ]
        assert status(app, {}, "models:/m@champion").experiment is None

    asyncio.run(scenario())


def test_version_cache_grows_and_shrinks_with_the_versions_served():
    cache = VersionCache(lambda uri: uri.upper(), size=2)
    for uri in ("a", "b", "c", "d"):
        cache.put(uri, uri)
    assert list(cache.loaded) == ["c", "d"]
    cache.resize(6)
    for uri in ("e", "f", "g"):
        cache.put(uri, uri)
    assert list(cache.loaded) == ["c", "d", "e", "f", "g"]
    cache.resize(2)
    assert list(cache.loaded) == ["f", "g"]


def test_routers_of_two_replicas_agree_through_the_log(tmp_path):
    """One replica's admin API starts an experiment; the other follows at its next sync;
    a restarted replica runs it; a configured experiment that cannot load stops the start,
    a stored one only says why."""
    aliases = {"models:/m@champion": "models:/m/1", "models:/m@challenger": "models:/m/2"}
    aliases |= {"models:/m@control": "models:/m/1"}
    switches = []

    async def resolve(target):
        if target not in aliases:
            raise LookupError(f"{target} does not resolve")
        return aliases[target]

    async def prepare(uri, live):
        return Version(uri, uri.rsplit("/", 1)[1])

    def router():
        log = ImpressionLog(tmp_path / "i.sqlite", tmp_path / "seg")
        return Router("models:/m@champion", resolve, prepare, log, lambda n, o: switches.append(n))

    async def scenario():
        one, two = router(), router()
        assert await one.start(None) is None and await two.start(None) is None
        assert one.routing.route("u1", None, "r")[1] is None  # no experiment: the app's
        s = spec(control=0.5, challenger=0.5)
        await one.run(s)
        assert one.spec == s and two.spec is None
        assert await two.sync() is True and two.spec == s
        users = [f"u{i}" for i in range(300)]
        assert [one.routing.route(u, None, "r")[1].variant for u in users] == [
            two.routing.route(u, None, "r")[1].variant for u in users
        ]
        restarted = router()
        assert await restarted.start(None) is None and restarted.spec == s
        await two.run(None)  # stopped through the other replica
        await one.sync()
        assert one.spec is None and one.routing.route("u1", None, "r")[1] is None
        broken = spec("broken", control=0.5, gone=0.5)
        with pytest.raises(LookupError, match="models:/m@gone does not resolve"):
            await router().start(broken)
        one.log.experiments._set(broken.model_dump_json(), None)
        problem = await router().start(None)
        assert "experiment 'broken' did not start" in problem
        await one.follow("models:/m@challenger")
        assert one.routing.arms[APP].version == "2" and one.target == "models:/m@challenger"

    asyncio.run(scenario())
