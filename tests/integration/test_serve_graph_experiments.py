"""Champion/challenger experiments in the real graph over HTTP, on the server shared with
test_serve_graph.py (tests/integration/conftest.py; this module runs after it): sticky
variants, answers that name their request, variant and version, attributed feedback, no
mixed versions under load while one arm swaps, live weight changes, and simulated users
through jobs/simulate_traffic.py, then the report and the promotion jobs. That answers and
attributed clicks survive a killed ingress is checked in test_serve_graph.py's kill test."""

import json
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from llmrec.api.errors import ErrorBody
from llmrec.api.experiment import ExperimentSpec
from llmrec.config import RegistryConfig
from llmrec.experiments.assignment import Assigner, allocate
from llmrec.experiments.impressions import ImpressionLog
from llmrec.registry import aliases, runs
from llmrec.registry.bundle import ModelBundle

from tests.integration.conftest import SERVE_TOKEN
from tests.integration.test_serve_graph import _expected

pytestmark = pytest.mark.slow
TOKEN = SERVE_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MODEL = "exp-test"
SPEC = {
    "name": "t1",
    "variants": [
        {"name": "control", "model_uri": f"models:/{MODEL}@champion", "weight": 0.5},
        {"name": "challenger", "model_uri": f"models:/{MODEL}@challenger", "weight": 0.5},
    ],
}


