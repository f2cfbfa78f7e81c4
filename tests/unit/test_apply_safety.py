"""Issue #7, the pure and local parts of the apply path's safety: the circuit breaker, request
timeouts against a server that accepts connections and never answers, the retry budget, Events
that never hold up an apply, a dead local Lease holder, and one audit chain from two processes."""

from __future__ import annotations

import multiprocessing
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import cli
from agent.apply import EventPoster, ObjectResult
from agent.audit import AuditLog, verify
from agent.cluster import UNREACHABLE, Breaker, Cluster, ClusterError, Timeouts
from agent.cluster._lease import _dead_here
from agent.errors import AgentError
from agent.plan import change

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "model-repo"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_only_after_a_streak_that_lasts_and_closes_on_success() -> None:
    clock = Clock()
    breaker = Breaker(threshold=3, window=5.0, cooldown=30.0, clock=clock)
    for _ in range(5):  # many quick failures: a blink, not a dead server
        breaker.failure(clock.now, "refused")
    breaker.check("https://x")
    clock.now += 6  # the streak started 6 s ago: open
    breaker.failure(clock.now, "refused")
    assert breaker.is_open
    with pytest.raises(ClusterError, match=r"giving up on the API server at https://x: 6 requests in a row") as err:
        breaker.check("https://x")
    assert err.value.status == UNREACHABLE
    clock.now += 31  # cooldown over: one probe may go; its success closes the breaker
    breaker.check("https://x")
    breaker.success()
    assert not breaker.is_open
    breaker.check("https://x")


def test_breaker_needs_the_threshold_too() -> None:
    clock = Clock()
    breaker = Breaker(threshold=3, window=5.0, clock=clock)
    breaker.failure(clock.now - 60, "timed out")  # one slow failure is not a dead server
    assert not breaker.is_open
    breaker.success()
    breaker.failure(clock.now - 60, "timed out")
    breaker.failure(clock.now, "timed out")
    breaker.failure(clock.now, "timed out")
    assert breaker.is_open


def test_timeouts_from_flags_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_CONNECT_TIMEOUT", raising=False)
    monkeypatch.setenv("AGENT_REQUEST_TIMEOUT", "7.5")
    monkeypatch.delenv("AGENT_RETRY_BUDGET", raising=False)
    t = Timeouts.from_env(connect=None, read=None, budget=12)
    assert (t.connect, t.read, t.budget) == (5.0, 7.5, 12)
    monkeypatch.setenv("AGENT_CONNECT_TIMEOUT", "soon")
    with pytest.raises(AgentError, match="AGENT_CONNECT_TIMEOUT='soon' is not a number"):
        Timeouts.from_env()
    with pytest.raises(AgentError, match="must be positive"):
        Timeouts.from_env(connect=1, read=0)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts every connection and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: abc}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    return path


