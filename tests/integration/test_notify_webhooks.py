"""Notifications from a real controller on the local control plane (issue #20, part 3): a
Slack-format and a CloudEvents receiver (local HTTP servers) get the documented payloads for
the commits it applies; a receiver that accepts and never answers does not slow a reconcile
(pass times measured with and without it, from the controller's own histogram), and what it
never got is counted (failed, dropped)."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from agent.cluster import Cluster
from agent.controller import Controller, RunConfig
from agent.errors import AgentError
from agent.notify import Event, open_notifier
from tests._receiver import Receiver
from tests.integration._repos import GIT, make_repo, model_path
from tests.integration.conftest import running, wait_until

pytestmark = pytest.mark.integration


class Remote:
    """A bare git remote of make_repo's repo, and a clone that pushes commits to it."""

    def __init__(self, root: Path, target: str, prefix: str) -> None:
        self.work = make_repo(root / "work", target, prefix, 3)
        self.prefix = prefix
        self.bare = root / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(self.work), str(self.bare)], check=True)
        subprocess.run(["git", "remote", "add", "origin", str(self.bare)], cwd=self.work, check=True)
        self.url = f"file://{self.bare}"

    def head(self) -> str:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.work, check=True, capture_output=True,
                              text=True).stdout.strip()

    def push_replicas(self, replicas: int, message: str) -> str:
        path = model_path(self.work, self.prefix, 0)
        docs = list(yaml.safe_load_all(path.read_text()))
        docs[0]["spec"].pop("autoscaling", None)
        docs[0]["spec"]["replicas"] = replicas
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        subprocess.run([*GIT, "commit", "-qam", message], cwd=self.work, check=True)
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=self.work, check=True, capture_output=True)
        return self.head()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def config(tmp_path: Path, kubeconfig: Path, remote: Remote, notify: Path | None) -> RunConfig:
    return RunConfig(repo=remote.url, interval=1.0, resync=600.0, kubeconfig=str(kubeconfig), http_addr=None,
                     cache_dir=tmp_path / f"mirrors-{remote.prefix}", audit_log=tmp_path / f"audit-{remote.prefix}.jsonl",
                     notify=str(notify) if notify else None, ui_url="https://agent.example/" if notify else None)


def applied_to(receiver: Receiver, sha: str) -> bool:
    return any(b.get("type") == "dev.modelops.commit.applied" and b.get("data", {}).get("commit") == sha
               for b in receiver.bodies())


def synced(controller: Controller, sha: str) -> bool:
    return f'modelops_agent_last_synced_commit_info{{commit="{sha}"}} 1.0' in controller.metrics.exposition().decode()


def passes(controller: Controller) -> tuple[int, float, int]:
    """(passes, their total seconds, passes of 2.5 s or less) from the reconcile histogram."""
    count = total = fast = 0.0
    for line in controller.metrics.exposition().decode().splitlines():
        series, _, value = line.rpartition(" ")
        if series.startswith("modelops_agent_reconcile_duration_seconds_count{"):
            count += float(value)
        elif series.startswith("modelops_agent_reconcile_duration_seconds_sum{"):
            total += float(value)
        elif series.startswith("modelops_agent_reconcile_duration_seconds_bucket{") and 'le="2.5"' in series:
            fast += float(value)
    return int(count), total, int(fast)


