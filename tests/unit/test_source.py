"""Unit tests of agent.source against real git repositories made in tmp_path with the git CLI.

GitSource reads a commit's tree through GitPython without touching the working tree;
DirectorySource reads the files on disk. Both refuse symlinks that leave the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import SourceError, SpecError
from agent.source import DirectorySource, GitSource, Snapshot, decrypt_snapshot, open_source
from agent.spec import load
from agent.spec._yaml import MAX_FILE_BYTES
from tests.unit.conftest import BASE, EXAMPLE_REPO

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

AUTHOR = ("Ada Lovelace", "ada@example.com")
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{v: '{v}'}}\n"
NOT_A_FILE = "is not a regular file of the repository (missing, a directory, a link, or reached through a link)"
LEFT_OUT = "the manifests under it would be left out; move them here, or link each file"


def git(repo: Path, *args: str) -> str:
    """Run git in repo with a fixed identity and no user/system config; its stdout."""
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1],
        "GIT_COMMITTER_NAME": AUTHOR[0], "GIT_COMMITTER_EMAIL": AUTHOR[1],
    }
    cmd = ["git", "-c", f"user.name={AUTHOR[0]}", "-c", f"user.email={AUTHOR[1]}",
           "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args]
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def symlink(root: Path, rel: str, target: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    return root


def snapshot(root: Path, revision: str | None = None, subdir: str = "") -> Snapshot:
    with GitSource(root, subdir) as source:
        return source.snapshot(revision)


# --- GitSource reads commits, not the working tree ---------------------------------------------


def test_reads_the_committed_tree_without_checkout(repo: Path) -> None:
    committed = CM.format(name="a", v="committed")
    write(repo, "infra/a.yaml", committed)
    write(repo, "infra/b.yaml", CM.format(name="b", v="1"))
    sha = commit(repo, "first")
    # change the working tree after committing: edit, delete, add untracked
    write(repo, "infra/a.yaml", CM.format(name="a", v="edited, not committed"))
    (repo / "infra/b.yaml").unlink()
    write(repo, "infra/untracked.yaml", CM.format(name="u", v="1"))

    snap = snapshot(repo)

    assert snap.files == {"infra/a.yaml": committed.encode(),
                          "infra/b.yaml": CM.format(name="b", v="1").encode()}
    assert snap.problems == []
    assert snap.revision.commit == sha
    # the working tree is left as it was
    assert "edited" in (repo / "infra/a.yaml").read_text()
    assert not (repo / "infra/b.yaml").exists()


def test_revision_metadata(repo: Path) -> None:
    write(repo, "a.yaml", CM.format(name="a", v="1"))
    sha = commit(repo, "Add the a ConfigMap\n\nWith a body.")
    rev = snapshot(repo, "main").revision
    assert rev.commit == sha and rev.short == sha[:12]
    assert rev.author == "Ada Lovelace <ada@example.com>"
    assert rev.message == "Add the a ConfigMap\n\nWith a body."
    assert rev.ref == "main"
    assert snapshot(repo).revision.ref == "HEAD"


def test_second_commit_and_older_revisions(repo: Path) -> None:
    write(repo, "a.yaml", CM.format(name="a", v="1"))
    first = commit(repo, "one")
    git(repo, "tag", "v1")
    write(repo, "a.yaml", CM.format(name="a", v="2"))
    write(repo, "b.yaml", CM.format(name="b", v="2"))
    second = commit(repo, "two")

    head = snapshot(repo)
    assert head.revision.commit == second
    assert head.files["a.yaml"] == CM.format(name="a", v="2").encode()
    assert sorted(head.files) == ["a.yaml", "b.yaml"]

    for revision in (first, first[:10], "HEAD~1", "HEAD^", "v1", "main~1"):
        old = snapshot(repo, revision)
        assert old.revision.commit == first, revision
        assert old.files == {"a.yaml": CM.format(name="a", v="1").encode()}, revision


@pytest.mark.parametrize("revision", [
    "no-such-branch",
    "0" * 40,            # well-formed but absent
    "deadbeef",
    "HEAD~5",            # not enough history
    "HEAD:a.yaml",       # a blob, not a commit
    "HEAD^{tree}",       # a tree, not a commit
    "--output=/tmp/x",   # not an option smuggled to git
    "main@{upstream}",   # no upstream
    "gone@{upstream}",   # GitPython's BadObject cannot print itself: once an internal error
    "HEAD@{-1}",
    "HEAD~99999999999999999999",
])
def test_unknown_revision(repo: Path, revision: str) -> None:
    write(repo, "a.yaml", CM.format(name="a", v="1"))
    commit(repo, "one")
    with GitSource(repo) as source, pytest.raises(SourceError, match="unknown revision"):
        source.snapshot(revision)


def test_repository_without_commits(repo: Path) -> None:
    with GitSource(repo) as source, pytest.raises(SourceError, match="unknown revision 'HEAD'"):
        source.snapshot()


def test_not_a_git_repository(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a git repository"):
        GitSource(tmp_path)
    with pytest.raises(SourceError, match="not a git repository"):
        GitSource(tmp_path / "missing")


def test_only_yaml_files_and_no_hidden_directories(repo: Path) -> None:
    write(repo, "a.yaml", CM.format(name="a", v="1"))
    write(repo, "b.yml", CM.format(name="b", v="1"))
    write(repo, "README.md", "# docs")
    write(repo, "values.json", "{}")
    write(repo, ".github/workflows/ci.yml", "on: push\n")
    write(repo, ".hidden.yaml", CM.format(name="h", v="1"))
    commit(repo, "one")
    snap = snapshot(repo)
    # like DirectorySource: dot-directories are skipped, dot-files are not
    assert sorted(snap.files) == [".hidden.yaml", "a.yaml", "b.yml"]
    assert sorted(snap.files) == sorted(DirectorySource(repo).snapshot().files)


def test_file_over_the_size_limit_is_a_problem(repo: Path) -> None:
    write(repo, "big.yaml", b"#" * (MAX_FILE_BYTES + 1))
    write(repo, "ok.yaml", CM.format(name="a", v="1"))
    commit(repo, "one")
    snap = snapshot(repo)
    assert sorted(snap.files) == ["ok.yaml"]
    assert snap.problems == [SpecError(
        "big.yaml", 1, "", f"file is {MAX_FILE_BYTES + 1} bytes, over the limit of {MAX_FILE_BYTES}")]


# --- symlinks in git ---------------------------------------------------------------------------


def test_symlink_inside_the_repo_is_followed(repo: Path) -> None:
    content = CM.format(name="shared", v="1")
    write(repo, "shared/settings.yaml", content)
    symlink(repo, "teams/fraud/settings.yaml", "../../shared/settings.yaml")
    commit(repo, "link")
    # the working copy of the target changes; the committed bytes are what is read
    write(repo, "shared/settings.yaml", "changed: after the commit\n")
    snap = snapshot(repo)
    assert snap.files["teams/fraud/settings.yaml"] == content.encode()
    assert snap.files["shared/settings.yaml"] == content.encode()
    assert snap.problems == []


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "../..", "../a/../../x.yaml"])
def test_symlink_leaving_the_repo_is_a_problem(repo: Path, target: str) -> None:
    write(repo, "ok.yaml", CM.format(name="a", v="1"))
    symlink(repo, "infra/escape.yaml", target)
    commit(repo, "escape")
    snap = snapshot(repo)
    assert sorted(snap.files) == ["ok.yaml"]
    assert snap.problems == [
        SpecError("infra/escape.yaml", 1, "", f"symlink points outside the repository ({target})")
    ]
    assert str(snap.problems[0]) == (
        f"infra/escape.yaml:1: (document): symlink points outside the repository ({target})")


def test_dangling_symlink_is_a_problem(repo: Path) -> None:
    symlink(repo, "a.yaml", "missing.yaml")
    symlink(repo, "b.yaml", "a.yaml")  # a link to a link is not followed either
    commit(repo, "dangling")
    snap = snapshot(repo)
    assert snap.files == {}
    assert [(p.file, p.message) for p in snap.problems] == [
        ("a.yaml", f"symlink target 'missing.yaml' {NOT_A_FILE}"),
        ("b.yaml", f"symlink target 'a.yaml' {NOT_A_FILE}"),
    ]


def test_symlink_problems_reach_the_loader(repo: Path) -> None:
    symlink(repo, "passwd.yaml", "/etc/passwd")
    commit(repo, "escape")
    snap = snapshot(repo)
    with pytest.raises(Exception, match=r"passwd\.yaml:1: \(document\): symlink points outside"):
        load(snap.files, snap.problems)


# --- subdirectories ----------------------------------------------------------------------------


def test_subdir_source(repo: Path) -> None:
    write(repo, "deploy/models/a.yaml", CM.format(name="a", v="1"))
    write(repo, "deploy/b.yaml", CM.format(name="b", v="1"))
    write(repo, "other/c.yaml", CM.format(name="c", v="1"))
    write(repo, "top.yaml", CM.format(name="t", v="1"))
    commit(repo, "one")
    assert sorted(snapshot(repo, subdir="deploy").files) == ["b.yaml", "models/a.yaml"]
    assert sorted(snapshot(repo, subdir="/deploy/").files) == ["b.yaml", "models/a.yaml"]
    assert sorted(snapshot(repo, subdir="deploy/models").files) == ["a.yaml"]


def test_subdir_symlink_to_outside_the_subdir_is_refused(repo: Path) -> None:
    write(repo, "shared/x.yaml", CM.format(name="x", v="1"))
    write(repo, "deploy/inside.yaml", CM.format(name="i", v="1"))
    symlink(repo, "deploy/x.yaml", "../shared/x.yaml")
    commit(repo, "one")
    # within the whole repo the link is fine...
    assert "deploy/x.yaml" in snapshot(repo).files
    # ...but a source rooted at deploy/ reads nothing outside deploy/
    snap = snapshot(repo, subdir="deploy")
    assert sorted(snap.files) == ["inside.yaml"]
    assert [p.file for p in snap.problems] == ["x.yaml"]


def test_missing_subdir(repo: Path) -> None:
    write(repo, "a.yaml", CM.format(name="a", v="1"))
    sha = commit(repo, "one")
    with GitSource(repo, "nope") as source, pytest.raises(SourceError, match=f"'nope' does not exist at {sha[:12]}"):
        source.snapshot()


def test_subdir_that_exists_only_in_a_later_commit(repo: Path) -> None:
    write(repo, "a.yaml", CM.format(name="a", v="1"))
    first = commit(repo, "one")
    write(repo, "deploy/b.yaml", CM.format(name="b", v="1"))
    commit(repo, "two")
    with GitSource(repo, "deploy") as source:
        assert sorted(source.snapshot().files) == ["b.yaml"]
        with pytest.raises(SourceError, match="does not exist"):
            source.snapshot(first)


def test_open_source(repo: Path, tmp_path: Path) -> None:
    write(repo, "deploy/b.yaml", CM.format(name="b", v="1"))
    write(repo, "top.yaml", CM.format(name="t", v="1"))
    commit(repo, "one")
    directory = open_source(repo / "deploy")
    assert isinstance(directory, DirectorySource)
    source = open_source(repo / "deploy", "HEAD")
    try:
        assert isinstance(source, GitSource) and source.subdir == "deploy"
        assert sorted(source.snapshot().files) == ["b.yaml"]
    finally:
        source.close()
    with pytest.raises(SourceError, match="no such file or directory"):
        open_source(tmp_path / "missing")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(SourceError, match="needs a git repository"):
        open_source(plain, "HEAD")


def test_example_repo_from_git_equals_from_directory(repo: Path) -> None:
    shutil.copytree(EXAMPLE_REPO, repo / "examples" / "model-repo")
    commit(repo, "examples")
    from_git = snapshot(repo, subdir="examples/model-repo")
    from_dir = DirectorySource(EXAMPLE_REPO).snapshot()
    assert from_git.files == from_dir.files
    opened = decrypt_snapshot(from_git)  # its Secret is SOPS-encrypted; .sops.yaml is no manifest
    spec = load(opened.files, opened.problems)
    assert (len(spec.models), len(spec.monitors), len(spec.runtimes), len(spec.manifests)) == (5, 3, 3, 5)


# --- GitPython's helper processes ---------------------------------------------------------------


def _git_children() -> list[str]:
    """Command lines of this process's git children (zombies included, as `<git, state Z>`)."""
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        psutil = None
    if psutil is not None:
        out = []
        for child in psutil.Process().children(recursive=True):
            try:
                if child.name() == "git" or "cat-file" in " ".join(child.cmdline()):
                    out.append(" ".join(child.cmdline()) or f"<git, state {child.status()}>")
            except psutil.NoSuchProcess:
                continue
        return out
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        state, ppid = rest[0], rest[1]
        if ppid == me and (comm == "git" or "cat-file" in cmdline):
            out.append(cmdline or f"<{comm}, state {state}>")  # a zombie has no cmdline
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc when psutil is absent")
def test_close_leaves_no_git_cat_file_process(repo: Path) -> None:
    write(repo, "a.yaml", CM.format(name="a", v="1"))
    commit(repo, "one")
    assert _git_children() == []
    source = GitSource(repo)
    snap = source.snapshot()
    assert snap.files
    # reading blobs started GitPython's persistent `git cat-file` helpers (this proves the
    # check below can see them)...
    assert any("cat-file" in c for c in _git_children()), _git_children()
    source.close()
    # ...and close() ends and reaps them
    assert _git_children() == []


