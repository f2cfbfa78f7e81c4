"""`agent promote` on a Model whose traffic is left to `spec.rollout` (`canary: {version: "2"}`
with no traffic, the style docs/rollouts.md recommends): `--canary V` alone starts or changes
the canary (the steps decide its traffic), `--traffic PCT` writes the `traffic:` line in when
it is absent, and every form keeps every other byte (comments, quoting, block and flow styles,
CRLF). Without a rollout, `--canary V` alone is refused, saying why.

Golden edits for the new insertions, then every promote form on every style, with and without
`traffic:` and `spec.rollout`, then the command on a git repository made from the example."""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import cli
from agent.promotion import Change, PromoteError, edit_model_document

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "model-repo"
MODEL = "teams/fraud/models/fraud-scorer.yaml"

# --- golden edits --------------------------------------------------------------------------------

HEAD = """\
# The scorer. Comments, quoting and order stay as written.
apiVersion: modelops.dev/v1alpha1
kind: Model
metadata:
  name: scorer   # trailing comment
"""
BLOCK_SPEC = """\
spec:
  format: sklearn
  versions:
    - {version: "1", uri: s3://b/1/}
    - {version: "2", uri: s3://b/2/}   # the new one
    - {version: "3", uri: s3://b/3/}
  stable: "1"   # what serves
"""
ROLLOUT = """\
  rollout:
    strategy: canary
    steps: [10, 50, 100]   # the steps
  replicas: 2
"""


def test_golden_canary_alone_under_a_rollout_inserts_a_canary_without_traffic() -> None:
    before = HEAD + BLOCK_SPEC + ROLLOUT
    after = HEAD + BLOCK_SPEC + '  canary:\n    version: "2"\n' + ROLLOUT
    assert edit_model_document(before, 0, Change("canary", "2")) == after


def test_golden_traffic_is_written_in_after_the_canary_s_last_line() -> None:
    canary = '  canary:\n    # under test\n    version: "2"   # the version\n'
    before = HEAD + BLOCK_SPEC + canary + ROLLOUT
    assert edit_model_document(before, 0, Change("traffic", traffic=25)) == (
        HEAD + BLOCK_SPEC + canary + "    traffic: 25\n" + ROLLOUT)
    # --canary V --traffic P: the version replaced in place, the traffic written in
    assert edit_model_document(before, 0, Change("canary", "3", 25)) == (
        HEAD + BLOCK_SPEC + canary.replace('"2"', '"3"') + "    traffic: 25\n" + ROLLOUT)
    # --canary V alone changes the version only
    assert edit_model_document(before, 0, Change("canary", "3")) == HEAD + BLOCK_SPEC + canary.replace(
        '"2"', '"3"') + ROLLOUT


def test_golden_flow_canary_in_a_block_spec() -> None:
    before = HEAD + BLOCK_SPEC + '  canary: {version: "2"}   # under test\n' + ROLLOUT
    assert edit_model_document(before, 0, Change("traffic", traffic=25)) == before.replace(
        '{version: "2"}', '{version: "2", traffic: 25}')
    assert edit_model_document(before, 0, Change("canary", "3", 5)) == before.replace(
        '{version: "2"}', '{version: "3", traffic: 5}')
    empty = before.replace('{version: "2"}', "{}")
    assert edit_model_document(empty, 0, Change("canary", "3")) == before.replace('{version: "2"}', '{version: "3"}')


FLOW = ('# one line\napiVersion: modelops.dev/v1alpha1\nkind: Model\nmetadata: {name: scorer}\n'
        'spec: {format: sklearn, versions: [{version: "1", uri: a}, {version: "2", uri: b}], stable: "1",%s '
        'rollout: {strategy: canary, steps: [10, 100]}, replicas: 1}   # all of it\n'
        '---\n# another document\nkind: Other\n')


def test_golden_flow_spec() -> None:
    bare = FLOW % ""
    assert edit_model_document(bare, 0, Change("canary", "2")) == FLOW % ' canary: {version: "2"},'
    with_canary = FLOW % ' canary: {version: "2"},'
    assert edit_model_document(with_canary, 0, Change("traffic", traffic=50)) == (
        FLOW % ' canary: {version: "2", traffic: 50},')
    assert edit_model_document(with_canary, 0, Change("stable")) == FLOW.replace('stable: "1",%s', 'stable: "2",')
    assert edit_model_document(with_canary, 0, Change("rollback")) == bare


