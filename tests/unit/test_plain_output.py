"""No Python in what the agent says: connection errors in words for every client (Prometheus,
MLflow, a forge, the API server, git), `None` never offered as a choice (help, completion), no
issue numbers in the agent's strings, metric HELP texts or comments.

The output of every `agent` command run by any test is scanned by tests/conftest.py; these
tests provoke the failures whose text used to be Python's own."""

from __future__ import annotations

import argparse
import re
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import urllib3

from agent import cli
from agent.errors import plain_reason, plain_text
from agent.forge import ForgeError, RepoRef, open_forge
from agent.metrics_source import MetricsError, Prometheus
from agent.registry import MlflowRegistry, RegistryError
from tests._python_text import python_in
from tests.unit._tls import make_pki, server_context

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "model-repo"


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def failure(call: Callable[[], object]) -> BaseException:
    """The exception `call` raises (its text is what the test looks at)."""
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("no failure")


# --- plain_reason: the words for a failure, whatever wrapped it --------------------------------

def test_connection_refused_in_words_whatever_wraps_it() -> None:
    port = closed_port()
    raw = failure(lambda: socket.create_connection(("127.0.0.1", port), timeout=5))
    wrapped = failure(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5))
    pooled = failure(lambda: urllib3.PoolManager(retries=False).request("GET", f"http://127.0.0.1:{port}/"))
    retried = failure(lambda: urllib3.PoolManager(retries=urllib3.Retry(0)).request("GET", f"http://127.0.0.1:{port}/"))
    for exc in (raw, wrapped, pooled, retried):
        assert "Errno" in str(exc) or "Errno" in str(getattr(exc, "reason", ""))  # what Python says
        assert plain_reason(exc) == "connection refused", (type(exc), str(exc))


def test_a_missing_file_or_program_in_words() -> None:
    import subprocess

    assert plain_reason(failure(lambda: open("/nonexistent/file"))) == "no such file or directory"  # noqa: SIM115
    assert plain_reason(failure(lambda: subprocess.run(["/nonexistent/git"]))) == "no such file or directory"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An https server whose certificate a client without its CA does not trust."""
    context = server_context(make_pki(tmp_path_factory.mktemp("pki")))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    with context.wrap_socket(conn, server_side=True):
                        pass
                except (OSError, ssl.SSLError):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_an_untrusted_certificate_in_words(tls_server: int) -> None:
    exc = failure(lambda: urllib.request.urlopen(f"https://127.0.0.1:{tls_server}/", timeout=5))
    assert isinstance(exc, urllib.error.URLError) and "_ssl.c" in str(exc)  # what Python says
    assert plain_reason(exc) == "certificate verify failed: unable to get local issuer certificate"


def test_tls_to_a_plain_server_in_words() -> None:
    """A TLS handshake against a server that answers plain text: no `[SSL: ...]` or `(_ssl.c:N)`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        exc = failure(lambda: urllib.request.urlopen(f"https://127.0.0.1:{listener.getsockname()[1]}/", timeout=5))
    finally:
        thread.join(timeout=5)
        listener.close()
    reason = plain_reason(exc)
    assert reason and not re.search(r"\[SSL|_ssl\.c|Errno|<", reason), reason


@pytest.mark.parametrize(("text", "words"), [
    ("<urlopen error [Errno -2] Name or service not known>", "name or service not known"),
    ("HTTPSConnection(host='h', port=1): Failed to establish a new connection: [Errno 111] Connection refused",
     "connection refused"),
    ("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1000)", "wrong version number"),
    ("<urllib3.connection.HTTPSConnection object at 0x7f00>: Connection to h timed out", "connection to h timed out"),
    ("TLS handshake failed", "TLS handshake failed"),
])
def test_plain_text_drops_python_decorations(text: str, words: str) -> None:
    assert plain_text(text) == words


# --- every client says it in words ---------------------------------------------------------------

def test_each_client_says_cannot_connect_in_words() -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(RegistryError) as mlflow:
        MlflowRegistry(url, timeout=2).resolve("m", alias="a")
    with pytest.raises(MetricsError) as prometheus:
        Prometheus(url, timeout=2).query("up")
    forge = open_forge(RepoRef("gitea", f"{url}/api/v1", "o", "r"), "t0ken")
    forge.http.sleep = lambda _s: None  # type: ignore[attr-defined]
    with pytest.raises(ForgeError) as forge_error:
        forge.get_pull(1)
    assert str(mlflow.value) == f"cannot connect to MLflow at {url}: connection refused (model 'm' alias 'a')"
    assert str(prometheus.value).startswith(f"cannot connect to Prometheus at {url}: connection refused")
    assert f"cannot connect to {url}: connection refused" in str(forge_error.value)
    for message in (mlflow.value, prometheus.value, forge_error.value):
        assert not python_in(str(message)), str(message)


def test_an_unreachable_api_server_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{closed_port()}"}}}}]
users: [{{name: u, user: {{token: abc}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    code = cli.main(["status", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--retry-budget", "0.2"])
    err = capsys.readouterr().err
    assert code == 2
    assert re.fullmatch(r"error: cannot reach the API server at https://127\.0\.0\.1:\d+: connection refused\n", err), err


def test_git_that_cannot_run_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GTO reads tags with git: when git cannot run, the error says why in words."""
    from agent.registry import GtoRegistry

    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the PATH
    with pytest.raises(RegistryError) as info:
        GtoRegistry(str(tmp_path)).resolve("m", stage="prod")
    assert "cannot run git: no such file or directory" in str(info.value)
    assert not python_in(str(info.value))


# --- help and completion offer no None ----------------------------------------------------------

def test_no_python_in_any_help(capsys: pytest.CaptureFixture[str]) -> None:
    for path, _parser, _subs in cli.command_tree(cli.build_parser()):
        with pytest.raises(SystemExit) as done:
            cli.main([*path, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert text and not python_in(text), (path, python_in(text))
        assert "None" not in text.replace("None of", ""), path


def test_no_choice_is_none() -> None:
    for path, parser, _subs in cli.command_tree(cli.build_parser()):
        for action in parser._actions:
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                assert all(isinstance(c, str) and c for c in action.choices), (path, action.option_strings)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_offers_no_none(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", shell]) == 0
    script = capsys.readouterr().out
    assert "forge" in script and "gitea" in script
    assert not re.search(r"\bNone\b", script)
    assert not python_in(script)


def test_a_forge_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AGENT_FORGE", "bitbucket")
    assert cli.main(["run", "--repo", "https://example.invalid/r.git"]) == 2
    assert capsys.readouterr().err == "error: AGENT_FORGE=bitbucket: expected one of github, gitlab, gitea\n"


# --- no issue numbers in the agent ---------------------------------------------------------------

ISSUE = re.compile(r"issue #\d+|\(issue \d+\)", re.IGNORECASE)


def test_no_issue_numbers_in_the_agent_s_strings_or_comments() -> None:
    """Messages, log lines, metric HELP texts, docstrings and comments: none names an issue."""
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sorted((ROOT / "agent").rglob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if ISSUE.search(line)]
    assert found == []


def test_no_issue_numbers_in_metric_help() -> None:
    from agent.controller import Metrics

    text = Metrics(process=False).exposition().decode()
    helps = [line for line in text.splitlines() if line.startswith("# HELP")]
    assert len(helps) > 10
    assert [h for h in helps if ISSUE.search(h) or python_in(h)] == []