def test_context_manager_closes(repo: Path) -> None:
    write(repo, "a.yaml", CM.format(name="a", v="1"))
    commit(repo, "one")
    with GitSource(repo) as source:
        source.snapshot()
    assert _git_children() == []


# --- DirectorySource ---------------------------------------------------------------------------


def test_directory_source_reads_yaml_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", CM.format(name="a", v="1"))
    write(tmp_path, "nested/deeper/b.yml", CM.format(name="b", v="1"))
    write(tmp_path, "notes.txt", "x")
    write(tmp_path, ".git/config.yaml", "not: read")
    write(tmp_path, ".github/workflows/ci.yaml", "on: push\n")
    snap = DirectorySource(tmp_path).snapshot()
    assert sorted(snap.files) == ["a.yaml", "nested/deeper/b.yml"]
    assert snap.revision.commit == "" and snap.revision.short == "working-tree"
    assert snap.problems == []


def test_directory_source_symlink_inside_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "shared/x.yaml", CM.format(name="x", v="1"))
    symlink(tmp_path, "teams/x.yaml", "../shared/x.yaml")
    snap = DirectorySource(tmp_path).snapshot()
    assert snap.files["teams/x.yaml"] == CM.format(name="x", v="1").encode()
    assert snap.problems == []


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_directory_source_symlink_escaping_is_a_problem(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "repo"
    secret = write(tmp_path, "outside/secret.yaml", "password: hunter2\n")
    target = "../../outside/secret.yaml" if kind == "relative" else str(secret)
    symlink(root, "infra/leak.yaml", target)
    write(root, "ok.yaml", CM.format(name="a", v="1"))
    snap = DirectorySource(root).snapshot()
    assert sorted(snap.files) == ["ok.yaml"]
    assert snap.problems == [
        SpecError("infra/leak.yaml", 1, "", f"symlink points outside the repository ({target})")
    ]
    assert all(b"hunter2" not in v for v in snap.files.values())


def test_directory_source_etc_passwd(tmp_path: Path) -> None:
    symlink(tmp_path, "passwd.yaml", "/etc/passwd")
    symlink(tmp_path, "a/b/up.yaml", "../../../../../../etc/passwd")
    snap = DirectorySource(tmp_path).snapshot()
    assert snap.files == {}
    assert sorted((p.file, p.message) for p in snap.problems) == [
        ("a/b/up.yaml", "symlink points outside the repository (../../../../../../etc/passwd)"),
        ("passwd.yaml", "symlink points outside the repository (/etc/passwd)"),
    ]


def test_directory_source_dangling_and_looping_symlinks(tmp_path: Path) -> None:
    symlink(tmp_path, "dangling.yaml", "missing.yaml")
    symlink(tmp_path, "loop.yaml", "loop.yaml")
    snap = DirectorySource(tmp_path).snapshot()
    assert snap.files == {}
    assert [(p.file, p.message) for p in snap.problems] == [
        ("dangling.yaml", f"symlink target 'missing.yaml' {NOT_A_FILE}"),
        ("loop.yaml", f"symlink target 'loop.yaml' {NOT_A_FILE}"),
    ]


# --- directory symlinks: refused like file symlinks, by both sources ---------------------------


def _read(root: Path, source: str) -> Snapshot:
    """The snapshot of root as a working directory, or of root committed."""
    if source == "directory":
        return DirectorySource(root).snapshot()
    git(root, "init", "-q")
    commit(root, "links")
    return snapshot(root)


@pytest.mark.parametrize("source", ["directory", "commit"])
@pytest.mark.parametrize("target", ["../../outside-models", "/etc", "../..", "../../repo/../outside-models"])
def test_directory_symlink_out_of_the_repo_is_refused(tmp_path: Path, source: str, target: str) -> None:
    """A directory of manifests linked in from outside was skipped without a word; now it is the
    same problem as a manifest's link out of the repository (the name has no .yaml: a link out
    is refused whatever it names, since a commit cannot tell a file from a directory out there)."""
    root = tmp_path / "repo"
    write(root, "ok.yaml", CM.format(name="a", v="1"))
    write(tmp_path, "outside-models/m.yaml", CM.format(name="leak", v="1"))
    symlink(root, "models/team-b", target)
    snap = _read(root, source)
    assert sorted(snap.files) == ["ok.yaml"]
    assert snap.problems == [SpecError("models/team-b", 1, "", f"symlink points outside the repository ({target})")]


@pytest.mark.parametrize("source", ["directory", "commit"])
def test_directory_symlink_inside_the_repo_is_refused_too(tmp_path: Path, source: str) -> None:
    """Directory links are never followed (files read twice, link cycles); one inside the
    repository is an error too, so nothing under it is left out silently."""
    root = tmp_path / "repo"
    write(root, "staging/m.yaml", CM.format(name="m", v="1"))
    symlink(root, "prod", "staging")
    symlink(root, "teams/all", "..")  # a cycle, were it followed
    snap = _read(root, source)
    assert sorted(snap.files) == ["staging/m.yaml"]
    assert sorted((p.file, p.message) for p in snap.problems) == [
        ("prod", f"symlink to a directory is not followed (staging): {LEFT_OUT}"),
        ("teams/all", f"symlink to a directory is not followed (..): {LEFT_OUT}"),
    ]


@pytest.mark.parametrize("source", ["directory", "commit"])
def test_other_links_that_are_not_manifests_are_left_alone(tmp_path: Path, source: str) -> None:
    """A link to a file that is not a manifest, a dangling one, or a hidden one is not read and
    not a problem, as before; a link into .git is refused whatever it names."""
    root = tmp_path / "repo"
    write(root, "docs/README.md", "# models\n")
    write(root, "m.yaml", CM.format(name="m", v="1"))
    symlink(root, "README.md", "docs/README.md")
    symlink(root, "notes", "docs/missing.txt")
    symlink(root, ".envrc", "../somewhere/.envrc")
    symlink(root, "hooks", ".git/hooks")
    snap = _read(root, source)
    assert sorted(snap.files) == ["m.yaml"]
    assert [(p.file, p.message) for p in snap.problems] == [("hooks", "symlink points into a .git directory (.git/hooks)")]


def test_a_directory_symlink_out_fails_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    root = tmp_path / "repo"
    for rel, content in BASE.items():
        write(root, rel, content)
    assert main(["validate", str(root)]) == 0, capsys.readouterr().err
    write(tmp_path, "elsewhere/extra.yaml", CM.format(name="extra", v="1"))
    symlink(root, "more-models", "../elsewhere")
    assert main(["validate", str(root)]) == 2
    err = capsys.readouterr().err
    assert "more-models:1: (document): symlink points outside the repository (../elsewhere)" in err


def test_directory_source_file_over_the_size_limit(tmp_path: Path) -> None:
    write(tmp_path, "big.yaml", b"#" * (MAX_FILE_BYTES + 1))
    snap = DirectorySource(tmp_path).snapshot()
    assert snap.files == {}
    assert snap.problems == [SpecError(
        "big.yaml", 1, "", f"file is {MAX_FILE_BYTES + 1} bytes, over the limit of {MAX_FILE_BYTES}")]


def test_directory_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a directory"):
        DirectorySource(tmp_path / "missing")
    write(tmp_path, "f.yaml", "a: 1\n")
    with pytest.raises(SourceError, match="not a directory"):
        DirectorySource(tmp_path / "f.yaml")
    with pytest.raises(SourceError, match="no revisions"):
        DirectorySource(tmp_path).snapshot("HEAD")


# --- the two sources agree (issue #7 item 11) ----------------------------------------------------


def _hostile_tree(root: Path) -> None:
    """One tree with every kind of link and nesting that the two sources once read differently."""
    write(root, "ok.yaml", CM.format(name="ok", v="1"))
    write(root, "real/m.yaml", CM.format(name="m", v="1"))
    write(root, ".shared/s.yaml", CM.format(name="s", v="1"))
    symlink(root, "good.yaml", "real/m.yaml")
    symlink(root, "hidden-target.yaml", ".shared/s.yaml")
    symlink(root, "infra/git-config.yaml", "../.git/config")
    symlink(root, "git-head.yaml", ".git/HEAD")
    symlink(root, "linkdir", "real")  # a symlinked directory: not traversed, refused by both sources
    symlink(root, "through-linkdir.yaml", "linkdir/m.yaml")
    symlink(root, "dir-link.yaml", "real")  # a .yaml link to a directory
    symlink(root, "to-link.yaml", "good.yaml")
    symlink(root, "dangling.yaml", "missing.yaml")
    symlink(root, "loop.yaml", "loop.yaml")
    symlink(root, "outside.yaml", "../outside.yaml")
    symlink(root, "absolute.yaml", "/etc/passwd")
    symlink(root, "dotdot-inside.yaml", "real/../ok.yaml")
    nested = root / "vendor" / "nested"
    write(nested, "n.yaml", CM.format(name="n", v="1"))
    git(nested, "init", "-q")
    git(nested, "add", "-A")
    git(nested, "commit", "-q", "-m", "nested")
    symlink(root, "into-nested.yaml", "vendor/nested/n.yaml")


def test_directory_and_commit_of_the_same_tree_give_the_same_files_and_problems(repo: Path) -> None:
    _hostile_tree(repo)
    commit(repo, "hostile")
    from_disk = DirectorySource(repo).snapshot()
    from_git = snapshot(repo)
    assert from_disk.files == from_git.files
    assert from_disk.problems == from_git.problems
    assert sorted(from_git.files) == ["dotdot-inside.yaml", "good.yaml", "hidden-target.yaml", "ok.yaml",
                                      "real/m.yaml"]
    assert from_git.files["good.yaml"] == CM.format(name="m", v="1").encode()
    messages = {p.file: p.message for p in from_git.problems}
    assert messages == {
        "absolute.yaml": "symlink points outside the repository (/etc/passwd)",
        "outside.yaml": "symlink points outside the repository (../outside.yaml)",
        "infra/git-config.yaml": "symlink points into a .git directory (../.git/config)",
        "git-head.yaml": "symlink points into a .git directory (.git/HEAD)",
        "through-linkdir.yaml": f"symlink target 'linkdir/m.yaml' {NOT_A_FILE}",
        "dir-link.yaml": f"symlink target 'real' {NOT_A_FILE}",
        "to-link.yaml": f"symlink target 'good.yaml' {NOT_A_FILE}",
        "dangling.yaml": f"symlink target 'missing.yaml' {NOT_A_FILE}",
        "loop.yaml": f"symlink target 'loop.yaml' {NOT_A_FILE}",
        "into-nested.yaml": f"symlink target 'vendor/nested/n.yaml' {NOT_A_FILE}",
        "linkdir": f"symlink to a directory is not followed (real): {LEFT_OUT}",
    }
    assert all(b"[core]" not in content for content in from_disk.files.values())


def test_nested_git_repository_is_skipped_by_both_sources(repo: Path) -> None:
    write(repo, "a.yaml", CM.format(name="a", v="1"))
    nested = repo / "models" / "vendored"
    write(nested, "b.yaml", CM.format(name="b", v="1"))
    git(nested, "init", "-q")
    git(nested, "add", "-A")
    git(nested, "commit", "-q", "-m", "nested")
    commit(repo, "with an embedded repository")
    assert sorted(DirectorySource(repo).snapshot().files) == ["a.yaml"]
    assert sorted(snapshot(repo).files) == ["a.yaml"]
    # a .git file (a submodule's checkout) marks a nested repository too
    write(repo, "sub/.git", "gitdir: ../.git/modules/sub\n")
    write(repo, "sub/c.yaml", CM.format(name="c", v="1"))
    assert sorted(DirectorySource(repo).snapshot().files) == ["a.yaml"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_directory_source_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    snap = DirectorySource(tmp_path).snapshot()
    assert snap.files == {}
    assert snap.problems == [SpecError("pipe.yaml", 1, "", "not a regular file")]


def test_directory_source_reports_unreadable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "locked.yaml", CM.format(name="a", v="1"))
    write(tmp_path, "ok.yaml", CM.format(name="b", v="1"))
    real_open = Path.open

    def open_(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "locked.yaml":  # as chmod 0 would for a user other than root
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", open_)
    snap = DirectorySource(tmp_path).snapshot()
    assert sorted(snap.files) == ["ok.yaml"]
    assert snap.problems == [SpecError("locked.yaml", 1, "", "cannot read the file: Permission denied")]


def test_revision_of_a_file_path_is_a_clean_source_error(repo: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    monkeypatch.setenv("AGENT_CACHE_DIR", str(tmp_path / "cache"))
    write(repo, "repo.yaml", CM.format(name="a", v="1"))
    write(repo, "dir/x.yaml", CM.format(name="x", v="1"))
    commit(repo, "one")
    with pytest.raises(SourceError, match="not a directory"):
        open_source(repo / "repo.yaml", "HEAD")
    with GitSource(repo, "repo.yaml") as source, pytest.raises(SourceError, match=r"repo\.yaml: not a directory at"):
        source.snapshot()
    for revision in ([], ["--revision", "HEAD"]):
        assert main(["validate", str(repo / "repo.yaml"), *revision]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {repo / 'repo.yaml'}: not a directory\n", err