def test_golden_crlf_and_no_newline_at_the_end() -> None:
    before = (HEAD + BLOCK_SPEC + ROLLOUT + '  canary:\n    version: "2"').replace("\n", "\r\n")
    assert edit_model_document(before, 0, Change("traffic", traffic=30)) == before + "\r\n    traffic: 30"
    bare = (HEAD + BLOCK_SPEC + ROLLOUT).replace("\n", "\r\n")
    assert edit_model_document(bare, 0, Change("canary", "2")) == bare.replace(
        '  stable: "1"   # what serves\r\n', '  stable: "1"   # what serves\r\n  canary:\r\n    version: "2"\r\n')


def test_canary_alone_without_a_rollout_says_why_it_needs_traffic() -> None:
    text = HEAD + BLOCK_SPEC + '  canary: {version: "2", traffic: 10}\n  replicas: 2\n'
    with pytest.raises(PromoteError, match=r"--canary 3 needs --traffic PCT .*: no spec.rollout decides the traffic"):
        edit_model_document(text, 0, Change("canary", "3"))


# --- every form on every style -------------------------------------------------------------------

STYLES = ("block", "flow-canary", "flow-spec")


def model_text(style: str, canary: str | None, traffic: int | None, rollout: bool, nl: str = "\n") -> str:
    """A Model in one of three styles; comments everywhere the edit must keep them."""
    fields = ([f'version: "{canary}"'] if canary else []) + ([f"traffic: {traffic}"] if traffic is not None else [])
    if style == "flow-spec":
        parts = ['format: sklearn', 'versions: [{version: "1", uri: a}, {version: "2", uri: b}, {version: "3", uri: c}]',
                 'stable: "1"']
        if canary:
            parts.append(f"canary: {{{', '.join(fields)}}}")
        if rollout:
            parts.append("rollout: {strategy: canary, steps: [10, 50, 100]}")
        parts.append("replicas: 2")
        lines = ["# a flow spec", "apiVersion: modelops.dev/v1alpha1", "kind: Model", "metadata: {name: scorer}",
                 f"spec: {{{', '.join(parts)}}}   # the spec"]
    else:
        lines = HEAD.splitlines() + BLOCK_SPEC.splitlines()
        if canary and style == "block":
            lines += ["  canary:", "    # under test", f'    version: "{canary}"   # the version']
            lines += [f"    traffic: {traffic}   # percent"] if traffic is not None else []
        elif canary:
            lines.append(f"  canary: {{{', '.join(fields)}}}   # under test")
        if rollout:
            lines += ["  rollout:", "    strategy: canary", "    steps: [10, 50, 100]   # the steps"]
        lines += ["  # the size", "  replicas: 2"]
    return nl.join([*lines, "---", "# the next document", "kind: Other", ""])


def expected_spec(text: str, change: Change) -> dict[str, Any]:
    spec = dict(next(iter(yaml.safe_load_all(text)))["spec"])
    if change.action in ("canary", "traffic"):
        canary = dict(spec.get("canary") or {})
        if change.version is not None:
            canary["version"] = change.version
        if change.traffic is not None:
            canary["traffic"] = change.traffic
        spec["canary"] = canary
    else:
        if change.action == "stable":
            spec["stable"] = spec["canary"]["version"]
        del spec["canary"]
    return spec


FORMS = [Change("canary", "3", 25), Change("canary", "3"), Change("canary", "2"), Change("traffic", traffic=25),
         Change("stable"), Change("rollback")]
CANARY_COMMENTS = ("# under test", "# the version", "# percent")