def notifications(controller: Controller, target: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in controller.metrics.exposition().decode().splitlines():
        if line.startswith("modelops_agent_notifications_total{") and f'target="{target}"' in line:
            result = line.split('result="', 1)[1].split('"', 1)[0]
            out[result] = int(float(line.rpartition(" ")[2]))
    return out


def workload(remote: Remote, controller: Controller, done: Any, commits: int = 3) -> list[str]:
    """The first commit and `commits` more, each pushed once the one before is applied."""
    shas = [remote.head()]
    wait_until(lambda: done(shas[-1]), "the first commit applied", 90)
    for i in range(commits):
        shas.append(remote.push_replicas(2 + i, f"replicas {2 + i}: <img src=x onerror=alert(1)> & co"))
        wait_until(lambda: done(shas[-1]), f"commit {i + 2} applied", 60)
    return shas


def test_slack_and_cloudevents_receivers_get_the_documented_payloads(
        tmp_path: Path, kubeconfig: Path, receivers: list[Receiver]) -> None:
    slack, bus = Receiver(), Receiver()
    receivers += [slack, bus]
    notify = tmp_path / "notify.yaml"
    (tmp_path / "slack-url").write_text(slack.url + "/T000/B000/s3cretHookPath\n")
    notify.write_text(yaml.safe_dump({"targets": [
        {"name": "team-slack", "type": "slack", "url": {"fromFile": str(tmp_path / "slack-url")},
         "events": ["commit-applied", "commit-pending"]},
        {"name": "bus", "type": "cloudevents", "url": bus.url, "headers": {"X-Bus-Token": {"fromEnv": "HOME"}}},
    ]}))
    remote = Remote(tmp_path / "repo", "notify-hooks", "nh")
    with running(config(tmp_path, kubeconfig, remote, notify)) as controller:
        shas = workload(remote, controller, lambda sha: applied_to(bus, sha), commits=1)
        wait_until(lambda: len(slack.received) >= 4, "the Slack messages", 30)
    events = bus.bodies()
    pending = [e for e in events if e["type"] == "dev.modelops.commit.pending"]
    applied = [e for e in events if e["type"] == "dev.modelops.commit.applied"]
    assert [e["data"]["commit"] for e in pending] == shas and [e["data"]["commit"] for e in applied] == shas
    last = applied[-1]
    assert last["specversion"] == "1.0" and last["source"] == "/modelops-agent/notify-hooks"
    assert last["subject"] == shas[-1] and last["datacontenttype"] == "application/json"
    assert datetime.datetime.fromisoformat(last["time"]).tzinfo is not None
    assert last["data"]["target"] == "notify-hooks" and last["data"]["details"]["applied"] >= 1
    assert last["data"]["details"]["title"] == "replicas 2: <img src=x onerror=alert(1)> & co"  # JSON: as written
    assert len({e["id"] for e in events}) == len(events)
    assert all(r.headers["content-type"].startswith("application/cloudevents+json") for r in bus.received)
    assert all(r.headers["x-bus-token"] == str(Path.home()) for r in bus.received)
    messages = slack.bodies()
    assert all(r.path == "/hook/T000/B000/s3cretHookPath" for r in slack.received)
    texts = [m["text"] for m in messages]
    assert any(t.startswith("⏳ *commit pending* · notify-hooks: commit " + shas[-1][:12]) for t in texts)
    assert any(t.startswith("✅ *commit applied* · notify-hooks: commit " + shas[-1][:12]) for t in texts)
    assert all(m["blocks"][0]["type"] == "section" and "<https://agent.example/|open in the modelops UI>"
               in m["blocks"][1]["elements"][0]["text"] for m in messages)
    assert notifications(controller, "team-slack")["sent"] == len(messages)


def test_a_receiver_that_hangs_does_not_slow_a_reconcile(
        tmp_path: Path, kubeconfig: Path, receivers: list[Receiver]) -> None:
    # the same workload (four commits) without notifications, then with a hanging receiver
    base_remote = Remote(tmp_path / "base", "notify-base", "nb")
    with running(config(tmp_path, kubeconfig, base_remote, None)) as controller:
        workload(base_remote, controller, lambda sha: synced(controller, sha))
        base = passes(controller)
    hanging, quick = Receiver(hang=True), Receiver()
    receivers += [hanging, quick]
    notify = tmp_path / "notify.yaml"
    notify.write_text(yaml.safe_dump({"targets": [{"name": "hangs", "type": "slack", "url": hanging.url},
                                                  {"name": "quick", "type": "cloudevents", "url": quick.url}]}))
    remote = Remote(tmp_path / "hang", "notify-hang", "nx")
    started = time.monotonic()
    with running(config(tmp_path, kubeconfig, remote, notify)) as controller:
        workload(remote, controller, lambda sha: applied_to(quick, sha))
        wait_until(lambda: hanging.connections >= 1, "the hanging receiver reached", 10)
        hung = passes(controller)
        expected = len(quick.received)  # every event went to both targets
    took = time.monotonic() - started
    counts = notifications(controller, "hangs")
    print(f"\npasses without notifications: {base[0]} in {base[1]:.2f} s (mean {base[1] / base[0] * 1000:.0f} ms); "
          f"with a hanging receiver: {hung[0]} in {hung[1]:.2f} s (mean {hung[1] / hung[0] * 1000:.0f} ms); "
          f"hanging target: {counts}; whole run {took:.1f} s")
    assert hung[2] == hung[0], "a pass took longer than 2.5 s (one request to the hanging receiver takes 5 s)"
    assert hung[1] / hung[0] <= base[1] / base[0] * 2 + 0.25  # the mean pass time stays in the normal bound
    assert counts.get("sent", 0) == 0 and counts.get("failed", 0) >= 1
    assert counts.get("failed", 0) + counts.get("dropped", 0) == expected  # every event it never got is counted
    assert notifications(controller, "quick")["sent"] == expected


def test_targets_from_a_secret_in_the_cluster(kubeconfig: Path, namespace: str, api_client: Any,
                                              receivers: list[Receiver]) -> None:
    """--notify secret:NS/NAME reads the key notify.yaml through the agent's own cluster client;
    a Secret missing or without that key stops the start with a message naming it."""
    bus = Receiver()
    receivers.append(bus)
    core = client.CoreV1Api(api_client)
    text = yaml.safe_dump({"targets": [{"name": "bus", "type": "cloudevents", "url": bus.url}]})
    core.create_namespaced_secret(namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="notify"),
                                                             string_data={"notify.yaml": text}))
    core.create_namespaced_secret(namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="other"),
                                                             string_data={"config": text}))
    with Cluster.connect(str(kubeconfig)) as cluster:
        sink = open_notifier(f"secret:{namespace}/notify", cluster=cluster, metrics=None, ui_url=None)
        try:
            sink.emit(Event("commit-applied", "t", commit="a" * 40, message="applied"))
            wait_until(lambda: bus.received, "the event from the Secret's target", 10)
        finally:
            sink.close(5)
        with pytest.raises(AgentError, match=f"Secret {namespace}/missing .notify.yaml.: not found"):
            open_notifier(f"secret:{namespace}/missing", cluster=cluster, metrics=None, ui_url=None)
        with pytest.raises(AgentError, match=f"Secret {namespace}/other .notify.yaml.: the Secret has no key"):
            open_notifier(f"secret:{namespace}/other", cluster=cluster, metrics=None, ui_url=None)
    assert bus.bodies()[0]["type"] == "dev.modelops.commit.applied"


def test_agent_run_with_a_bad_targets_file_stops_at_start(tmp_path: Path, kubeconfig: Path) -> None:
    """A targets file that does not check stops `agent run` before it does anything (exit 2),
    every problem named by file, line and field, nothing of a secret shown."""
    (tmp_path / "token").write_text("s3cret-forge-token\n")
    bad = tmp_path / "notify.yaml"
    bad.write_text(f"targets:\n  - name: a\n    type: teams\n  - name: c\n    type: commitStatus\n"
                   f"    token: {{fromFile: {tmp_path / 'token'}}}\n    events: [drift-healed]\n")
    remote = Remote(tmp_path / "repo", "notify-bad", "nbad")
    proc = subprocess.run([sys.executable, "-m", "agent", "run", "--repo", remote.url, "--kubeconfig", str(kubeconfig),
                           "--http-addr", "", "--cache-dir", str(tmp_path / "cache"), "--notify", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:3: targets[0].type: expected one of slack, cloudevents, commitStatus" in proc.stderr
    assert f"{bad}:7: targets[1].events[0]: \"drift-healed\" is not an event a commit status is set on" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
