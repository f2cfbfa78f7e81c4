"""The --notify targets file: every problem named by file, line and field before the agent
starts; secrets read from files and variables; the filters of a target; open_notifier's
refusals (a Secret without a cluster client, a commit status target off any forge)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import AgentError
from agent.notify import EVENT_KINDS, STATUS_STATES, NotifyConfigError, open_notifier, parse_config

GOOD = b"""\
uiUrl: https://agent.example/
targets:
  - name: team-slack
    type: slack
    url: {fromFile: SLACK}
    events: [commit-applied, rollout-rolled-back]
    models: [fraud-scorer, risk/other]
    targets: [models-production]
  - name: bus
    type: cloudevents
    url: http://receiver.example/events
    headers: {Authorization: {fromEnv: BUS_TOKEN}, X-Team: ml}
  - name: commits
    type: commitStatus
    forge: gitea
    repo: https://gitea.example/org/models
    token: {fromEnv: FORGE_TOKEN}
"""


def good(tmp_path: Path) -> bytes:
    (tmp_path / "slack").write_text("https://hooks.slack.example/services/T0/B0/s3cretPathPart\n")
    return GOOD.replace(b"SLACK", str(tmp_path / "slack").encode())


def test_a_full_file_reads_every_target_with_its_secrets_and_filters(tmp_path: Path) -> None:
    env = {"BUS_TOKEN": "Bearer bus-s3cret-token", "FORGE_TOKEN": "forge-s3cret-token"}
    config = parse_config("notify.yaml", good(tmp_path), env=env)
    assert config.ui_url == "https://agent.example/"
    slack, bus, commits = config.targets
    assert slack.url == "https://hooks.slack.example/services/T0/B0/s3cretPathPart"
    assert slack.secrets == (slack.url,)  # a URL read from a file is a secret: never shown
    assert slack.events == {"commit-applied", "rollout-rolled-back"}
    assert bus.headers == {"Authorization": "Bearer bus-s3cret-token", "X-Team": "ml"}
    assert bus.secrets == ("Bearer bus-s3cret-token",)  # the plain X-Team value is not a secret
    assert bus.events == set(EVENT_KINDS) and bus.models is None and bus.targets is None
    assert commits.forge == "gitea" and commits.token == "forge-s3cret-token"
    assert commits.events == set(STATUS_STATES)  # by default the events a status says something of
    assert "s3cret" not in repr(config)


def test_filters_by_event_model_and_agent_target(tmp_path: Path) -> None:
    env = {"BUS_TOKEN": "t", "FORGE_TOKEN": "f"}
    slack = parse_config("notify.yaml", good(tmp_path), env=env).targets[0]
    assert slack.wants("commit-applied", "fraud/fraud-scorer", "models-production")  # a bare name: any namespace
    assert slack.wants("rollout-rolled-back", "risk/other", "models-production")
    assert not slack.wants("rollout-rolled-back", "other/other", "models-production")  # namespace/name is exact
    assert not slack.wants("commit-pending", "fraud/fraud-scorer", "models-production")  # an event not listed
    assert not slack.wants("commit-applied", "fraud/fraud-scorer", "models-staging")  # another agent target
    assert slack.wants("commit-applied", "", "models-production")  # about no single model: passes a models filter


@pytest.mark.parametrize(("text", "expected"), [
    (b"targets: []\n", "notify.yaml:1: targets: expected a list of one or more targets"),
    (b"targets:\n  - name: a\n    type: teams\n    url: http://x/\n",
     "notify.yaml:3: targets[0].type: expected one of slack, cloudevents, commitStatus"),
    (b"targets:\n  - name: Bad Name\n    type: slack\n    url: http://x/\n",
     "notify.yaml:2: targets[0].name: expected a name of lower-case letters"),
    (b"targets:\n  - name: a\n    type: slack\n    url: http://x/\n    events: [commit-done]\n",
     "notify.yaml:5: targets[0].events[0]: \"commit-done\" is not a known event"),
    (b"targets:\n  - name: a\n    type: commitStatus\n    token: {fromEnv: T}\n    events: [drift-detected]\n",
     "notify.yaml:5: targets[0].events[0]: \"drift-detected\" is not an event a commit status is set on"),
    (b"targets:\n  - name: a\n    type: slack\n    url: ftp://x/\n",
     "notify.yaml:4: targets[0].url: \"ftp://x/\" is not an http(s) URL"),
    (b"targets:\n  - name: a\n    type: cloudevents\n    url: https://user:pw@x/\n",
     "notify.yaml:4: targets[0].url: a URL with credentials in it"),
    (b"targets:\n  - name: a\n    type: commitStatus\n    token: plain-token\n",
     "notify.yaml:4: targets[0].token: expected {fromFile: PATH} or {fromEnv: NAME} (a secret is never written"),
    (b"targets:\n  - name: a\n    type: commitStatus\n",
     "notify.yaml:2: targets[0].token: missing: the forge API token"),
    (b"targets:\n  - name: a\n    type: cloudevents\n    url: {fromEnv: NOT_SET_ANYWHERE}\n",
     "notify.yaml:4: targets[0].url.fromEnv: the environment variable NOT_SET_ANYWHERE is not set"),
    (b"targets:\n  - name: a\n    type: slack\n    url: http://x/\n    model: [x]\n",
     "notify.yaml:5: targets[0].model: unknown field for type slack"),
    (b"targets:\n  - name: a\n    type: slack\n    url: http://x/\n  - name: a\n    type: slack\n    url: http://y/\n",
     "notify.yaml:5: targets[1].name: the name a is used by an earlier target"),
    (b"targets:\n  - name: a\n    type: cloudevents\n    url: http://x/\n    headers: {Content-Type: text/plain}\n",
     "notify.yaml:5: targets[0].headers.Content-Type: not a header the agent may set"),
    (b"targets:\n  - name: a\n    type: slack\n    url: http://x/\n    models: [\"<b>\"]\n",
     "notify.yaml:5: targets[0].models[0]: \"<b>\" is not a model name or namespace/name"),
    (b"targets: [\n", "notify.yaml:2: (document): invalid YAML"),
    (b"targets:\n  - &a {name: a}\n  - *a\n", "notify.yaml:3: targets[1]: YAML aliases"),
])
def test_every_problem_names_file_line_and_field(text: bytes, expected: str) -> None:
    with pytest.raises(NotifyConfigError) as raised:
        parse_config("notify.yaml", text, env={"T": "x"})
    assert any(line.startswith(expected) for line in str(raised.value).splitlines()), str(raised.value)


def test_a_secret_file_problem_never_shows_its_content(tmp_path: Path) -> None:
    two = tmp_path / "two-lines"
    two.write_text("first-s3cret\nsecond-s3cret\n")
    text = f"targets:\n  - name: a\n    type: slack\n    url: {{fromFile: {two}}}\n".encode()
    with pytest.raises(NotifyConfigError) as raised:
        parse_config("n.yaml", text)
    assert str(raised.value).startswith(f"n.yaml:4: targets[0].url.fromFile: {two} is empty or holds more than one")
    assert "s3cret" not in str(raised.value)
    missing = f"targets:\n  - name: a\n    type: slack\n    url: {{fromFile: {tmp_path / 'nope'}}}\n".encode()
    with pytest.raises(NotifyConfigError, match=r"cannot read .*nope .no such file or directory."):
        parse_config("n.yaml", missing)
    plain_url = b"targets:\n  - name: a\n    type: slack\n    url: {fromEnv: U}\n"
    with pytest.raises(NotifyConfigError) as raised:
        parse_config("n.yaml", plain_url, env={"U": "not a url s3cret"})
    assert "the value read is not an http(s) URL" in str(raised.value) and "s3cret" not in str(raised.value)


def test_open_notifier_refusals(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="--notify secret:ns/n: a fleet reads its targets from a file"):
        open_notifier("secret:ns/n", cluster=None, metrics=None, ui_url=None)
    with pytest.raises(AgentError, match="expected secret:NAMESPACE/NAME"):
        open_notifier("secret:Bad/", cluster=None, metrics=None, ui_url=None)
    with pytest.raises(AgentError, match=r"--notify .*missing.yaml: cannot read it \(no such file or directory\)"):
        open_notifier(str(tmp_path / "missing.yaml"), cluster=None, metrics=None, ui_url=None)
    status = tmp_path / "status.yaml"
    status.write_text("targets:\n  - name: c\n    type: commitStatus\n    token: {fromEnv: HOME}\n")
    with pytest.raises(AgentError, match=r"target c .commitStatus.: name the forge repository"):
        open_notifier(str(status), cluster=None, metrics=None, ui_url=None, repo="file:///tmp/repo.git")
    with pytest.raises(AgentError, match="cannot tell which forge"):
        open_notifier(str(status), cluster=None, metrics=None, ui_url=None, repo="https://git.example/o/r.git")
    hook = tmp_path / "hook.yaml"
    hook.write_text("targets:\n  - name: h\n    type: slack\n    url: http://127.0.0.1:9/\n")
    with pytest.raises(AgentError, match="--ui-url: 'ftp://x' is not an http"):
        open_notifier(str(hook), cluster=None, metrics=None, ui_url="ftp://x")
    sink = open_notifier(str(hook), cluster=None, metrics=None, ui_url="https://agent.example")
    sink.close(0)


def test_the_example_file_reads(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "notify.yaml"
    (tmp_path / "slack-url").write_text("https://hooks.slack.example/services/T/B/x\n")
    (tmp_path / "forge-token").write_text("t0ken\n")
    text = example.read_bytes().replace(b"/var/run/secrets/notify/", f"{tmp_path}/".encode())
    config = parse_config("notify.yaml", text, env={"FRAUD_SLACK_URL": "https://hooks.slack.example/f",
                                                    "BUS_TOKEN": "Bearer b"})
    assert [t.type for t in config.targets] == ["slack", "slack", "cloudevents", "commitStatus"]