@pytest.mark.parametrize("command", ["diff", "apply", "status"])
def test_a_server_that_never_answers_is_a_clean_exit_2_naming_it(
        command: str, silent_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_CACHE_DIR", str(tmp_path / "cache"))
    kubeconfig = _kubeconfig(tmp_path, silent_server)
    code = cli.main([command, str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--request-timeout", "0.3",
                     "--connect-timeout", "0.3", "--retry-budget", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"API server at {silent_server}" in err
    assert "no answer within 0.3 s" in err or "giving up" in err
    assert "Traceback" not in err


def test_the_retry_budget_bounds_one_request(silent_server: str, tmp_path: Path) -> None:
    from kubernetes import client as k8s

    configuration = k8s.Configuration()
    configuration.host = silent_server
    configuration.retries = 0
    cluster = Cluster(k8s.ApiClient(configuration), retries=100, backoff=0.05,
                      timeouts=Timeouts(connect=0.2, read=0.2, budget=1.0),
                      breaker=Breaker(threshold=1000))  # the budget alone must stop it
    try:
        with pytest.raises(ClusterError) as err:
            cluster.request("GET", "/api/v1/namespaces")
        assert err.value.status == UNREACHABLE
        assert 2 <= cluster.requests["GET"] < 100  # retried, but within the budget, not 100 times
    finally:
        cluster.close()


def test_events_are_dropped_not_retried_once_the_server_is_gone(silent_server: str) -> None:
    from kubernetes import client as k8s

    configuration = k8s.Configuration()
    configuration.host = silent_server
    clock = Clock()
    breaker = Breaker(threshold=1, window=0, clock=clock)
    breaker.failure(clock.now, "refused")
    assert breaker.is_open
    cluster = Cluster(k8s.ApiClient(configuration), timeouts=Timeouts(0.2, 0.2, 1), breaker=breaker)
    try:
        poster = EventPoster(cluster, drain=1.0)
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}}
        for _ in range(50):
            poster.post(ObjectResult(change("create", None, obj), "failed", "boom"))
        poster.close()
        assert (poster.posted, poster.dropped) == (0, 50)
        assert cluster.requests["POST"] == 0  # not one request sent to a server known to be gone
    finally:
        cluster.close()


def test_a_lease_holder_that_died_on_this_host_holds_nothing() -> None:
    host = socket.gethostname()
    proc = multiprocessing.get_context("spawn").Process(target=int)
    proc.start()
    proc.join()
    assert _dead_here(f"modelops-agent@{host}/{proc.pid}")
    import os

    assert not _dead_here(f"modelops-agent@{host}/{os.getpid()}")  # alive
    assert not _dead_here(f"modelops-agent@another-host/{proc.pid}")  # cannot tell: wait it out
    assert not _dead_here("controller-7f9c")


def _append(path: str, who: str, n: int) -> None:
    log = AuditLog(path, who)
    for i in range(n):
        log.write("object", sync=i % 10 == 0, n=i)
    log.close()


def test_two_processes_appending_to_one_log_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append, args=(str(path), f"writer-{k}", 300)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    verdict = verify(path)
    assert verdict.ok, verdict.message
    assert verdict.records == 600


def test_a_torn_tail_left_by_a_killed_writer_is_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path, "a")
    first.write("object", n=1)
    second = AuditLog(path, "b")  # opened before the crash: it must notice the file changed
    with path.open("ab") as f:
        f.write(b'{"event": "object", "seq": 2, "tor')
    second.write("object", n=2)
    first.write("object", n=3)
    first.close()
    second.close()
    verdict = verify(path)
    assert verdict.ok and verdict.records == 3, verdict.message


def test_a_conflict_is_shown_in_every_output_format() -> None:
    from agent import output
    from agent.plan import build_plan

    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vision", "labels": {"modelops.dev/target": "b"}}}
    theirs = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vision", "labels": {"modelops.dev/target": "a"}}}
    c = change("update", theirs, obj, owner_conflict="team-a`|<b>")
    plan = build_plan([c])
    assert plan.conflicts == [c] and plan.has_changes
    assert "CONFLICT: owned by target 'team-a`|<b>'" in output.text(plan)
    assert output.as_dict(plan)["objects"][0]["ownerConflict"] == "team-a`|<b>"
    md = output.markdown(plan)
    assert "**Conflict:** <code>Namespace/vision</code> belongs to target <code>team-a&#96;&#124;&lt;b&gt;</code>" in md


def test_a_repo_may_not_render_the_agents_own_inventory_or_lease(tmp_path: Path) -> None:
    import shutil

    from agent.engine import Engine, EngineOptions, load_desired

    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    config = repo / "repo.yaml"
    config.write_text(config.read_text().replace("      - recsys\n", "      - recsys\n      - modelops-system\n", 1))
    (repo / "infra" / "sneaky.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: modelops-inventory-ml-platform, namespace: modelops-system}\n"
        "data: {objects: '[]'}\n")
    desired = load_desired(repo, cached=False)
    with pytest.raises(AgentError, match="ConfigMap/modelops-system/modelops-inventory-ml-platform, the agent's own state"):
        Engine(None, EngineOptions(rollout_traffic=False)).apply(desired)  # type: ignore[arg-type]  # refused before any request
