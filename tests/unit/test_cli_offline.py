"""The CLI end to end, offline: a real git repository made from examples/model-repo, the
`agent` command run as a subprocess, exit codes and output as a user sees them.

History of the repository the module builds:
    main~1  examples/model-repo as it is
    main    one fraud model promoted (stable <- canary, a new canary with more traffic) and
            the S3 Secret rotated
    broken  main + a schema error (canary traffic 250)
and the working tree is then modified (canary traffic 40, not committed).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.engine import load_desired
from agent.source import DirectorySource, decrypt_snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "model-repo"
_AGENT_BIN = Path(sys.executable).parent / "agent"
AGENT = [str(_AGENT_BIN)] if _AGENT_BIN.exists() else [sys.executable, "-m", "agent"]

NEW_SECRET = "rotated-s3cr3t-access-key-XYZ"
GIT = ["git", "-c", "user.name=Model Ops Test", "-c", "user.email=test@modelops.invalid",
       "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run([*GIT, *args], cwd=repo, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@dataclass
class Run:
    code: int
    out: str
    err: str


def agent(*args: str | Path) -> Run:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.run([*AGENT, *map(str, args)], capture_output=True, text=True, env=env, timeout=120, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def find_doc(repo: Path, kind: str, pred: Callable[[dict[str, Any]], bool]) -> tuple[Path, int]:
    """The file and document index of the first `kind` document matching pred."""
    for path in sorted(repo.rglob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if isinstance(doc, dict) and doc.get("kind") == kind and pred(doc):
                return path, i
    raise AssertionError(f"no {kind} in {repo} matches")


def edit_doc(path: Path, index: int, change: Callable[[dict[str, Any]], None]) -> None:
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    change(docs[index])
    path.write_text(yaml.safe_dump_all([d for d in docs if d is not None], sort_keys=False), encoding="utf-8")


@dataclass
class History:
    repo: Path
    base: str
    head: str
    model_file: str  # relative path of the changed Model
    namespace: str
    model: str
    old_stable: str
    old_canary: str
    new_canary: str
    old_traffic: int
    new_traffic: int
    old_secret: str
    broken_line: int


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    assert (EXAMPLE / "repo.yaml").is_file(), "examples/model-repo is missing"
    repo = tmp_path_factory.mktemp("cli") / "model-repo"
    shutil.copytree(EXAMPLE, repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "model repo as in examples/")
    base = git(repo, "rev-parse", "HEAD")

    # promote the canary of a fraud model served by KServe and start a new one with more traffic
    path, index = find_doc(repo, "Model", lambda d: d["metadata"].get("namespace") == "fraud"
                           and "canary" in d["spec"] and d["spec"].get("backend", "kserve") == "kserve")
    doc = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))[index]
    spec = doc["spec"]
    old_stable, old_canary, old_traffic = spec["stable"], spec["canary"]["version"], spec["canary"]["traffic"]
    new_canary = str(int(old_canary) + 1) if old_canary.isdigit() else f"{old_canary}-next"
    new_traffic = old_traffic + 15
    canary_entry = next(v for v in spec["versions"] if v["version"] == old_canary)

    def promote(d: dict[str, Any]) -> None:
        new = {k: v for k, v in canary_entry.items() if k != "digest"}
        new["version"] = new_canary
        new["uri"] = canary_entry["uri"].replace(f"/{old_canary}", f"/{new_canary}")
        d["spec"]["versions"].append(new)
        d["spec"]["stable"] = old_canary
        d["spec"]["canary"] = {"version": new_canary, "traffic": new_traffic}

    edit_doc(path, index, promote)

    # rotate a Secret's value: the example's is SOPS-encrypted, the commit writes it decrypted (a test repo)
    spath, sindex = find_doc(repo, "Secret", lambda d: bool(d.get("data")))
    spath.write_bytes(decrypt_snapshot(DirectorySource(repo).snapshot()).files[spath.relative_to(repo).as_posix()])
    sdoc = list(yaml.safe_load_all(spath.read_text(encoding="utf-8")))[sindex]
    secret_key = sorted(sdoc["data"])[-1]
    old_secret = base64.b64decode(sdoc["data"][secret_key]).decode()
    edit_doc(spath, sindex, lambda d: d["data"].update({secret_key: base64.b64encode(NEW_SECRET.encode()).decode()}))
    git(repo, "commit", "-q", "-am", "promote a fraud model, rotate the S3 key")
    head = git(repo, "rev-parse", "HEAD")

    # a branch whose tip does not validate
    git(repo, "checkout", "-q", "-b", "broken")
    edit_doc(path, index, lambda d: d["spec"]["canary"].update(traffic=250))
    lines = path.read_text(encoding="utf-8").splitlines()
    broken_line = next(n for n, line in enumerate(lines, 1) if line.strip() == "traffic: 250")
    git(repo, "commit", "-q", "-am", "too much canary")
    git(repo, "checkout", "-q", "main")

    # and a working tree that differs from HEAD
    edit_doc(path, index, lambda d: d["spec"]["canary"].update(traffic=40))
    assert git(repo, "status", "--porcelain")
    return History(
        repo=repo, base=base, head=head, model_file=path.relative_to(repo).as_posix(),
        namespace=doc["metadata"]["namespace"], model=doc["metadata"]["name"], old_stable=old_stable,
        old_canary=old_canary, new_canary=new_canary, old_traffic=old_traffic, new_traffic=new_traffic,
        old_secret=old_secret, broken_line=broken_line,
    )


def _assert_no_secrets(h: History, text: str) -> None:
    for value in (h.old_secret, NEW_SECRET):
        assert value not in text
        assert base64.b64encode(value.encode()).decode().rstrip("=") not in text


# --- agent diff ----------------------------------------------------------------------------


def test_diff_names_the_change(history: History) -> None:
    h = history
    r = agent("diff", h.repo, "--base", "HEAD~1", "--revision", "HEAD")
    assert r.code == 1, r.err
    assert r.err == ""
    key = f"{h.namespace}/{h.model}"
    line = next(line for line in r.out.splitlines() if line.startswith(f"  {key}: "))
    assert line == (f"  {key}: version {h.old_stable} -> {h.old_canary}; "
                    f"canary version {h.old_canary} -> {h.new_canary}; "
                    f"canary {h.old_traffic}% -> {h.new_traffic}%; objects 1 updated")
    assert f"Comparing {h.base[:12]} -> {h.head[:12]}" in r.out
    assert "Objects (0 to create, 2 to update, 0 to delete," in r.out
    assert f"  ~ update  InferenceService/{h.namespace}/{h.model}  [" in r.out
    assert re.search(r"  ~ update  Secret/\w+/[\w-]+  \[data\.\w+\]", r.out)
    assert "<redacted sha256:" in r.out
    _assert_no_secrets(h, r.out)
    assert f"-    canaryTrafficPercent: {h.old_traffic}" in r.out
    assert f"+    canaryTrafficPercent: {h.new_traffic}" in r.out
    assert "\033[" not in r.out  # --color auto, stdout is a pipe


def test_diff_json(history: History) -> None:
    h = history
    r = agent("diff", h.repo, "--base", "HEAD~1", "--revision", "HEAD", "-o", "json")
    assert r.code == 1, r.err
    _assert_no_secrets(h, r.out)
    doc = json.loads(r.out)
    assert doc["kind"] == "Plan" and doc["changed"] is True
    assert doc["base"]["commit"] == h.base and doc["revision"]["commit"] == h.head
    assert doc["revision"]["message"] == "promote a fraud model, rotate the S3 key"
    assert doc["revision"]["author"] == "Model Ops Test <test@modelops.invalid>"
    models = {(m["namespace"], m["name"]): m for m in doc["models"]}
    changed = models[(h.namespace, h.model)]
    assert changed["status"] == "updated"
    assert changed["changes"][:3] == [f"version {h.old_stable} -> {h.old_canary}",
                                      f"canary version {h.old_canary} -> {h.new_canary}",
                                      f"canary {h.old_traffic}% -> {h.new_traffic}%"]
    assert all(m["status"] == "unchanged" for k, m in models.items() if k != (h.namespace, h.model))
    updated = [(o["kind"], o["namespace"], o["name"]) for o in doc["objects"] if o["action"] == "update"]
    assert ("InferenceService", h.namespace, h.model) in updated
    assert len(updated) == 2 and any(kind == "Secret" for kind, _, _ in updated)
    for o in doc["objects"]:
        assert {"action", "apiVersion", "kind", "namespace", "name", "changedFields", "diff"} <= set(o)


def test_diff_markdown(history: History) -> None:
    h = history
    r = agent("diff", h.repo, "--base", "HEAD~1", "--revision", "HEAD", "-o", "markdown")
    assert r.code == 1, r.err
    _assert_no_secrets(h, r.out)
    assert r.out.startswith(f"### Model changes `{h.base[:12]}` → `{h.head[:12]}`")
    assert "| model | status | changes |" in r.out
    # ">" is escaped in table cells (renders as ">")
    assert (f"| `{h.namespace}/{h.model}` | updated | version {h.old_stable} -&gt; {h.old_canary}<br>"
            f"canary version {h.old_canary} -&gt; {h.new_canary}<br>canary {h.old_traffic}% -&gt; {h.new_traffic}%<br>") in r.out
    assert r.out.count("```diff") == 2


def test_offline_diff_sides_are_the_revisions(history: History) -> None:
    """issue #9: `agent diff --base main --revision branch` compares two commits, not the live
    cluster: each diff names its sides by the revisions, in text, JSON and Markdown."""
    h = history
    git(h.repo, "branch", "-f", "before-promotion", h.base)
    isvc = f"InferenceService/{h.namespace}/{h.model}"
    old, new = f"--- before-promotion ({h.base[:12]})/{isvc}", f"+++ main ({h.head[:12]})/{isvc}"
    r = agent("diff", h.repo, "--base", "before-promotion", "--revision", "main")
    assert r.code == 1, r.err
    assert f"\n{old}\n{new}\n" in r.out
    assert "live/" not in r.out and "desired/" not in r.out
    j = agent("diff", h.repo, "--base", "before-promotion", "--revision", "main", "-o", "json")
    doc = json.loads(j.out)
    assert (doc["base"]["ref"], doc["revision"]["ref"]) == ("before-promotion", "main")
    diff = next(o["diff"] for o in doc["objects"] if o["kind"] == "InferenceService" and o["action"] == "update")
    assert diff.startswith(f"{old}\n{new}\n")
    md = agent("diff", h.repo, "--base", "before-promotion", "--revision", "main", "-o", "markdown").out
    assert f"\n{old}\n{new}\n" in md and "live/" not in md
    # named by SHA: the short SHA; the working tree: `working-tree`
    r = agent("diff", h.repo, "--base", h.head)
    assert f"\n--- {h.head[:12]}/{isvc}\n+++ working-tree/{isvc}\n" in r.out


def test_diff_color_always(history: History) -> None:
    r = agent("diff", history.repo, "--base", "HEAD~1", "--revision", "HEAD", "--color", "always")
    assert r.code == 1
    assert "\033[33m  ~ update  InferenceService/" in r.out
    never = agent("diff", history.repo, "--base", "HEAD~1", "--revision", "HEAD", "--color", "never")
    # Secret markers are keyed per process, so they differ between the two runs
    marker = re.compile(r"<redacted sha256:[0-9a-f]{8}>")
    plain = re.sub(r"\033\[[0-9;]*m", "", r.out)
    assert marker.sub("<redacted>", plain) == marker.sub("<redacted>", never.out)


def test_diff_of_a_revision_against_itself_is_empty(history: History) -> None:
    for base, rev in (("HEAD", "HEAD"), ("HEAD~1", "HEAD~1"), (history.head, "main")):
        r = agent("diff", history.repo, "--base", base, "--revision", rev)
        assert r.code == 0, (base, rev, r.out, r.err)
        assert "no model changes" in r.out
        assert "0 to create, 0 to update, 0 to delete" in r.out
    j = agent("diff", history.repo, "--base", "HEAD", "--revision", "HEAD", "-o", "json")
    assert j.code == 0 and json.loads(j.out)["changed"] is False


def test_diff_working_tree_against_head(history: History) -> None:
    """Without --revision the working tree (modified, uncommitted) is the desired side."""
    h = history
    r = agent("diff", h.repo, "--base", "HEAD")
    assert r.code == 1, r.err
    assert f"Comparing {h.head[:12]} -> working-tree" in r.out
    assert f"  {h.namespace}/{h.model}: canary {h.new_traffic}% -> 40%; objects 1 updated" in r.out


def test_diff_errors(history: History) -> None:
    r = agent("diff", history.repo, "--base", "no-such-rev", "--revision", "HEAD")
    assert r.code == 2
    assert "unknown revision 'no-such-rev'" in r.err
    assert r.out == ""
    r = agent("diff", history.repo, "--base", "HEAD", "--revision", "broken")
    assert r.code == 2
    assert f"{history.model_file}:{history.broken_line}: spec.canary.traffic: " in r.err
    assert "problem(s) in the model repo at the revision 'broken'" in r.err
    r = agent("diff", history.repo, "--base", "broken", "--revision", "HEAD")  # a PR that fixes main
    assert r.code == 2 and "in the model repo at the base revision 'broken'" in r.err
    r = agent("diff", history.repo, "--base", "HEAD", "--revision", "0" * 40)
    assert r.code == 2 and "unknown revision" in r.err


# --- agent validate ------------------------------------------------------------------------


def test_validate_example_repo() -> None:
    r = agent("validate", EXAMPLE)
    assert r.code == 0, r.err
    assert r.out.startswith(f"ok: {EXAMPLE} @ working-tree: ")
    desired = load_desired(EXAMPLE)
    assert f"{len(desired.spec.models)} models" in r.out
    assert f"-> {len(desired.objects)} objects" in r.out


def test_validate_revisions(history: History) -> None:
    for rev in ("HEAD", "HEAD~1", history.base):
        r = agent("validate", history.repo, "--revision", rev)
        assert r.code == 0, (rev, r.err)
        assert r.out.startswith(f"ok: {history.repo} @ ")
    assert f"@ {history.base[:12]}:" in agent("validate", history.repo, "--revision", "HEAD~1").out


def test_validate_broken_commit(history: History) -> None:
    h = history
    r = agent("validate", h.repo, "--revision", "broken")
    assert r.code == 2
    assert r.out == ""
    lines = r.err.splitlines()
    # the Model is invalid; a Monitor of it may be reported as dangling too
    assert re.fullmatch(r"error: \d+ problem\(s\) in the model repo:", lines[0]), lines
    assert int(lines[0].split()[1]) == len(lines) - 1
    assert re.fullmatch(rf"{re.escape(h.model_file)}:{h.broken_line}: spec\.canary\.traffic: .*\b100\b.*", lines[1]), lines
    for line in lines[1:]:  # file:line: field: message
        assert re.fullmatch(r"[\w./-]+\.ya?ml:\d+: [\w.\[\]/-]+: .+", line), line


def test_validate_unknown_revision(history: History) -> None:
    r = agent("validate", history.repo, "--revision", "v9.9.9")
    assert r.code == 2
    assert r.err.startswith("error: unknown revision 'v9.9.9'")


def test_validate_needs_git_for_a_revision(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(EXAMPLE, plain)
    r = agent("validate", plain, "--revision", "HEAD")
    assert r.code == 2
    assert "needs a git repository" in r.err
    missing = agent("validate", tmp_path / "nope")
    assert missing.code == 2 and "no such file or directory" in missing.err


# --- agent render --------------------------------------------------------------------------


def _render_json(*args: str | Path) -> dict[str, Any]:
    r = agent("render", *args, "-o", "json")
    assert r.code == 0, r.err
    doc: dict[str, Any] = json.loads(r.out)
    return doc


def _isvc(doc: dict[str, Any], h: History) -> dict[str, Any]:
    return next(o for o in doc["items"] if o["kind"] == "InferenceService" and o["metadata"]["name"] == h.model)


def test_render_json_is_a_list(history: History) -> None:
    doc = _render_json(history.repo, "--revision", "HEAD", "--show-secrets")
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "List")
    assert doc["items"] and all({"apiVersion", "kind", "metadata"} <= set(o) for o in doc["items"])
    # the same objects as rendering in-process, in the same order
    assert doc["items"] == json.loads(json.dumps(load_desired(history.repo, "HEAD").objects))


def test_render_yaml(history: History) -> None:
    r = agent("render", history.repo, "--revision", "HEAD", "--show-secrets")
    assert r.code == 0, r.err
    docs = [d for d in yaml.safe_load_all(r.out) if d]
    assert docs == _render_json(history.repo, "--revision", "HEAD", "--show-secrets")["items"]


_MARKER = re.compile(r"<redacted sha256:[0-9a-f]{8}>")


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_render_redacts_secret_values_unless_asked(history: History, fmt: str) -> None:
    h = history
    r = agent("render", h.repo, "-o", fmt)  # the working tree: the rotated value, never cached
    assert r.code == 0, r.err
    _assert_no_secrets(h, r.out)
    assert "--show-secrets" in r.err
    items = json.loads(r.out)["items"] if fmt == "json" else [d for d in yaml.safe_load_all(r.out) if d]
    desired = load_desired(h.repo).objects
    assert [(o["kind"], o["metadata"]["name"]) for o in items] == [(o["kind"], o["metadata"]["name"]) for o in desired]
    secrets = [(o, d) for o, d in zip(items, desired, strict=True) if o["kind"] == "Secret"]
    assert secrets
    for shown, real in secrets:
        assert set(shown["data"]) == set(real["data"]) and "stringData" not in shown
        assert all(_MARKER.fullmatch(v) for v in shown["data"].values()), shown["data"]
    assert [o for o in items if o["kind"] != "Secret"] == [o for o in desired if o["kind"] != "Secret"]

    plain = agent("render", h.repo, "-o", fmt, "--show-secrets")
    assert plain.code == 0 and plain.err == ""
    assert base64.b64encode(NEW_SECRET.encode()).decode() in plain.out


def test_revision_reads_the_commit_not_the_working_tree(history: History) -> None:
    h = history
    assert _isvc(_render_json(h.repo, "--revision", "HEAD"), h)["spec"]["predictor"]["canaryTrafficPercent"] == h.new_traffic
    assert _isvc(_render_json(h.repo, "--revision", "HEAD~1"), h)["spec"]["predictor"]["canaryTrafficPercent"] == h.old_traffic
    assert _isvc(_render_json(h.repo), h)["spec"]["predictor"]["canaryTrafficPercent"] == 40
    # nothing was checked out along the way
    assert git(h.repo, "rev-parse", "HEAD") == h.head
    assert git(h.repo, "status", "--porcelain") == f"M {h.model_file}"


def test_render_unknown_revision(history: History) -> None:
    r = agent("render", history.repo, "--revision", "does-not-exist", "-o", "json")
    assert r.code == 2
    assert r.out == ""
    assert "unknown revision 'does-not-exist'" in r.err


def test_model_repo_in_a_subdirectory(tmp_path: Path) -> None:
    """PATH may be a directory inside the git repository; files beside it are not read."""
    root = tmp_path / "mono"
    shutil.copytree(EXAMPLE, root / "deploy" / "models")
    (root / "app").mkdir()
    (root / "app" / "values.yaml").write_text("this: [is not, a model repo\n", encoding="utf-8")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "monorepo")
    path, index = find_doc(root / "deploy" / "models", "Model", lambda d: "canary" in d["spec"])
    edit_doc(path, index, lambda d: d["spec"]["canary"].update(traffic=d["spec"]["canary"]["traffic"] + 1))
    git(root, "commit", "-q", "-am", "one more percent")
    r = agent("diff", root / "deploy" / "models", "--base", "HEAD~1", "--revision", "HEAD")
    assert r.code == 1, r.err
    assert re.search(r"canary (\d+)% -> (\d+)%", r.out)
    assert agent("validate", root / "deploy" / "models", "--revision", "HEAD~1").code == 0
    assert agent("validate", root, "--revision", "HEAD").code == 2  # the whole repo includes app/
