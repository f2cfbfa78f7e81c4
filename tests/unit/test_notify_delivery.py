"""The Notifier against local receivers (tests/_receiver.py): payload shapes (Slack mrkdwn
escaping, CloudEvents 1.0 structured mode), retries with back-off on 429/5xx and none on other
4xx, a full queue dropping and counting, a hanging receiver never delaying emit or another
target, close() draining and joining, secrets never in a log line or a metric label."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.controller import Metrics
from agent.notify import (
    Event,
    Notifier,
    TargetConfig,
    WebhookChannel,
    backoff,
    cloudevent,
    commit_status,
    event_type,
    slack_message,
    ui_link,
)
from tests._receiver import Receiver

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def receiver(made: list[Receiver], *statuses: int, hang: bool = False) -> Receiver:
    r = Receiver(statuses or (200,), hang=hang)
    made.append(r)
    return r


def target(kind: str, url: str, name: str = "t", **kw: object) -> TargetConfig:
    return TargetConfig(name, kind, url=url, **kw)  # type: ignore[arg-type]


def event(kind: str = "commit-applied", **kw: object) -> Event:
    fields: dict[str, object] = {"target": "models-prod", "commit": SHA, "message": "commit 0123456789ab applied"}
    fields.update(kw)
    return Event(kind, **fields)  # type: ignore[arg-type]


def counted(metrics: Metrics, result: str, name: str = "t") -> float:
    for line in metrics.exposition().decode().splitlines():
        if line.startswith("modelops_agent_notifications_total{") and f'target="{name}"' in line \
                and f'result="{result}"' in line:
            return float(line.rpartition(" ")[2])
    return 0.0


def wait(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_backoff_is_1_2_4_seconds_with_jitter_within_20_percent() -> None:
    rng = random.Random(7)
    for _ in range(200):
        waits = backoff((1.0, 2.0, 4.0), 0.2, rng)
        assert len(waits) == 3
        for got, base in zip(waits, (1.0, 2.0, 4.0), strict=True):
            assert base * 0.8 <= got <= base * 1.2
    assert len({round(backoff((1.0,), 0.2, rng)[0], 6) for _ in range(20)}) > 10  # spread, not in step


def test_cloudevent_is_structured_cloudevents_1_0() -> None:
    e = event("rollout-rolled-back", model="fraud/scorer", details={"traffic": 0, "bad": float("nan")},
              environment="prod", cluster="eu-1")
    doc = cloudevent(e)
    assert doc["specversion"] == "1.0" and doc["id"] == e.id
    assert doc["type"] == "dev.modelops.rollout.rolled-back" and event_type("commit-applied") == \
        "dev.modelops.commit.applied"
    assert doc["source"] == "/modelops-agent/models-prod" and doc["subject"] == "fraud/scorer"
    assert doc["datacontenttype"] == "application/json" and doc["time"].endswith("Z")
    assert doc["data"]["details"] == {"traffic": 0, "bad": None}  # non-finite numbers never pass
    assert doc["data"]["cluster"] == "eu-1" and doc["data"]["commit"] == SHA
    json.dumps(doc, allow_nan=False)
    assert cloudevent(event("commit-applied"))["subject"] == SHA


def test_slack_message_escapes_untrusted_text_and_links_the_ui() -> None:
    e = event("commit-applied", model="fraud/scorer", message="commit <img src=x onerror=alert(1)> & <!channel>",
              details={"author": "Eve <eve@example>"})
    doc = slack_message(e, "https://agent.example/")
    assert "<img" not in doc["text"] and "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;!channel&gt;" in doc["text"]
    context = doc["blocks"][1]["elements"][0]["text"]
    assert "Eve &lt;eve@example&gt;" in context
    assert "<https://agent.example/models/fraud/scorer?target=models-prod|open in the modelops UI>" in context
    assert ui_link(None, e) == "" and ui_link("https://a/", event()) == "https://a/"


def test_commit_status_states_contexts_and_one_line_descriptions() -> None:
    long = "applied " + "x" * 300 + "\nsecond line"
    assert commit_status(event("commit-pending"), None) == ("pending", "modelops/models-prod",
                                                            "commit 0123456789ab applied", "")
    state, context, description, link = commit_status(
        event("rollout-rolled-back", message=long, cluster="eu-1", environment="prod", model="ns/m"), "https://u")
    assert (state, context) == ("failure", "modelops/models-prod/eu-1")
    assert len(description) <= 140 and "\n" not in description
    assert link == "https://u/models/ns/m?target=models-prod&cluster=eu-1"
    assert commit_status(event("drift-detected"), None) is None
    assert commit_status(event("commit-applied", commit=""), None) is None


def test_slack_and_cloudevents_receivers_get_their_payloads(receivers: list[Receiver]) -> None:
    slack, bus = receiver(receivers), receiver(receivers)
    metrics = Metrics(process=False)
    notifier = Notifier([WebhookChannel(target("slack", slack.url, "slack"), None),
                         WebhookChannel(target("cloudevents", bus.url, "bus", headers={"X-Team": "ml"}), None)],
                        metrics)
    e = event()
    notifier.emit(e)
    wait(lambda: slack.received and bus.received)
    notifier.close(5)
    assert slack.received[0].headers["content-type"] == "application/json"
    assert slack.bodies()[0]["text"].startswith("✅ *commit applied* · models-prod: ")
    assert bus.received[0].headers["content-type"].startswith("application/cloudevents+json")
    assert bus.received[0].headers["x-team"] == "ml"
    assert bus.bodies()[0]["id"] == e.id
    assert counted(metrics, "sent", "slack") == 1 and counted(metrics, "sent", "bus") == 1


def test_429_and_5xx_are_retried_and_other_4xx_are_not(receivers: list[Receiver], caplog: pytest.LogCaptureFixture) -> None:
    flaky, refusing = receiver(receivers, 503, 429, 200), receiver(receivers, 400)
    metrics = Metrics(process=False)
    notifier = Notifier([WebhookChannel(target("cloudevents", flaky.url, "flaky"), None),
                         WebhookChannel(target("cloudevents", refusing.url, "refusing"), None)],
                        metrics, delays=(0.05, 0.1, 0.2))
    with caplog.at_level(logging.INFO, "modelops.notify"):
        notifier.emit(event())
        wait(lambda: counted(metrics, "sent", "flaky") == 1 and counted(metrics, "failed", "refusing") == 1)
    notifier.close(5)
    assert len(flaky.received) == 3 and len(refusing.received) == 1
    assert "refusing (cloudevents): commit-applied of models-prod not delivered after 1 try: HTTP 400: refused " \
           "with 400" in caplog.text


def test_a_429_retry_after_is_honoured(receivers: list[Receiver]) -> None:
    limited = Receiver((429, 200), retry_after="1")
    receivers.append(limited)
    metrics = Metrics(process=False)
    notifier = Notifier([WebhookChannel(target("slack", limited.url), None)], metrics, delays=(0.01,))
    notifier.emit(event())
    wait(lambda: counted(metrics, "sent") == 1)
    notifier.close(1)
    assert limited.received[1].at - limited.received[0].at >= 0.9  # not the 10 ms back-off


def test_no_thread_until_a_target_has_an_event() -> None:
    notifier = Notifier([WebhookChannel(target("slack", "http://127.0.0.1:9/", "idle"), None)], None)
    assert not any(t.name == "notify-idle" for t in threading.enumerate())
    notifier.emit(event())
    assert any(t.name == "notify-idle" for t in threading.enumerate())
    notifier.close(0)
    assert not any(t.name == "notify-idle" for t in threading.enumerate())


def test_a_full_queue_drops_and_counts(receivers: list[Receiver]) -> None:
    hanging = receiver(receivers, hang=True)
    metrics = Metrics(process=False)
    notifier = Notifier([WebhookChannel(target("slack", hanging.url, "slow"), None, timeout=2.0)], metrics,
                        queue_size=3, delays=())
    notifier.emit(event())
    wait(lambda: hanging.connections == 1)  # the first is in flight
    started = time.monotonic()
    for _ in range(9):
        notifier.emit(event())
    assert time.monotonic() - started < 0.5  # emit never waits on the receiver
    # one in flight, three queued, the other six dropped
    assert counted(metrics, "dropped", "slow") == 6
    assert "modelops_agent_notification_queue_depth{target=\"slow\"} 3.0" in metrics.exposition().decode()
    started = time.monotonic()
    notifier.close(0.5)
    assert time.monotonic() - started < 0.5 + 2.0 + 1.0  # the request under way ends by its timeout
    assert counted(metrics, "failed", "slow") == 1
    assert counted(metrics, "dropped", "slow") + counted(metrics, "failed", "slow") + \
        counted(metrics, "sent", "slow") == 10
    assert not any(t.name == "notify-slow" for t in threading.enumerate())


def test_a_hanging_receiver_does_not_delay_another_target(receivers: list[Receiver]) -> None:
    hanging, quick = receiver(receivers, hang=True), receiver(receivers)
    notifier = Notifier([WebhookChannel(target("slack", hanging.url, "hang"), None, timeout=3.0),
                         WebhookChannel(target("slack", quick.url, "quick"), None)], None, delays=())
    for i in range(5):
        notifier.emit(event(message=f"m{i}"))
    wait(lambda: len(quick.received) == 5, 2.0)
    notifier.close(0)


def test_a_token_in_a_webhook_url_is_never_logged_nor_a_label(receivers: list[Receiver], tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    secret = "T00000/B00000/XXXXsecretXXXXpathXXXX"
    refusing = receiver(receivers, 404)
    url = f"{refusing.url}/{secret}"
    metrics = Metrics(process=False)
    config = TargetConfig("team", "slack", url=url, secrets=(url,))
    notifier = Notifier([WebhookChannel(config, None)], metrics, delays=())
    with caplog.at_level(logging.DEBUG):
        notifier.emit(event())
        wait(lambda: counted(metrics, "failed", "team") == 1)
        notifier.close(1)
    assert refusing.received[0].path.endswith(secret)  # it was used...
    assert "HTTP 404" in caplog.text
    assert secret not in caplog.text and "secretXXXX" not in caplog.text  # ...and never shown
    assert secret not in metrics.exposition().decode()
    closed = Receiver()
    closed.close()
    dead = TargetConfig("dead", "cloudevents", url=f"{closed.url}?token=s3cretQueryToken",
                        headers={"Authorization": "Bearer hdr-s3cret-value"},
                        secrets=(f"{closed.url}?token=s3cretQueryToken", "Bearer hdr-s3cret-value"))
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        notifier = Notifier([WebhookChannel(dead, None)], metrics, delays=(0.01,))
        notifier.emit(event())
        wait(lambda: counted(metrics, "failed", "dead") == 1)
        notifier.close(1)
    assert "connection refused" in caplog.text
    assert "s3cret" not in caplog.text and "s3cret" not in metrics.exposition().decode()