def _rescaled(bundle: ModelBundle, out: Path, seed: int) -> Path:
    """Another model: the item vectors rescaled item by item (users move too), with hybrid
    weights that give the model's term its say (validation may pick the CF model alone)."""
    shutil.copytree(bundle.path, out)
    scale = np.random.default_rng(seed).uniform(0.2, 3.0, size=(len(bundle.catalogue), 1))
    emb = (bundle.item_embeddings * scale).astype(np.float32)
    items = pq.read_table(out / "items.parquet")
    column = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    items = items.set_column(items.schema.get_field_index("embedding"), "embedding", column)
    pq.write_table(items, out / "items.parquet")
    weights = out / "hybrid" / "weights.json"
    meta = json.loads(weights.read_text())
    meta["weights"] = meta["request_weights"] = {"llm": 1.0, "cf": 0.25, "popularity": 0.0}
    weights.write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def exp(server):
    """Three versions of another model (1: the champion's bundle, 2 and 3: rescaled), the
    experiment started through PUT /admin/experiment; stopped at the end."""
    root = server["root"] / "experiments"
    mlflow.set_tracking_uri(server["trained"]["tracking_uri"])
    bundle = server["bundle"]
    cfg = RegistryConfig(tracking_uri=server["trained"]["tracking_uri"], model_name=MODEL)
    common = dict(params={}, history=[], metrics={}, model_card="card", tags={})
    dirs = [bundle.path, _rescaled(bundle, root / "v2", 1), _rescaled(bundle, root / "v3", 2)]
    for n, d in enumerate(dirs, start=1):
        runs.log_and_register(cfg, run_name=f"v{n}", bundle_dir=d, **common)
    aliases.set_champion(MODEL, "1")
    mlflow.MlflowClient().set_registered_model_alias(MODEL, "challenger", "2")
    url = server["url"]
    r = requests.put(f"{url}/admin/experiment", json=SPEC, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    yield {
        "url": url,
        "bundle": bundle,
        "dirs": dirs,
        "trained": server["trained"],
        "state": server["root"] / "impressions.sqlite",
        "segments": server["root"] / "impressions",
    }
    requests.delete(f"{url}/admin/experiment", headers=AUTH, timeout=120)


def post(exp, body, path="/recommend", **kw):
    return requests.post(f"{exp['url']}{path}", json=body, timeout=60, **kw)


def status(exp):
    r = requests.get(f"{exp['url']}/admin/experiment", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_answers_name_request_variant_and_version_and_users_stay_in_their_variant(exp):
    ids = list(exp["bundle"].catalogue.ids)
    local = ExperimentSpec.model_validate(SPEC)
    assigner = Assigner(local, allocate(local.weights()))  # what any process computes
    seen, request_ids, shown = {}, set(), {"control": 0, "challenger": 0}

    def ask(body):
        r = post(exp, body)
        assert r.status_code == 200, r.text
        answer = r.json()
        request_ids.add(answer["request_id"])
        shown[answer["variant"]] += len(answer["items"])
        return answer

    for s in range(30):
        for _ in range(2):
            body = ask({"history": ids[s : s + 3], "session_id": f"s{s}", "k": 5})
            seen.setdefault(f"s{s}", set()).add((body["variant"], body["model_version"]))
    for session, pairs in seen.items():
        assert len(pairs) == 1, (session, pairs)  # sticky
        ((variant, version),) = pairs
        assert variant == assigner.assign(None, session, "r").variant
        assert version == {"control": "1", "challenger": "2"}[variant]
    assert {v for pairs in seen.values() for v, _ in pairs} == {"control", "challenger"}
    user = next(iter(exp["bundle"].histories))
    known = {ask({"user_id": user, "k": 3})["variant"] for _ in range(3)}
    assert known == {assigner.assign(user, None, "r").variant}
    no_ids = [ask({"query": "dragons", "k": 3})["variant"] for _ in range(20)]
    assert set(no_ids) <= {"control", "challenger"}  # assigned per request
    assert len(request_ids) == 83  # every answer its own id
    st = status(exp)
    assert st["experiment"] == "t1" and st["control"] == "control"
    by = {v["name"]: v for v in st["variants"]}
    assert by["control"]["share"] == by["challenger"]["share"] == 0.5
    assert by["challenger"]["follows"] == f"models:/{MODEL}@challenger"
    assert by["control"]["requests"] + by["challenger"]["requests"] == 83
    assert {n: v["impressions"] for n, v in by.items()} == shown
    assert by["control"]["users"] + by["challenger"]["users"] == 30 + 1 + 20


def test_feedback_naming_a_request_is_attributed_to_its_answer(exp):
    ids = list(exp["bundle"].catalogue.ids)
    before = {v["name"]: v for v in status(exp)["variants"]}
    body = post(exp, {"history": ids[40:43], "session_id": "clicker", "k": 5}).json()
    third = body["items"][2]["item_id"]
    event = {"user_id": "clicker", "item_id": third, "request_id": body["request_id"]}
    r = post(exp, event, "/feedback", headers=AUTH)
    assert r.status_code == 200 and r.json()["attributed"] == 1, r.text
    after = {v["name"]: v for v in status(exp)["variants"]}
    v = body["variant"]
    assert after[v]["events"].get("click", 0) == before[v]["events"].get("click", 0) + 1
    r = post(exp, {**event, "request_id": "f" * 32}, "/feedback", headers=AUTH)
    assert r.status_code == 404
    (error,) = ErrorBody.model_validate(r.json()).detail
    assert error.loc == ["body", "request_id"] and "unknown request_id" in error.msg
    user = next(iter(exp["bundle"].histories))
    mine = post(exp, {"user_id": user, "k": 3}).json()
    r = post(exp, {**event, "request_id": mine["request_id"]}, "/feedback", headers=AUTH)
    assert r.status_code == 422 and f"answered user_id {user!r}, not 'clicker'" in r.text
    assert requests.get(f"{exp['url']}/admin/experiment", timeout=30).status_code == 401


def test_exploration_slots_are_marked_in_the_answer_and_in_the_log(exp):
    """``"explore": 0.2`` of a 10-item list: two items of the model's wider list, marked
    ``"explore": true`` in the lower half; the log names their positions, a click on one
    counts as the item's evidence, and a negative share is a 422 naming the field."""
    ids = list(exp["bundle"].catalogue.ids)
    body = {"history": ids[50:53], "session_id": "explorer", "k": 10}
    plain = post(exp, body).json()
    assert not any("explore" in i for i in plain["items"])
    r = post(exp, {**body, "explore": 0.2})
    assert r.status_code == 200, r.text
    answer = r.json()
    marked = [p for p, i in enumerate(answer["items"], 1) if i.get("explore") is True]
    assert len(answer["items"]) == 10 and len({i["item_id"] for i in answer["items"]}) == 10
    assert len(marked) == 2 and all(p > 5 for p in marked)
    rid = answer["request_id"]
    log = ImpressionLog(exp["state"], exp["segments"])
    assert log.lookup([rid])[rid].explored == tuple(marked)
    explored = answer["items"][marked[0] - 1]["item_id"]
    before = log.evidence([explored]).clicks[0]
    event = {"user_id": "explorer", "item_id": explored, "request_id": rid}
    assert post(exp, event, "/feedback", headers=AUTH).json()["attributed"] == 1
    assert log.evidence([explored]).clicks[0] == before + 1
    r = post(exp, {**body, "explore": -0.5})
    assert r.status_code == 422
    (error,) = ErrorBody.model_validate(r.json()).detail
    assert error.loc == ["body", "explore"] and "greater than or equal to 0" in error.msg


def test_simulated_users_then_the_report_and_the_gate(exp, capsys):
    """jobs/simulate_traffic.py over HTTP (users of the demo data with known futures), then
    jobs/experiment_report.py and jobs/promote.py --experiment on the server's log."""
    import experiment_report
    import promote
    import simulate_traffic

    overrides = [a for o in exp["trained"]["overrides"] for a in ("--set", o)]
    sim = ["--url", exp["url"], "--token", TOKEN, "--users", "20", "--concurrency", "4"]
    assert simulate_traffic.main([*overrides, *sim]) == 0
    out = capsys.readouterr().out
    assert "20 simulated users" in out and "0 users failed" in out
    log = [
        "--experiment",
        "t1",
        "--state",
        str(exp["state"]),
        "--impressions",
        str(exp["segments"]),
    ]
    assert experiment_report.main([*overrides, *log, "--bootstrap", "200"]) == 0
    report = capsys.readouterr().out
    assert "| variant | versions | users | requests | impressions |" in report
    assert "challenger vs control: CTR" in report and "logged to MLflow run" in report
    mlflow.set_tracking_uri(exp["trained"]["tracking_uri"])
    (run,) = mlflow.search_runs(
        experiment_names=["llmrec-online"],
        filter_string="tags.`llmrec.experiment` = 't1'",
        output_format="list",
    )
    assert run.data.tags["llmrec.control_version"] == "1"
    assert run.data.tags["llmrec.challenger_version"] == "2"
    metrics = run.data.metrics
    assert metrics["control/requests"] + metrics["challenger/requests"] >= 40
    assert promote.main([*overrides, "--set", f"registry.model_name={MODEL}", *log]) == 0
    gate = capsys.readouterr().out
    decision = report.split("challenger vs control: CTR")[1].splitlines()[0]
    if "is BETTER" in decision:
        assert "becomes champion" in gate and aliases.current_champion(MODEL) == "2"
        aliases.set_champion(MODEL, "1")  # the next tests expect the control on version 1
    else:
        assert "no significant win, champion unchanged" in gate
        assert aliases.current_champion(MODEL) == "1"


def test_no_mixed_versions_with_two_variants_under_load_and_a_swap_of_one_arm(exp):
    ids = list(exp["bundle"].catalogue.ids)
    request = {"history": ids[10:14], "k": 10}
    expected = {str(n): _expected(d, request) for n, d in enumerate(exp["dirs"], start=1)}
    assert len({tuple(v) for v in expected.values()}) == 3
    results, stop = [], threading.Event()

    def hammer(worker):
        n = 0
        while not stop.is_set():
            session = f"load-{worker}-{n % 8}"
            n += 1
            sent = time.monotonic()
            try:
                r = post(exp, {**request, "session_id": session})
                b = r.json()
                items = [i["item_id"] for i in b.get("items", [])]
                row = (r.status_code, session, b.get("variant"), b.get("model_version"), items)
            except Exception as exc:
                row = (599, session, None, None, [repr(exc)])
            results.append((*row, sent, time.monotonic()))

    deadline = time.time() + 30  # the control follows @champion: version 1
    while time.time() < deadline and status(exp)["variants"][0]["model_version"] != "1":
        time.sleep(0.5)
    with ThreadPoolExecutor(4) as pool:
        for w in range(4):
            pool.submit(hammer, w)
        try:
            time.sleep(1)
            mlflow.set_tracking_uri(exp["trained"]["tracking_uri"])
            mlflow.MlflowClient().set_registered_model_alias(MODEL, "challenger", "3")
            reload = requests.post(f"{exp['url']}/admin/reload", headers=AUTH, timeout=120)
            assert reload.status_code == 200, reload.text  # the server has no alias watcher
            deadline = time.time() + 60
            while time.time() < deadline and not any(r[3] == "3" for r in results):
                time.sleep(0.2)
            time.sleep(1)
        finally:
            stop.set()
    statuses = [r[0] for r in results]
    print(f"swap of one arm under load: {len(results)} requests, {statuses.count(200)} ok")
    assert statuses.count(200) == len(results), [r for r in results if r[0] != 200][:3]
    for _, _, variant, version, items, _, _ in results:
        assert items == expected[version]  # computed end to end by the version it names
        assert version == "1" if variant == "control" else version in {"2", "3"}
    variants = {}
    for _, session, variant, *_ in results:
        variants.setdefault(session, set()).add(variant)
    assert all(len(v) == 1 for v in variants.values())  # sticky through the swap
    challenger = [r for r in results if r[2] == "challenger"]
    assert {r[3] for r in challenger} == {"2", "3"}
    switched = min(r[6] for r in challenger if r[3] == "3")  # the first v3 answer received
    assert all(r[3] == "3" for r in challenger if r[5] > switched)  # never back


def test_weights_change_live_and_move_only_the_users_they_must(exp):
    sessions = [f"w{s}" for s in range(80)]
    ids = list(exp["bundle"].catalogue.ids)

    def variants():
        return [
            post(exp, {"history": ids[:2], "session_id": s, "k": 2}).json()["variant"]
            for s in sessions
        ]

    before = variants()
    ramp = {
        **SPEC,
        "variants": [
            {**SPEC["variants"][0], "weight": 0.8},
            {**SPEC["variants"][1], "weight": 0.2},
        ],
    }
    r = requests.put(f"{exp['url']}/admin/experiment", json=ramp, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    assert [v["share"] for v in r.json()["variants"]] == [0.8, 0.2]
    after = variants()
    moves = {(b, a) for b, a in zip(before, after, strict=True) if b != a}
    assert moves <= {("challenger", "control")} and before.count("challenger") > 20
    assert after.count("challenger") < before.count("challenger")
    bad = {
        **SPEC,
        "variants": [
            SPEC["variants"][0],
            {**SPEC["variants"][1], "model_uri": f"models:/{MODEL}@nope"},
        ],
    }
    r = requests.put(f"{exp['url']}/admin/experiment", json=bad, headers=AUTH, timeout=60)
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == [
        "body",
        "variants",
        1,
        "model_uri",
    ]
    assert status(exp)["variants"][0]["weight"] == 0.8  # unchanged
    r = requests.delete(f"{exp['url']}/admin/experiment", headers=AUTH, timeout=60)
    assert r.status_code == 200 and r.json()["experiment"] is None
    body = post(exp, {"history": ids[:2], "session_id": "w1", "k": 2}).json()
    app = requests.get(f"{exp['url']}/healthz", timeout=30).json()["model_version"]
    assert body.get("variant") is None and body["model_version"] == app