@pytest.mark.parametrize("nl", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("rollout", [True, False], ids=["rollout", "no-rollout"])
@pytest.mark.parametrize(("canary", "traffic"), [("2", 10), ("2", None), (None, None)],
                         ids=["traffic", "no-traffic", "no-canary"])
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("change", FORMS, ids=lambda c: f"{c.action}-{c.version}-{c.traffic}")
def test_every_form_on_every_style(change: Change, style: str, canary: str | None, traffic: int | None,
                                   rollout: bool, nl: str) -> None:
    before = model_text(style, canary, traffic, rollout, nl)
    if canary is None and change.action != "canary":
        with pytest.raises(PromoteError, match="has no canary"):
            edit_model_document(before, 0, change)
        return
    if change.action == "canary" and change.traffic is None and not rollout:
        with pytest.raises(PromoteError, match=r"no spec\.rollout decides the traffic"):
            edit_model_document(before, 0, change)
        return
    after = edit_model_document(before, 0, change)
    assert next(iter(yaml.safe_load_all(after)))["spec"] == expected_spec(before, change)
    assert list(yaml.safe_load_all(after))[1:] == list(yaml.safe_load_all(before))[1:]
    if nl == "\r\n":
        assert "\n" not in after.replace("\r\n", "")
    removed = change.action in ("stable", "rollback")
    for comment in re.findall(r"#[^\r\n]*", before):
        if not (removed and comment.strip() in CANARY_COMMENTS):
            assert after.count(comment) == before.count(comment), comment
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith(("- ", "+ ")):  # only the spec's canary and stable lines change
            assert re.search(r"canary|version|traffic|stable|under test|spec:", line), line
    # the edit is idempotent: made again, nothing changes
    if change.action in ("canary", "traffic"):
        assert edit_model_document(after, 0, change) == after


# --- the command on a git repository -------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60).stdout


def make_repo(tmp_path: Path, canary: str | None) -> Path:
    """The example repo, committed, with fraud-scorer's canary block replaced by `canary` (text)
    and a canary rollout (None: the example as it is, no rollout)."""
    root = tmp_path / "model-repo"
    shutil.copytree(EXAMPLE, root)
    path = root / MODEL
    text = path.read_text()
    block = '  canary:\n    version: "13"\n    traffic: 10   # percent of requests; the stable version takes the rest\n'
    assert block in text
    if canary is not None:
        path.write_text(text.replace(block, canary + "  rollout:\n    strategy: canary\n    steps: [10, 50, 100]\n"))
    git(root, "init", "-q", "-b", "main")
    for key, value in (("user.name", "Model Ops Test"), ("user.email", "test@modelops.invalid"),
                       ("commit.gpgsign", "false")):
        git(root, "config", key, value)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "model repo")
    return root


CANARY_BLOCK = '  canary:\n    version: "13"\n'
CANARY_FLOW = '  canary: {version: "13"}   # the steps decide\n'


@pytest.mark.parametrize(("canary", "args", "expected"), [
    # the commands of the report: a crash, a refusal, a refusal
    (CANARY_BLOCK, ["--canary", "13", "--traffic", "10"], '  canary:\n    version: "13"\n    traffic: 10\n'),
    (CANARY_BLOCK, ["--traffic", "25"], '  canary:\n    version: "13"\n    traffic: 25\n'),
    (CANARY_FLOW, ["--traffic", "25"], '  canary: {version: "13", traffic: 25}   # the steps decide\n'),
    ("", ["--canary", "13"], '  stable: "12"\n  canary:\n    version: "13"\n  rollout:'),
    (CANARY_FLOW, ["--stable"], '  stable: "13"\n  rollout:'),
    (CANARY_BLOCK, ["--rollback"], '  stable: "12"\n  rollout:'),
])
def test_promote_under_a_rollout(tmp_path: Path, capsys: pytest.CaptureFixture[str], canary: str, args: list[str],
                                 expected: str) -> None:
    repo = make_repo(tmp_path, canary)
    content = (repo / MODEL).read_bytes()
    assert cli.main(["promote", "fraud-scorer", str(repo), *args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing written" in out and "internal error" not in out
    assert (repo / MODEL).read_bytes() == content
    assert cli.main(["promote", "fraud-scorer", str(repo), *args, "--commit"]) == 0
    assert expected in (repo / MODEL).read_text()
    assert "fraud/fraud-scorer:" in capsys.readouterr().out
    assert git(repo, "status", "--porcelain") == ""
    assert cli.main(["validate", str(repo)]) == 0


def test_canary_alone_commit_message_names_the_rollout(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, "")
    assert cli.main(["promote", "fraud-scorer", str(repo), "--canary", "13", "--commit"]) == 0
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("promote fraud/fraud-scorer: canary 13, its traffic decided by spec.rollout\n")
    assert "To-Version: 13\nTraffic: 10\n" in message  # where the rollout starts: steps[0]


def test_canary_alone_without_a_rollout_is_refused_saying_why(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path, None)
    assert cli.main(["promote", "fraud-scorer", str(repo), "--canary", "12"]) == 2
    assert "already the stable version" in capsys.readouterr().err
    assert cli.main(["promote", "fraud-scorer", str(repo), "--rollback"]) == 0
    before = (repo / MODEL).read_bytes()
    assert cli.main(["promote", "fraud-scorer", str(repo), "--canary", "13"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: --canary 13 needs --traffic PCT (the canary's share of requests, 0-100): no "
                           "spec.rollout decides the traffic of model 'fraud-scorer'")
    assert (repo / MODEL).read_bytes() == before
