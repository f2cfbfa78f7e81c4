"""Command line: parse flags, call one function per command, map results to exit codes.

Exit codes (like `kubectl diff`): 0 success / no change, 1 changes found (diff) or a check
failed (audit verify), 2 error (bad input, cluster unreachable, ...).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import AgentError, ValidationFailed

if TYPE_CHECKING:
    from agent.cluster import Timeouts
    from agent.plan import Plan

EXIT_OK = 0
EXIT_CHANGES = 1
EXIT_ERROR = 2

Handler = Callable[[argparse.Namespace], int]


def _visible(line: str) -> str:
    """A line for the terminal: names and messages from a repo or a cluster may hold control
    characters; they are shown escaped, never acted on."""
    from agent.output import visible

    return visible(line)


_CONFIG_KIND = re.compile(rb"""^kind:[ \t]*["']?RepositoryConfig["']?[ \t]*(#.*)?\r?$""", re.MULTILINE)
_CONFIG_SCAN_BYTES = 1 << 20  # a RepositoryConfig is small; a huge file is not read whole for this


def _holds_repo_config(directory: Path) -> bool:
    """A cheap text check: some *.yaml / *.yml file directly in `directory` has a top-level
    `kind: RepositoryConfig` line."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return False
    for entry in entries:
        if entry.suffix not in (".yaml", ".yml") or not entry.is_file():
            continue
        try:
            with entry.open("rb") as f:
                head = f.read(_CONFIG_SCAN_BYTES)
        except OSError:
            continue
        if _CONFIG_KIND.search(head):
            return True
    return False


def find_repo_root(path: str) -> Path | None:
    """The model repo PATH lies inside, found the way git finds its top level: the nearest
    ancestor of PATH holding a RepositoryConfig, stopping at the git top level (a directory
    with `.git`) or the filesystem root. None when PATH holds one itself, is not a directory,
    or no ancestor does (PATH is then the repo, with the default config)."""
    start = Path(path)
    if not start.is_dir() or _holds_repo_config(start):
        return None
    here = Path(os.path.abspath(start))
    if os.path.lexists(here / ".git"):
        return None
    for candidate in here.parents:
        if _holds_repo_config(candidate):
            return candidate
        if os.path.lexists(candidate / ".git"):
            break
    return None


def _repo_path(args: argparse.Namespace) -> str:
    """PATH of the command, moved up to the model repo's root when PATH is a directory inside
    it (a note on stderr says so). With --revision the root is found on disk and that
    directory is read at the revision."""
    path = str(args.path)
    root = find_repo_root(path)
    if root is None:
        if not getattr(args, "revision", None) and not _holds_repo_config(Path(path)):
            from agent._cli_guard import outside_repo

            refused = outside_repo(path, args, _CONFIG_KIND)
            if refused is not None:
                raise AgentError(refused)
        return path
    shown = str(root) if os.path.isabs(path) else os.path.relpath(root)
    print(_visible(f"note: using the model repo at {shown} (the nearest directory above {path} holding a "
                   "RepositoryConfig)"), file=sys.stderr)
    return shown


def _plain(value: object) -> str:
    """A value as a person reads it, never a Python repr: yes/no, `GET 11, PATCH 2`, `a, b`, `-`."""
    from agent.output import plain

    return plain(value)


def tested_with(root: Path | None = None) -> dict[str, str]:
    """Kubernetes, KServe and Prometheus-Operator versions the agent was tested with, read from
    tools/k8s/go.mod and tools/k8s/crds.env when the source tree is there ("unknown" if not)."""
    tools = (root or Path(__file__).resolve().parents[1]) / "tools" / "k8s"
    found = {"Kubernetes": "unknown", "KServe": "unknown", "Prometheus Operator": "unknown"}
    try:
        match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", (tools / "go.mod").read_text(), re.MULTILINE)
        if match:
            found["Kubernetes"] = match.group(1)
    except OSError:
        pass
    try:
        env = dict(line.split("=", 1) for line in (tools / "crds.env").read_text().splitlines()
                   if "=" in line and not line.lstrip().startswith("#"))
        found["KServe"] = env.get("KSERVE_VERSION", "unknown").strip() or "unknown"
        found["Prometheus Operator"] = env.get("PROMETHEUS_OPERATOR_VERSION", "unknown").strip() or "unknown"
    except OSError:
        pass
    return found


def agent_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("modelops-agent")
    except metadata.PackageNotFoundError:
        return "unknown"


def _version_text() -> str:
    tested = ", ".join(f"{name} {version}" for name, version in tested_with().items())
    return f"agent {agent_version()}\ntested with: {tested}\n"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        sys.stdout.write(_version_text())
        parser.exit(EXIT_OK)


def _cmd_version(args: argparse.Namespace) -> int:
    if args.output != "text":
        _write_document({"version": agent_version(), "testedWith": tested_with()}, args.output)
    else:
        sys.stdout.write(_version_text())
    return EXIT_OK


def _command_tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser, dict[str, str]]]:
    """(command path, its parser, its subcommands with their help), depth first."""
    subs: dict[str, str] = {}
    children: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action.choices.items():
                subs[name] = helps.get(name, "")
                children.append((name, child))
    yield path, parser, subs
    for name, child in children:
        yield from _command_tree(child, (*path, name))


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _shell_words(words: Iterable[str]) -> str:
    return " ".join(w for w in words if re.fullmatch(r"[A-Za-z0-9_.:/@%+=,-]+", w))


def completion_script(shell: str) -> str:
    """A completion script generated from the argparse parser: subcommands, flags, and the
    values of flags with choices (bash; zsh through bashcompinit; fish natively)."""
    tree = list(_command_tree(build_parser()))
    if shell == "fish":
        return _fish_completion(tree)
    lines = ["# agent completion (bash; zsh loads it through bashcompinit)", "_agent_complete() {",
             '    local cur prev path w i opts=""', '    cur="${COMP_WORDS[COMP_CWORD]}"',
             '    prev="${COMP_WORDS[COMP_CWORD-1]}"', '    path="agent"',
             '    for ((i=1; i<COMP_CWORD; i++)); do', '        w="${COMP_WORDS[i]}"', '        case "$path $w" in']
    nested = [" ".join(("agent", *path)) for path, _, _ in tree if path]
    if nested:
        lines.append("            " + "|".join(f'"{n}"' for n in nested) + ') path="$path $w";;')
    lines += ["        esac", "    done", '    case "$path $prev" in']
    for path, parser, _ in tree:
        for action in _options(parser):
            if action.choices:
                for flag in action.option_strings:
                    lines.append(f'        "{" ".join(("agent", *path, flag))}") '
                                 f'COMPREPLY=($(compgen -W "{_shell_words(str(c) for c in action.choices)}" -- "$cur")); '
                                 "return;;")
    lines += ["    esac", '    case "$path" in']
    for path, parser, subs in tree:
        words = [*subs, *(f for a in _options(parser) for f in a.option_strings)]
        lines.append(f'        "{" ".join(("agent", *path))}") opts="{_shell_words(words)}";;')
    lines += ["    esac", '    COMPREPLY=($(compgen -W "$opts" -- "$cur"))', "}"]
    if shell == "zsh":
        lines.insert(1, "autoload -U +X bashcompinit && bashcompinit")
    lines.append("complete -o default -F _agent_complete agent")
    return "\n".join(lines) + "\n"


def _fish_completion(tree: list[tuple[tuple[str, ...], argparse.ArgumentParser, dict[str, str]]]) -> str:
    def quoted(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    out = ["# agent completion (fish)", "complete -c agent -f"]
    for path, parser, subs in tree:
        if path:
            cond = " ; and ".join(f"__fish_seen_subcommand_from {word}" for word in path)
        else:
            cond = "__fish_use_subcommand"
        leaf = cond
        if subs and path:
            leaf = f"{cond} ; and not __fish_seen_subcommand_from {' '.join(subs)}"
        for name, text in subs.items():
            out.append(f"complete -c agent -n {quoted(leaf)} -a {name} -d {quoted(text.split('(')[0].strip())}")
        for action in _options(parser):
            flags = []
            for flag in action.option_strings:
                flags.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
            values = f" -x -a {quoted(' '.join(str(c) for c in action.choices))}" if action.choices else (
                " -r" if action.nargs != 0 else "")
            help_text = (action.help or "").split("(")[0].strip()
            out.append(f"complete -c agent -n {quoted(cond)} {' '.join(flags)}{values} -d {quoted(help_text)}")
    return "\n".join(out) + "\n"


def _cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion_script(args.shell))
    return EXIT_OK


def _cmd_devcluster(args: argparse.Namespace) -> int:
    from agent import devcluster

    directory = Path(args.dir)
    if args.action == "up":
        info = devcluster.up(directory)
        if info.message:
            print(f"note: {info.message}", file=sys.stderr)
        print(f"cluster ready: kubeconfig={info.kubeconfig}")
        return EXIT_OK
    if args.action == "down":
        if devcluster.is_forge(directory):  # the forge of `agent demo --promotion --keep`: stopped, its data kept
            devcluster.forge_down(directory)
            print(f"forge in {directory} stopped")
            return EXIT_OK
        devcluster.down(directory)
        print(f"cluster in {directory} stopped")
        return EXIT_OK
    state = devcluster.status(directory)
    if args.output != "text":
        _write_document(state, args.output)
        return EXIT_OK if state.get("ready") else EXIT_CHANGES
    width = max(len(name) for name in state) + 1
    for name, value in state.items():
        print(_visible(f"{name + ':':<{width}} {_plain(value)}"))
    return EXIT_OK if state.get("ready") else EXIT_CHANGES


def _cmd_validate(args: argparse.Namespace) -> int:
    from agent.pipeline import load_desired

    path = _repo_path(args)
    if args.output != "text":
        return _validate_document(path, args)
    # offline: registry references by shape only; SOPS files skipped (and named) when no age identity is given
    desired = load_desired(path, args.revision, resolve=False, keyless="skip")
    _note_unread(desired.unread)
    spec = desired.spec
    print(
        f"ok: {path} @ {desired.revision.short}: {len(spec.models)} models, "
        f"{len(spec.monitors)} monitors, {len(spec.runtimes)} runtimes, "
        f"{len(spec.manifests)} manifests -> {len(desired.objects)} objects"
    )
    return EXIT_OK


def _validate_document(path: str, args: argparse.Namespace) -> int:
    """validate -o json|yaml: {valid, path, revision, counts, errors}, errors as a list of
    {file, line, field, message}; exit 2 when invalid, as in text."""
    from agent.pipeline import load_desired

    doc: dict[str, Any] = {"valid": True, "path": path, "revision": None, "counts": None, "errors": []}
    try:
        desired = load_desired(path, args.revision, resolve=False, keyless="skip")
        _note_unread(desired.unread)
    except ValidationFailed as exc:
        doc.update(valid=False, revision=exc.revision or args.revision,
                   errors=[{"file": e.file, "line": e.line, "field": e.field, "message": e.message} for e in exc.errors])
    else:
        spec = desired.spec
        doc.update(revision=desired.revision.short, counts={
            "models": len(spec.models), "monitors": len(spec.monitors), "runtimes": len(spec.runtimes),
            "manifests": len(spec.manifests), "objects": len(desired.objects)})
    _write_document(doc, args.output)
    return EXIT_OK if doc["valid"] else EXIT_ERROR


def _note_unread(paths: Sequence[str]) -> None:
    if paths:
        print(_visible(f"note: {len(paths)} SOPS-encrypted file(s) not validated, no age identity given "
                       f"(--sops-age-key-file FILE, or SOPS_AGE_KEY_FILE or SOPS_AGE_KEY): {', '.join(paths)}"),
              file=sys.stderr)


def _write_document(doc: Any, fmt: str) -> None:
    """-o json or -o yaml: the command's data, one shape for both (agent.output.document)."""
    from agent.output import document

    sys.stdout.write(document(doc, fmt))


def _cmd_render(args: argparse.Namespace) -> int:
    from agent.output import to_yaml
    from agent.pipeline import load_desired
    from agent.plan import redact

    objects = load_desired(_repo_path(args), args.revision, signers=_signers(args)).objects
    if not args.show_secrets:  # Secret values as markers, like diff and apply show them
        redacted = [redact(o) for o in objects]
        hidden = sum(1 for before, after in zip(objects, redacted, strict=True) if before is not after)
        if hidden:
            print(f"note: values of {hidden} Secret(s) redacted; --show-secrets prints them", file=sys.stderr)
        objects = redacted
    if args.output == "json":
        _write_document({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": objects}, "json")
    else:  # yaml, and text: manifests are read as YAML
        sys.stdout.write("---\n".join(to_yaml(o) for o in objects))
    return EXIT_OK


class _Filter:
    """`-n/--namespace NS` and `--model NAME` (diff, status, apply). With --model: the objects
    of the models of that name (in NS when -n is given); with -n alone: every object in NS and
    the Namespace NS itself."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.namespace: str | None = getattr(args, "namespace", None)
        self.models: tuple[str, ...] = tuple(getattr(args, "model", None) or ())

    @property
    def active(self) -> bool:
        return bool(self.namespace or self.models)

    def describe(self) -> str:
        parts = ([f"--model {', '.join(self.models)}"] if self.models else []) + (
            [f"-n {self.namespace}"] if self.namespace else [])
        return " ".join(parts)

    def model(self, namespace: str, name: str) -> bool:
        if self.models and name not in self.models:
            return False
        return self.namespace is None or namespace == self.namespace

    def _matches(self, kind: str, namespace: str, name: str, model: str | None) -> bool:
        if self.models:
            if model is None:
                return False
            model_ns, _, model_name = model.partition("/")
            return self.model(model_ns, model_name)
        return self.namespace is None or namespace == self.namespace or (kind == "Namespace" and name == self.namespace)

    def object(self, obj: dict[str, Any]) -> bool:
        from agent.plan import model_of

        meta = obj.get("metadata") or {}
        return self._matches(str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")),
                             model_of(obj))

    def plan(self, plan: Plan) -> Plan:
        from agent.plan import build_plan

        if not self.active:
            return plan
        kept = [c for c in plan.objects if self._matches(c.kind, c.namespace, c.name, c.model)]
        if not kept:
            raise AgentError(f"no object matches {self.describe()}")
        return build_plan(kept, plan.base, plan.revision, plan.rollouts, plan.notes)

    def check_models(self, models: Iterable[tuple[str, str]]) -> None:
        if self.models and not any(self.model(ns, name) for ns, name in models):
            raise AgentError(f"no model matches {self.describe()} in the repo")


def _use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never":
        return False
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _print_plan(plan: Plan, args: argparse.Namespace) -> None:
    from agent import output

    if args.output in ("json", "yaml"):
        _write_document(output.as_dict(plan), args.output)
    elif args.output == "markdown":
        sys.stdout.write(output.markdown(plan))
    else:
        sys.stdout.write(output.text(plan, color=_use_color(args.color), show_diff=not getattr(args, "quiet", False)))


def _cmd_diff(args: argparse.Namespace) -> int:
    if args.base is None:
        from agent.reconcile import live_plan

        plan = live_plan(_repo_path(args), args.revision, kubeconfig=args.kubeconfig, context=args.context,
                         inventory_namespace=args.inventory_namespace, timeouts=_timeouts(args), warn=_warn,
                         signers=_signers(args))
    else:
        from agent.pipeline import offline_plan

        plan = offline_plan(_repo_path(args), args.base, args.revision, signers=_signers(args))
    plan = _Filter(args).plan(plan)
    _print_plan(plan, args)
    _warn_conflicts(plan)
    return EXIT_CHANGES if plan.has_changes else EXIT_OK


def _warn(message: str) -> None:
    print(_visible(f"warning: {message}"), file=sys.stderr)


def _warn_conflicts(plan: Plan) -> None:
    for c in plan.conflicts:
        print(_visible(f"warning: {c.ref} carries the ownership label of target {c.owner_conflict!r}: apply refuses "
                       "to take it over (exit 2) unless --adopt is given"), file=sys.stderr)


def _timeouts(args: argparse.Namespace) -> Timeouts:
    from agent.cluster import Timeouts

    return Timeouts.from_env(args.connect_timeout, args.request_timeout, args.retry_budget)


def _signers(args: argparse.Namespace) -> Any:
    """The signers file of --verify-signatures (or AGENT_VERIFY_SIGNATURES), read and checked;
    None without one. A working tree has no signature: the flag needs --revision."""
    if not args.verify_signatures:
        return None
    if getattr(args, "revision", None) is None:
        raise AgentError("--verify-signatures (or AGENT_VERIFY_SIGNATURES) needs --revision REV: only a commit "
                         "is signed, not the files on disk (e.g. --revision HEAD)")
    from agent.source import SignerKeys

    return SignerKeys.load(args.verify_signatures)


def _cmd_apply(args: argparse.Namespace) -> int:
    from agent.apply import PruneRefused
    from agent.cluster import Cluster
    from agent.pipeline import Desired, load_desired, with_traffic
    from agent.reconcile import Options, OwnershipConflict, read_rollouts, reconcile, with_rollouts
    from agent.status import wait_healthy

    # an invalid commit (or, with --verify-signatures, one not signed by an allowed key) raises: nothing applied
    desired = load_desired(_repo_path(args), args.revision, signers=_signers(args))
    selected = _Filter(args)
    if selected.active:
        if args.prune:
            raise AgentError(f"--prune with {selected.describe()} is refused: pruning needs every object of the "
                             "repo to know what is no longer in it; apply without the filter to prune")
        selected.check_models((m.namespace, m.name) for m in desired.spec.models)
        if not any(selected.object(o) for o in desired.objects):
            raise AgentError(f"no object matches {selected.describe()}")

    def narrowed(desired: Desired) -> Desired:
        """The filter's objects only (after any rollout traffic was rendered in)."""
        if not selected.active:
            return desired
        import dataclasses

        return dataclasses.replace(desired, objects=[o for o in desired.objects if selected.object(o)])

    options = Options(
        prune=False if selected.active else (True if args.prune else None),
        dry_run=args.dry_run,
        allow_mass_prune=args.allow_mass_prune,
        force_conflicts=args.conflicts == "force",
        concurrency=args.concurrency,
        inventory_namespace=args.inventory_namespace,
        events=not args.no_events,
        audit_log=Path(args.audit_log) if args.audit_log else None,
        adopt=args.adopt,
        lock_timeout=args.lock_timeout,
    )
    progress = _progress_printer() if sys.stderr.isatty() else None
    with Cluster.connect(args.kubeconfig, args.context, timeouts=_timeouts(args)) as cluster:
        # a running rollout's traffic is what the cluster must keep, not Git's canary number
        rollouts = read_rollouts(cluster, desired, args.inventory_namespace)
        if rollouts.warning:
            _warn(rollouts.warning)
        desired = narrowed(with_traffic(desired, rollouts.traffic))
        try:
            outcome = reconcile(desired, cluster, options, progress=progress)
        except (OwnershipConflict, PruneRefused) as refused:
            if refused.plan is not None and args.output == "text":
                _print_plan(with_rollouts(refused.plan, rollouts), argparse.Namespace(output="text", color=args.color))
            raise
        with_rollouts(outcome.plan, rollouts)
        if progress is not None:
            print(file=sys.stderr)
        status = None
        if args.wait:
            waiting = _wait_printer() if sys.stderr.isatty() else None
            status = wait_healthy(desired, cluster, args.timeout, inventory_namespace=args.inventory_namespace,
                                  allow_unknown=args.allow_unknown, progress=waiting,
                                  select=lambda m: selected.model(m["namespace"], m["name"]))
            if waiting is not None:
                print(file=sys.stderr)
    if args.output != "text":
        from agent import output

        doc = {
            "plan": output.as_dict(outcome.plan),
            "results": [
                {"ref": r.change.ref, "action": r.change.action, "outcome": r.outcome, "message": r.message}
                for r in outcome.report.results
            ],
            "requests": outcome.requests,
            "status": status,
        }
        _write_document(doc, args.output)
    else:
        _print_plan(outcome.plan, argparse.Namespace(output="text", color=args.color, quiet=args.quiet))
        verb = "would apply" if args.dry_run else "applied"
        for r in outcome.report.results:
            if args.quiet and r not in outcome.report.failed:  # -q: per-object lines of failures only
                continue
            line = f"{r.outcome:<9} {r.change.action:<7} {r.change.ref}"
            print(_visible(line + (f": {r.message}" if r.message else "")))
        if args.dry_run:
            done = len(outcome.plan.changed)
        else:
            done = sum(1 for r in outcome.report.results if r.outcome in ("applied", "deleted"))
        print(f"{verb} {done} object change(s); {len(outcome.report.failed)} failed; "
              f"requests: {_plain(dict(sorted(outcome.requests.items())))}")
        if outcome.inventory_error:
            print(_visible(f"error: the inventory was not saved: {outcome.inventory_error}"), file=sys.stderr)
        if status is not None:
            _print_status(status)
    if not outcome.ok:
        return EXIT_ERROR
    if status is not None and status.get("timedOut"):
        pending = status.get("unsettled") or []
        assert isinstance(pending, list)
        health = {f"{m['namespace']}/{m['name']}": m["health"] for m in status["models"]}
        names = ", ".join(f"{name} ({health.get(name, '?')})" for name in pending)
        hint = "" if args.allow_unknown else "; --allow-unknown accepts Unknown (no controller reports on it)"
        print(_visible(f"error: timed out after {args.timeout:g}s waiting for {len(pending)} model(s) to settle: "
                       f"{names}{hint}"), file=sys.stderr)
        return EXIT_ERROR
    if status is not None and status.get("degraded"):
        print(_visible(f"error: degraded: {', '.join(status['degraded'])}"), file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _progress_printer() -> Callable[[object], None]:
    count = [0]

    def show(result: object) -> None:
        count[0] += 1
        ref = getattr(getattr(result, "change", None), "ref", "")
        sys.stderr.write(f"\r\033[K[{count[0]}] {getattr(result, 'outcome', '')} {ref}")
        sys.stderr.flush()

    return show


def _wait_printer() -> Callable[[dict[str, Any], list[str]], None]:
    started = time.monotonic()

    def show(status: dict[str, Any], pending: list[str]) -> None:
        total = len(status["models"])
        first = f": {pending[0]}{' ...' if len(pending) > 1 else ''}" if pending else ""
        line = f"waiting {time.monotonic() - started:.0f}s: {total - len(pending)}/{total} models settled{first}"
        sys.stderr.write("\r\033[K" + _visible(line))
        sys.stderr.flush()

    return show


def _print_status(status: dict[str, object]) -> None:
    models = status.get("models")
    assert isinstance(models, list)
    print(f"{'MODEL':<36} {'VERSION':<10} {'CANARY':<12} {'SYNCED':<7} {'HEALTH':<12} LAST APPLY")
    for m in models:
        canary = "-" if not m["canary"] else str(m["canary"]["version"]) if m["canary"]["traffic"] is None \
            else f"{m['canary']['version']}@{m['canary']['traffic']}%"  # the live view may not know the traffic
        last = m["lastApply"]
        print(_visible(f"{m['namespace'] + '/' + m['name']:<36} {m['version']:<10} {canary:<12} "
              f"{_plain(m['synced']):<7} {m['health']:<12} "
              f"{last['result']} {last['commit'][:12]} {m['message']}"))
        if m.get("rollout"):
            print(_visible(f"  rollout: {_rollout_line(m['rollout'])}"))
            for note in m["rollout"].get("notes") or []:
                print(_visible(f"  note: {note}"))
    invalid = status.get("invalidCommit")
    if isinstance(invalid, dict):
        errors = invalid.get("errors") or [""]
        print(_visible(f"invalid commit {str(invalid.get('commit', ''))[:12]} at {invalid.get('time', '')} was not "
                       f"applied ({len(errors)} problem(s), first: {errors[0]}); the last good commit stays in force"))
    mark = status.get("lastSync")
    if isinstance(mark, dict):  # who last found the cluster as a commit says, and when
        by = "the controller" if mark.get("by") == "controller" else mark.get("by", "")
        following = f" following {mark['source']}" if mark.get("source") else ""
        print(_visible(f"last sync: commit {str(mark.get('commit') or 'working tree')[:12]}, "
                       f"{_dur(mark['ageSeconds'])} ago ({mark.get('time', '')}) by {by}{following}"))


def _cmd_status(args: argparse.Namespace) -> int:
    """A status (exit 0 all good, 1 not, 2 an invalid checkout: the cluster's view is shown
    anyway), or with --watch one per change until Ctrl-C (exit 0)."""
    from agent.cluster import Cluster
    from agent.pipeline import load_desired
    from agent.status_watch import Taken, take, watch

    path = _repo_path(args)
    selected = _Filter(args)
    with Cluster.connect(args.kubeconfig, args.context, timeouts=_timeouts(args)) as cluster:
        def once() -> Taken:
            taken = take(lambda: load_desired(path, args.revision), cluster, inventory_namespace=args.inventory_namespace,
                         allow_unknown=args.allow_unknown, warn=_warn,
                         keep=(lambda m: selected.model(m["namespace"], m["name"])) if selected.active else None)
            if selected.active and not taken.document["models"]:
                raise AgentError(f"no model matches {selected.describe()} in the repo")
            return taken

        if args.watch:
            return watch(once, lambda taken: _show_status(taken, args, stream=True), warn=_warn)
        taken = once()
    _show_status(taken, args)
    return taken.code


def _show_status(taken: Any, args: argparse.Namespace, stream: bool = False) -> None:
    """One status as asked (-o); `stream` (--watch): json one line per document, yaml `---` between."""
    import json

    status = taken.document
    if args.output == "json" and stream:
        sys.stdout.write(json.dumps(status, separators=(",", ":")) + "\n")
    elif args.output in ("json", "yaml"):
        if stream and args.output == "yaml":
            sys.stdout.write("---\n")
        _write_document(status, args.output)
    else:
        if stream:
            print(time.strftime("# %Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        _print_status(status)
    if taken.problems is not None:
        from agent._cli_guard import error_lines

        print(_visible(f"error: {len(taken.problems.errors)} problem(s) in the local checkout; shown is the live "
                       f"state of target {status['target']} from the cluster (synced with Git: unknown):"),
              file=sys.stderr)
        for line in error_lines(taken.problems.errors):
            print(_visible(line), file=sys.stderr)
        if not status["models"]:
            print(_visible(f"note: the cluster has no model of target {status['target']} (nothing applied yet, "
                           "or its inventory is in another --inventory-namespace)"), file=sys.stderr)


def _dur(seconds: float) -> str:
    """Compact age: 40s, 2m5s, 1h3m."""
    total = max(0, int(seconds))
    h, rest = divmod(total, 3600)
    m, sec = divmod(rest, 60)
    return (f"{h}h{m}m" if h else f"{m}m{sec}s" if m else f"{sec}s")


def _checks_text(checks: list[dict[str, Any]]) -> str:
    """The last analysis as `name=value verdict`, so a human sees why a step waits or failed."""
    def one(c: dict[str, Any]) -> str:
        value = c.get("value")
        shown = "no data" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
        verdict = {True: "ok", False: "FAILED", None: "pending"}[c.get("ok")]
        return f"{c['name']}={shown} {verdict}"

    return ", ".join(one(c) for c in checks) or "-"


def _rollout_line(r: dict[str, Any]) -> str:
    if r["step"] is None:  # an invalid state: no step, only why and the traffic held
        return str(r["message"])
    step = f"step {r['step']}/{r['steps']}" if r.get("steps") else f"step {r['step']}"
    return (f"{r['phase']} {step}, {r['traffic']}% to {r['version']}; checks: {_checks_text(r.get('checks') or [])}; "
            f"{r['message']}")


_MODEL_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _rollout_args(args: argparse.Namespace) -> None:
    """`agent rollout status [MODEL] [PATH]`: a lone argument that cannot be a model name (it
    has a / or a ., say `.` or `repo/`) is the PATH."""
    if args.path is None and args.model is not None and not _MODEL_NAME.fullmatch(args.model):
        args.path, args.model = args.model, None
    if args.path is None:
        args.path = "."


def _who(args: argparse.Namespace) -> str:
    """Who overrides a rollout, for its history, the Event and the audit log: --as, else $USER@host."""
    if args.who:
        return str(args.who)
    import getpass
    import socket

    try:
        user = os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _find_model(desired: Any, name: str, namespace: str | None) -> Any:
    found = [m for m in desired.spec.models if m.name == name and (namespace is None or m.namespace == namespace)]
    if not found:
        where = f" in namespace {namespace}" if namespace else ""
        raise AgentError(f"no model {name!r}{where} in the repo")
    if len(found) > 1:
        raise AgentError(f"model {name!r} is in several namespaces ({', '.join(m.namespace for m in found)}): "
                         "give -n NS")
    return found[0]


def _cmd_rollout(args: argparse.Namespace) -> int:
    """`agent rollout status|abort|promote|pause|resume`: see and steer the rollouts the controller drives.
    An override is written into the target's rollout ConfigMap; the controller re-reads it on
    its next tick, so no controller needs to be reachable from here."""
    from agent.cluster import Cluster, load_rollouts, rollouts_name
    from agent.pipeline import load_desired
    from agent.rollout_guard import judge_states
    from agent.status import invalid_status, rollout_status

    _rollout_args(args)
    desired = load_desired(_repo_path(args), args.revision)
    target = desired.spec.config.name
    where = f"{args.inventory_namespace}/{rollouts_name(target)}"
    if args.rollout_command != "status" or args.model is not None:
        _find_model(desired, args.model, args.namespace)  # a name not in the repo: exit 2 before any request
    with Cluster.connect(args.kubeconfig, args.context, timeouts=_timeouts(args)) as cluster:
        stored = load_rollouts(cluster, target, args.inventory_namespace)
        if args.rollout_command != "status":
            return _override(args, cluster, desired, stored, where)
        judged = judge_states(cluster, desired.spec.models, stored)
    now = time.time()
    rows = []
    for key in sorted(set(stored.states) | set(stored.invalid) | set(judged.invalid)):
        ns, _, name = key.partition("/")
        if (args.model is not None and name != args.model) or (args.namespace is not None and ns != args.namespace):
            continue
        if key in judged.invalid:
            rows.append(invalid_status(judged.invalid[key]))
        elif key in judged.states:
            rows.append(rollout_status(judged.states[key], desired, key, now))
        elif key not in {m.key for m in desired.spec.models}:
            _warn(f"the rollout state of {key} in {where} is unreadable, and its model is not in the repo")
    if args.output != "text":
        _write_document({"target": target, "rollouts": rows}, args.output)
        return EXIT_OK
    if not rows:
        print(_visible(f"no rollouts of target {target} in {where}" +
                       (f" for {args.model}" if args.model else "")))
        return EXIT_OK
    print(f"{'MODEL':<36} {'VERSION':<10} {'STRATEGY':<9} {'PHASE':<12} {'STEP':<6} {'TRAFFIC':<8} {'SINCE':<9} CHECKS")
    for r in rows:
        step = "-" if r["step"] is None else f"{r['step']}/{r['steps']}" if r.get("steps") else str(r["step"])
        since = "-" if r["sinceSeconds"] is None else _dur(r["sinceSeconds"])
        print(_visible(f"{r['model']:<36} {r['version']:<10} {r['strategy']:<9} {r['phase']:<12} {step:<6} "
                       f"{str(r['traffic']) + '%':<8} {since:<9} {_checks_text(r['checks'])}"))
        print(_visible(f"  {r['message']}"))
        for note in r.get("notes") or []:
            print(_visible(f"  note: {note}"))
    return EXIT_OK


def _override(args: argparse.Namespace, cluster: Any, desired: Any, stored: Any, where: str) -> int:
    """abort/promote/pause/resume one model's rollout: the machine's transition, saved where the
    controller reads it, audited when --audit-log is given."""
    from agent.cluster import save_rollouts
    from agent.rollout import abort, pause, promote, repair, resume
    from agent.rollout_guard import judge_states

    model = _find_model(desired, args.model, args.namespace)
    judged = judge_states(cluster, [model], stored)
    command = args.rollout_command
    who = _who(args)
    now = time.time()
    because = f"{who} ({args.reason})" if args.reason else who
    held = judged.invalid.get(model.key)
    if held is not None:  # a fresh, valid state of Git's canary: the way out of an invalid one
        try:
            transition = repair(model, held, command, now, because if command == "abort" else who)
        except ValueError as exc:
            raise AgentError(f"{model.key}: {exc}") from None
        before = ("Invalid", held.traffic, held.version)
    else:
        state = judged.states.get(model.key)
        if state is None and model.key not in stored.states and model.key not in stored.invalid:
            raise AgentError(f"{model.key} has no rollout state in {where}: no rollout of it is running "
                             "(the controller starts one when Git names a canary under spec.rollout)")
        if state is None:
            raise AgentError(f"the rollout state of {model.key} in {where} is unreadable and Git names no canary under "
                             f"spec.rollout: the controller forgets it on its next tick; nothing to {command}")
        if model.canary is None or model.canary.version != state.version or model.rollout is None:
            git = f"canary {model.canary.version}" if model.canary is not None else "no canary"
            raise AgentError(f"the stored rollout of {model.key} is of version {state.version} but Git has {git}"
                             f"{'' if model.rollout is not None else ' and no spec.rollout'}: the controller ends or "
                             f"restarts it on its next tick; nothing to {command}")
        done = {"abort": "Aborted", "promote": "Succeeded", "pause": "Paused", "resume": "Progressing"}[command]
        if state.phase == done:
            print(_visible(f"{model.key}: the rollout of {state.version} is {done} already; nothing written"))
            return EXIT_OK
        try:
            if command == "abort":
                transition = abort(state, now, because)
            elif command == "pause":
                transition = pause(state, now, because)
            elif command == "resume":
                transition = resume(state, now, who)
            else:
                transition = promote(state, model, now, who)
        except ValueError as exc:  # pause of a finished rollout, resume of one not paused
            raise AgentError(f"{model.key}: {exc}") from None
        before = (state.phase, state.traffic, state.version)
    new = transition.state
    assert new is not None
    stored.states[model.key] = new.to_json()
    save_rollouts(cluster, stored, prefer="ours")  # the override wins over a concurrent controller tick
    if args.audit_log:
        from agent.audit import AuditLog
        from agent.sync import identity

        with AuditLog(Path(args.audit_log), identity()) as audit:
            audit.write("rollout-override", model=model.key, action=args.rollout_command, who=who,
                        reason=args.reason, version=before[2],
                        phase={"from": before[0], "to": new.phase}, step=new.step,
                        traffic={"from": before[1], "to": new.traffic}, configmap=where)
    print(_visible(f"{model.key}: {transition.reason}; {new.phase} at {new.traffic}% (written to {where}; the "
                   "controller applies it on its next tick, `agent apply` does now)"))
    return EXIT_OK


def _cmd_history(args: argparse.Namespace) -> int:
    """`agent history [MODEL] [PATH]`: a model's deployments from the audit log, newest first."""
    from agent import history

    _rollout_args(args)
    if not args.audit_log:
        raise AgentError("agent history reads the audit log: --audit-log FILE (or AGENT_AUDIT_LOG), the file "
                         "agent apply and agent run --audit-log write; the controller of deploy/ keeps it in its "
                         "pod: kubectl -n modelops-system exec deploy/modelops-agent -- cat "
                         "/var/log/modelops/audit.jsonl | agent history MODEL --audit-log -")
    path = Path(args.path)
    repo = find_repo_root(args.path) or (path if _holds_repo_config(path) else None)
    target = history.target_of(repo) if repo is not None else None
    entries, notes = history.read(args.audit_log, name=args.model, namespace=args.namespace, target=target)
    for note in notes:
        print(_visible(f"note: {note}"), file=sys.stderr)
    if args.model and not entries:
        where = f" of target {target}" if target else ""
        raise AgentError(f"no deployment of a model {args.model}{' in ' + args.namespace if args.namespace else ''}"
                         f"{where} in the audit log {args.audit_log}")
    if args.output in ("json", "yaml"):
        _write_document({"auditLog": args.audit_log, "target": target, "deployments": history.public(entries)},
                        args.output)
    else:
        for line in history.table(entries):
            print(_visible(line))
    return EXIT_OK


def _cmd_audit(args: argparse.Namespace) -> int:
    from agent.audit import verify
    from agent.errors import plain_reason

    def report(ok: bool, message: str, records: int | None = None, first_bad: int | None = None) -> int:
        if args.output == "text":
            print(_visible(("ok: " if ok else "FAILED: ") + message))
        else:
            _write_document({"file": args.file, "ok": ok, "message": message, "records": records,
                             "firstBadLine": first_bad,
                             "anchor": None if anchor is None else {"seq": anchor[0], "hash": anchor[1]}}, args.output)
        return EXIT_OK if ok else EXIT_CHANGES

    anchor = None
    if args.anchor:
        seq, _, digest = args.anchor.partition(":")
        if not seq.isdigit() or not digest:
            raise AgentError(f"--anchor {args.anchor}: expected SEQ:HASH (the record's sequence number and hash)")
        anchor = (int(seq), digest)
    elif args.kubeconfig or args.target:
        from agent.cluster import AUDIT_HASH, AUDIT_SEQ, Cluster, load_inventory

        if not args.target:
            raise AgentError("--target (the RepositoryConfig name) is needed to read the anchor from the cluster")
        with Cluster.connect(args.kubeconfig, args.context, timeouts=_timeouts(args)) as cluster:
            inventory = load_inventory(cluster, args.target, args.inventory_namespace)
        if AUDIT_SEQ in inventory.annotations:
            seq = inventory.annotations[AUDIT_SEQ]
            if not seq.isdigit():
                raise AgentError(f"the inventory of target {args.target} holds no valid audit anchor: "
                                 f"{AUDIT_SEQ}={seq}")
            anchor = (int(seq), inventory.annotations.get(AUDIT_HASH, ""))
        elif inventory.entries:
            return report(False, f"the cluster has {len(inventory.entries)} object(s) of target {args.target!r} but "
                                 "no audit anchor: they were applied without an audit log, or the log was never "
                                 "anchored")
    try:
        verdict = verify(args.file, anchor)
    except OSError as exc:
        raise AgentError(f"cannot read the audit log {args.file}: {plain_reason(exc)}") from None
    return report(verdict.ok, verdict.message, verdict.records, verdict.first_bad)


def _cmd_run(args: argparse.Namespace) -> int:
    import logging
    import signal

    from agent.controller import Controller, RunConfig, describe
    from agent.source import Credentials

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.repo and not args.watch_dir:
        raise AgentError("agent run needs --repo URL (or AGENT_REPO), or --watch-dir PATH")
    if args.forge is not None and args.forge not in FORGES:  # AGENT_FORGE is not checked by argparse
        raise AgentError(f"AGENT_FORGE={args.forge}: expected one of {', '.join(FORGES)}")
    credentials = None
    if args.git_token_file or args.git_token_env or args.ssh_key_file or args.known_hosts_file or args.git_ca_file:
        credentials = Credentials(
            token_file=Path(args.git_token_file) if args.git_token_file else None, token_env=args.git_token_env,
            ssh_key_file=Path(args.ssh_key_file) if args.ssh_key_file else None,
            known_hosts_file=Path(args.known_hosts_file) if args.known_hosts_file else None,
            ca_file=Path(args.git_ca_file) if args.git_ca_file else None)
    config = RunConfig(
        repo=args.repo or str(args.watch_dir), branch=args.branch, path=args.repo_path.strip("/"),
        interval=_seconds(args.interval), resync=_seconds(args.resync), kubeconfig=args.kubeconfig,
        context=args.context, http_addr=args.http_addr or None,
        audit_log=Path(args.audit_log) if args.audit_log else None, leader_elect=args.leader_elect,
        lease_name=args.lease_name, lease_namespace=args.lease_namespace or args.inventory_namespace,
        inventory_namespace=args.inventory_namespace, drift_policy=args.drift_policy,
        prune=True if args.prune else None, watch_dir=Path(args.watch_dir) if args.watch_dir else None,
        webhook_secret_file=Path(args.webhook_secret_file) if args.webhook_secret_file else None,
        credentials=credentials, timeouts=_timeouts(args), prometheus_url=args.prometheus_url or None,
        forge=args.forge or None, forge_api_url=args.forge_api_url or None,
        registry_interval=0.0 if str(args.registry_interval).strip().lower() in ("0", "off") else
        _seconds(args.registry_interval),
        registry_sync_alias=args.registry_sync_alias or None, registry_sync_as=args.registry_sync_as,
        registry_sync_traffic=_registry_sync_traffic(args),
        verify_signatures=Path(args.verify_signatures) if args.verify_signatures else None,
    )
    if args.cache_dir:
        config.cache_dir = Path(args.cache_dir)
    controller = Controller(config)

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("modelops.controller").info("signal %d: stopping", signum)
        controller.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("modelops.controller").info("agent run: %s", describe(config))
    return controller.run()


def _registry_sync_traffic(args: argparse.Namespace) -> int:
    try:
        traffic = int(args.registry_sync_traffic)
    except ValueError:
        raise AgentError(f"--registry-sync-traffic {args.registry_sync_traffic!r} is not a whole percent") from None
    if not 0 <= traffic <= 100:
        raise AgentError(f"--registry-sync-traffic {traffic} is outside 0-100 (percent of requests to the canary)")
    return traffic


def _seconds(value: str) -> float:
    """`60`, `60s`, `5m`, `1h` -> seconds."""
    text = str(value).strip().lower()
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            number, factor = text[: -len(suffix)], scale[suffix]
            break
    else:
        number, factor = text, 1.0
    try:
        seconds = float(number) * factor
    except ValueError as exc:
        raise AgentError(f"{value!r} is not a duration (60, 60s, 5m, 1h)") from exc
    if seconds <= 0:
        raise AgentError(f"{value!r}: a duration must be positive")
    return seconds


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"AGENT_{name}", default)


def _env_flag(name: str) -> bool:
    return (os.environ.get(f"AGENT_{name}") or "").strip().lower() in ("1", "true", "yes", "on")


def _cmd_promote(args: argparse.Namespace) -> int:
    from agent import output
    from agent.promote import Change, GitAuth, connect_forge, forge_options, plan_push, promote, username_for

    if args.stable or args.rollback:
        if args.canary is not None or args.traffic is not None:
            raise AgentError(f"{'--stable' if args.stable else '--rollback'} takes no --canary or --traffic")
        change = Change("stable" if args.stable else "rollback")
    elif args.traffic is None and args.canary is None:
        raise AgentError("say what to do: --canary VERSION --traffic PCT, --traffic PCT, --stable or --rollback")
    else:  # --canary V alone: the model's spec.rollout decides the traffic (refused without one)
        change = Change("canary" if args.canary is not None else "traffic", args.canary, args.traffic)
    if change.traffic is not None and not 0 <= change.traffic <= 100:
        raise AgentError(f"--traffic {change.traffic} is outside 0-100 (percent of requests to the canary)")
    if args.open_pr and args.push is None:
        args.push = "origin"
    pushing = args.push is not None
    forge_flags = {"--base": args.base, "--forge": args.forge, "--api-url": args.api_url,
                   "--token-env": args.token_env, "--token-file": args.token_file}
    extra = [flag for flag, value in forge_flags.items() if value] + (["--ca-file"] if args.ca_file else [])
    if extra and not pushing:
        raise AgentError(f"{', '.join(extra)} need --push or --open-pr")
    path = _repo_path(args)
    target = forge = None
    auth = GitAuth(ca_file=Path(args.ca_file) if args.ca_file else None)
    if pushing:
        root = _git_root(path)
        options = forge_options(args.forge, args.api_url, args.token_env, args.token_file, args.ca_file)
        if args.open_pr and not args.dry_run:  # the token and the forge first: no commit without them
            from agent.promote import resolve_remote

            url = resolve_remote(root, args.push)
            forge, token, kind = connect_forge(url, options)
            auth = GitAuth(token=token, username=username_for(kind), ca_file=auth.ca_file)
        elif args.token_env or args.token_file:  # --push alone: a token only when one is named
            from agent.promote import read_git_token

            token = read_git_token(options)
            auth = GitAuth(token=token, username=username_for(args.forge), ca_file=auth.ca_file)
        try:
            target = plan_push(root, args.push, args.branch, args.base, auth)
        except BaseException:
            if forge is not None:
                forge.close()
            raise
    try:
        return _promote_and_publish(args, change, path, target, forge, auth, output, promote)
    finally:
        if forge is not None:
            forge.close()


def _git_root(path: str) -> Path:
    from agent.promote import git_toplevel

    return git_toplevel(Path(path))


def _promote_and_publish(args: argparse.Namespace, change: Any, path: str, target: Any, forge: Any, auth: Any,
                         output: Any, promote: Any) -> int:
    text = args.output == "text"
    say: Callable[[str], None] = (lambda line: print(_visible(line))) if text else (lambda line: None)
    outcome = promote(path, args.model, args.namespace, change, commit=args.commit or target is not None,
                      branch=args.branch, dry_run=args.dry_run)
    if text and args.dry_run:
        for line in outcome.diff.splitlines() or ["no change to the file"]:
            print(_visible(line.rstrip("\r")))
        print("\ncommit message:\n" + "\n".join("    " + line for line in outcome.message.splitlines()))
        print()
    if text:
        sys.stdout.write(output.text(outcome.plan, show_diff=False))
    if outcome.after == outcome.before:
        say(f"no change: {outcome.model} is already so; nothing written")
    elif args.dry_run:
        say("dry run: nothing written")
    elif outcome.commit:
        where = f" on branch {outcome.branch}" if outcome.branch else ""
        say(f"committed {outcome.commit[:12]}{where}: {outcome.message.splitlines()[0]}")
    else:
        say(f"wrote {outcome.file}")
    doc: dict[str, Any] = {}
    if not text:
        from agent._cli_data import promote_document

        doc = promote_document(outcome, output.as_dict(outcome.plan), dry_run=args.dry_run)
    if target is not None:
        pr = _promote_publish(args, path, target, forge, auth, outcome, doc, say)
        doc["pullRequest"] = None if pr is None else {"number": pr.number, "url": pr.url, "created": pr.created}
        if pr is not None:
            say(f"{'opened' if pr.created else 'updated'} PR #{pr.number} ({target.head} -> {target.base}): "
                f"{pr.url}")
    if not text:
        _write_document(doc, args.output)
    return EXIT_OK


def _promote_publish(args: argparse.Namespace, path: str, target: Any, forge: Any, auth: Any, outcome: Any,
                     doc: dict[str, Any], say: Callable[[str], None]) -> Any:
    """Push the promotion's branch and open or update its PR (in a dry run: say what would be
    done), told line by line through `say` and recorded in `doc` (-o json|yaml); the PR opened
    or updated, None without a forge or in a dry run."""
    from agent.promote import branch_plan, open_pull, pull_body, push, relabel, shown_url

    title = outcome.message.splitlines()[0]
    doc["push"] = {"branch": target.head, "remote": shown_url(target.url), "base": target.base, "pushed": False}
    if args.dry_run:
        say(f"dry run: would push {target.head} to {shown_url(target.url)}")
        if args.open_pr:
            body = pull_body(relabel(outcome.plan, target.base, target.head), outcome.message)
            doc["wouldOpen"] = {"head": target.head, "base": target.base, "title": title, "body": body}
            say(f"dry run: would open a PR {target.head} -> {target.base}")
            say(f"title: {title}")
            say("body:")
            for line in body.splitlines():
                say("    " + line)
        return None
    root = _git_root(path)
    try:
        push(root, target, auth)
    except AgentError as exc:
        kept = f" (the commit stays on {target.head} here: run the same command again to push it)" if (
            outcome.commit) else ""
        raise AgentError(f"{exc}{kept}") from exc
    doc["push"]["pushed"] = True
    say(f"pushed {target.head} to {shown_url(target.url)}")
    if forge is None:
        return None
    body = pull_body(branch_plan(path, root, target, auth, outcome.plan), outcome.message)
    return open_pull(forge, target, title, body)


def _cmd_registry_sync(args: argparse.Namespace) -> int:
    """`agent registry sync`: a moved alias becomes a promotion PR (agent.registry_sync)."""
    from agent.promote import GitAuth, connect_forge, forge_options, plan_push, resolve_remote, username_for
    from agent.registry_sync import plan_sync

    if args.as_ == "stable" and args.traffic is not None:
        raise AgentError("--as stable takes no --traffic (the version takes all traffic)")
    traffic = 10 if args.traffic is None else args.traffic
    if not 0 <= traffic <= 100:
        raise AgentError(f"--traffic {traffic} is outside 0-100 (percent of requests to the canary)")
    if args.open_pr and args.push is None:
        args.push = "origin"
    pushing = args.push is not None
    forge_flags = {"--base": args.base, "--forge": args.forge, "--api-url": args.api_url,
                   "--token-env": args.token_env, "--token-file": args.token_file, "--ca-file": args.ca_file}
    extra = [flag for flag, value in forge_flags.items() if value]
    if extra and not pushing:
        raise AgentError(f"{', '.join(extra)} need --push or --open-pr")
    path = _repo_path(args)
    root = _git_root(path)
    forge = None
    auth = GitAuth(ca_file=Path(args.ca_file) if args.ca_file else None)
    try:
        if pushing and not args.dry_run:
            options = forge_options(args.forge, args.api_url, args.token_env, args.token_file, args.ca_file)
            if args.open_pr:  # the token and the forge first: no commit without them
                forge, token, kind = connect_forge(resolve_remote(root, args.push), options)
                auth = GitAuth(token=token, username=username_for(kind), ca_file=auth.ca_file)
            elif args.token_env or args.token_file:
                from agent.promote import read_git_token

                auth = GitAuth(token=read_git_token(options), username=username_for(args.forge), ca_file=auth.ca_file)
        head = _registry_sync_head(root)
        proposals = plan_sync(path, args.alias, names=args.model or (), namespace=args.namespace, as_=args.as_,
                              traffic=traffic, prefix=args.branch_prefix, revision=head)
        if not proposals:
            if args.output == "text":
                print("no model pins a registry version as its stable version: nothing to follow")
            else:
                _write_document({"alias": args.alias, "proposals": []}, args.output)
            return EXIT_OK
        targets = {p.model: plan_push(root, args.push, p.branch, args.base, auth)
                   for p in proposals if pushing and not p.up_to_date}
        docs = [_registry_sync_one(args, proposal, path, root, head, targets.get(proposal.model), forge, auth)
                for proposal in proposals]
        if args.output != "text":
            _write_document({"alias": args.alias, "proposals": docs}, args.output)
        return EXIT_OK
    finally:
        if forge is not None:
            forge.close()


def _registry_sync_head(root: Path) -> str:
    from agent.promote import PromoteError, git_head

    try:
        return git_head(root)
    except PromoteError as exc:
        raise AgentError(f"{exc}: registry sync commits on top of HEAD") from exc


def _registry_sync_one(args: argparse.Namespace, proposal: Any, path: str, root: Path, head: str, target: Any,
                       forge: Any, auth: Any) -> dict[str, Any]:
    """Publish one proposal, told line by line (-o text); its document (-o json|yaml)."""
    from agent import output
    from agent._cli_data import proposal_document
    from agent.promote import shown_url
    from agent.registry_sync import publish

    text = args.output == "text"
    say: Callable[[str], None] = (lambda line: print(_visible(line))) if text else (lambda line: None)
    doc = proposal_document(proposal, None if proposal.plan is None else output.as_dict(proposal.plan),
                            dry_run=args.dry_run)
    name = f"{proposal.ref.kind} {proposal.ref.name}@{proposal.alias}" if proposal.ref.kind == "mlflow" else (
        f"{proposal.ref.kind} {proposal.ref.name}#{proposal.alias}")
    if proposal.up_to_date:
        say(f"{proposal.model}: up to date ({name} is {proposal.target}; {proposal.reason})")
        return doc
    say(f"{proposal.model}: {name} -> {proposal.target}, Git's stable pins {proposal.current}")
    title = proposal.message.splitlines()[0]
    if args.dry_run:
        if text:
            for line in proposal.diff.splitlines():
                print(_visible(line.rstrip("\r")))
            print("\ncommit message:\n" + "\n".join("    " + line for line in proposal.message.splitlines()))
            print()
            sys.stdout.write(output.text(proposal.plan, show_diff=False))
        say(f"dry run: would commit on branch {proposal.branch}"
            + (f", push it to {args.push}" if target is None and args.push else "")
            + (" and open or update its PR" if args.open_pr else ""))
        return doc
    published = publish(path, root, proposal, head, target, forge, auth)
    doc.update(commit=published.commit, pushed=published.pushed)
    if published.commit is not None:
        say(f"committed {published.commit[:12]} on branch {proposal.branch}: {title}")
    else:
        say(f"branch {proposal.branch} has this change already: no new commit")
    if not published.pushed:
        return doc
    say(f"pushed {target.head} to {shown_url(target.url)}")
    pr = published.pull_request
    if pr is None:
        return doc
    doc["pullRequest"] = {"number": pr.number, "url": pr.url, "created": pr.created}
    if pr.created:
        say(f"opened PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
    elif published.commit is None:
        say(f"already proposed: PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
    else:
        say(f"updated PR #{pr.number} ({target.head} -> {target.base}): {pr.url}")
    return doc


def _cmd_pr_comment(args: argparse.Namespace) -> int:
    from agent.promote import forge_options, post_comment, repo_url, resolve_remote

    if args.remote and args.repo:
        raise AgentError("give --remote URL or --repo OWNER/NAME, not both")
    if args.body_file == "-":
        body = sys.stdin.read()
    else:
        try:
            body = Path(args.body_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            from agent.errors import plain_reason

            reason = plain_reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
            raise AgentError(f"cannot read --body-file {args.body_file}: {reason}") from None
    if not body.strip():
        raise AgentError(f"--body-file {args.body_file} is empty: nothing to post")
    if args.repo:
        url = repo_url(args.repo, args.forge, args.api_url)
    else:
        url = args.remote or resolve_remote(Path("."), "origin")
    options = forge_options(args.forge, args.api_url, args.token_env, args.token_file, args.ca_file)
    created, comment_url = post_comment(args.number, body, args.marker, url, options)
    print(_visible(f"{'created' if created else 'updated'} comment {comment_url}"))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo, run_promotion_demo

    if args.promotion:
        return run_promotion_demo(Path(args.dir), keep=args.keep)
    return run_demo(Path(args.dir), keep=args.keep)


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", default=".", help="model repo directory (default: .)")
    p.add_argument("--revision", help="read this git commit/branch/tag instead of the working tree")
    _add_sops(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level to stderr")


def _add_sops(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--sops-age-key-file", metavar="FILE", default=default,
                   help="age identities that decrypt the repo's SOPS-encrypted files, in memory (default: "
                        "$SOPS_AGE_KEY_FILE, $SOPS_AGE_KEY and sops's keys.txt, as sops reads them)")


def _add_filter(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("-n", "--namespace", metavar="NS",
                   help=f"{verb} only objects in namespace NS (with --model: only that namespace's models of that name)")
    p.add_argument("--model", action="append", metavar="NAME",
                   help=f"{verb} only the objects of the model(s) NAME (repeatable)")


FORGES = ("github", "gitlab", "gitea")


def _add_forge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--forge", choices=list(FORGES),
                   help="the forge's kind (default: detected from the remote's URL)")
    p.add_argument("--api-url", metavar="URL",
                   help="the forge's API (default: from the remote; GitHub Enterprise, GitLab and Gitea hosts)")
    p.add_argument("--token-env", metavar="NAME",
                   help="the variable holding the API token (default GITHUB_TOKEN, GITLAB_TOKEN or GITEA_TOKEN)")
    p.add_argument("--token-file", metavar="PATH", help="a file holding the API token (instead of --token-env)")
    p.add_argument("--ca-file", metavar="PATH",
                   help="CA bundle to trust for the forge's API and the git push (a private CA)")


def _add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verify-signatures", metavar="FILE", default=_env("VERIFY_SIGNATURES") or None,
                   help="only a commit signed by a key FILE allows: an SSH allowed-signers file or an OpenPGP "
                        "public keyring (default $AGENT_VERIFY_SIGNATURES; needs --revision except for run)")


def _add_color(p: argparse.ArgumentParser) -> None:
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="color the diff: auto (default: on a terminal, unless $NO_COLOR), always or never")


def _add_output(p: argparse.ArgumentParser, help: str, extra: Sequence[str] = (), default: str = "text") -> None:
    """-o/--output: text, json and yaml (and `extra`) on every command that prints data; json
    and yaml are one document of the same shape (agent.output.document)."""
    from agent.output import FORMATS

    p.add_argument("-o", "--output", choices=[*FORMATS, *extra], default=default, help=f"output format: {help}")


def _add_cluster(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--inventory-namespace", default="modelops-system",
                   help="namespace of the inventory ConfigMap and the target's Lease (default modelops-system)")
    p.add_argument("--connect-timeout", type=float, metavar="S",
                   help="seconds to connect to the API server (default $AGENT_CONNECT_TIMEOUT or 5)")
    p.add_argument("--request-timeout", type=float, metavar="S",
                   help="seconds to wait for an answer to one request (default $AGENT_REQUEST_TIMEOUT or 20)")
    p.add_argument("--retry-budget", type=float, metavar="S",
                   help="seconds one request may spend retrying (default $AGENT_RETRY_BUDGET or 60)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate a model repo (exit 0 valid, 2 invalid)")
    _add_source(p)
    _add_output(p, "text (default); json or yaml: {valid, path, revision, counts, errors}, each error "
                   "{file, line, field, message}")
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("render", help="print the Kubernetes objects a model repo renders to")
    _add_source(p)
    _add_output(p, "yaml (default) or text: the documents separated by ---; json: one v1 List", default="yaml")
    p.add_argument("--show-secrets", action="store_true",
                   help="print Secret values (default: redacted markers, as in diffs)")
    _add_verify(p)
    p.set_defaults(handler=_cmd_render)

    p = sub.add_parser("diff", help="what would change (exit 0 none, 1 changes, 2 error)")
    _add_source(p)
    _add_filter(p, "diff")
    p.add_argument("--base", help="compare against this git revision instead of the live cluster")
    _add_output(p, "text (default), json (docs/diff-json.md), yaml (the same document) or markdown (a PR comment)",
                extra=["markdown"])
    _add_color(p)
    _add_cluster(p)
    _add_verify(p)
    p.set_defaults(handler=_cmd_diff)

    p = sub.add_parser("apply", help="make the cluster match the repo (server-side apply)")
    _add_source(p)
    _add_filter(p, "apply (no --prune with a filter)")
    _add_cluster(p)
    p.add_argument("--prune", action="store_true", help="delete managed objects no longer in the repo")
    p.add_argument("--allow-mass-prune", action="store_true", help="override the prune budget")
    p.add_argument("--dry-run", action="store_true", help="plan and audit, change nothing")
    p.add_argument("--audit-log", help="append hash-chained audit records to this file")
    p.add_argument("--conflicts", choices=["force", "skip"], default="force",
                   help="fields owned by another manager: take them (force, Git wins) or skip the object")
    p.add_argument("--concurrency", type=int, default=8, metavar="N",
                   help="objects applied at once within a phase (default 8)")
    p.add_argument("--adopt", action="store_true",
                   help="take over objects that carry another target's ownership label (refused by default)")
    p.add_argument("--lock-timeout", type=float, default=0.0, metavar="S",
                   help="seconds to wait for the target's Lease when another apply or the controller holds it "
                        "(default 0: fail at once, naming the holder)")
    p.add_argument("--no-events", action="store_true", help="do not emit Kubernetes Events")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no diff and no line per applied object: the per-model summary, failures and the totals")
    p.add_argument("--wait", action="store_true",
                   help="wait until every model has settled: Healthy or Degraded (exit 2 when Degraded, or "
                        "on timeout naming the models still Progressing or Unknown)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds to --wait (default 300)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="with --wait: Unknown health counts as settled (a cluster without the KServe controller "
                        "never reports on InferenceServices)")
    _add_output(p, "text (default): the diff, one line per object and a summary; json or yaml: plan, results, "
                   "request counts and status in one document")
    _add_color(p)
    _add_verify(p)
    p.set_defaults(handler=_cmd_apply)

    p = sub.add_parser("status", help="per model: synced, health, last apply (exit 0 all good, 1 not)",
                       description="Per model: synced, health, last apply. Exit 0 when every model is synced "
                                   "and Healthy, 1 when some model is not synced, Progressing, Degraded or Unknown "
                                   "(Unknown: no controller reports on it; accepted with --allow-unknown), "
                                   "or the controller refused a commit (a rollout aborted or rolled back is "
                                   "Degraded); 2 on error, or when the local checkout does not validate (the "
                                   "cluster's live state is shown anyway, then the problems). --watch: again on "
                                   "every change until Ctrl-C (exit 0).")
    _add_source(p)
    _add_filter(p, "show")
    _add_cluster(p)
    _add_output(p, "text (default): a table; json or yaml: the full status document")
    p.add_argument("--allow-unknown", action="store_true",
                   help="exit 0 even when a model's health is Unknown (no controller reports on it, e.g. no KServe)")
    p.add_argument("-w", "--watch", action="store_true",
                   help="print the status again whenever it changes (json: one document per line) until Ctrl-C "
                        "(exit 0)")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser("rollout", help="see and steer the controller's progressive rollouts (spec.rollout)",
                       description="The rollouts the controller drives, as stored in the ConfigMap "
                                   "modelops-rollouts-<target> (inventory namespace). abort, promote, pause and "
                                   "resume write a human override there; the controller picks it up on its next "
                                   "tick.")
    rollout_sub = p.add_subparsers(dest="rollout_command", required=True,
                                   metavar="{status,abort,promote,pause,resume}")
    for name, text in (("status", "the target's rollouts: version, phase, step, traffic, since, last checks"),
                       ("abort", "stop a model's rollout: no traffic to the new version until Git changes"),
                       ("promote", "skip a model's remaining steps: all traffic to the new version"),
                       ("pause", "hold a progressing rollout at its step: its traffic stays, no analysis, no "
                                 "advance or rollback until resumed"),
                       ("resume", "let a paused rollout go on at its step (the step's interval starts again)")):
        r = rollout_sub.add_parser(name, help=text, description=text + ". Exit 2 when the model has no rollout state.")
        if name == "status":
            r.add_argument("model", nargs="?", help="only this Model (metadata.name)")
            r.add_argument("path", nargs="?", help="model repo directory (default: .; a lone argument with / or . "
                                                   "is the PATH)")
            _add_output(r, "text (default): a table; json or yaml: {target, rollouts}")
        else:
            r.add_argument("model", help="the Model's metadata.name")
            r.add_argument("path", nargs="?", help="model repo directory (default: .)")
            r.add_argument("--as", dest="who", metavar="NAME", help="who overrides (default $USER@host)")
            r.add_argument("--audit-log", help="append a rollout-override record to this hash-chained audit log")
            if name in ("abort", "pause"):
                r.add_argument("--reason", metavar="TEXT", help="why, kept in the rollout's history and the audit log")
        r.add_argument("-n", "--namespace", metavar="NS", help="the Model's namespace (needed when the name is in several)")
        r.add_argument("--revision", help="read the repo at this git commit/branch/tag instead of the working tree")
        _add_sops(r)
        r.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level to stderr")
        _add_cluster(r)
        r.set_defaults(handler=_cmd_rollout, reason=None)

    p = sub.add_parser("history", help="a model's deployments from the audit log, newest first",
                       description="The deployments of MODEL (every model without one) read from the audit log: "
                                   "when, commit, author, pull request, versions and traffic, the result, and what "
                                   "its rollout did. PATH (default .): when it is a model repo, only its target's "
                                   "records. Exit 0; 2 when the log cannot be read or has no deployment of MODEL.")
    p.add_argument("model", nargs="?", help="the Model's name (default: every model)")
    p.add_argument("path", nargs="?", help="model repo directory (default: .)")
    p.add_argument("-n", "--namespace", metavar="NS", help="only the Model of this namespace")
    p.add_argument("--audit-log", default=_env("AUDIT_LOG"), metavar="FILE",
                   help="the audit log to read (default $AGENT_AUDIT_LOG; - reads standard input)")
    _add_output(p, "text (default): a table, newest first; json or yaml: every field")
    p.set_defaults(handler=_cmd_history)

    p = sub.add_parser("audit", help="audit log tools")
    audit_sub = p.add_subparsers(dest="audit_command", required=True)
    v = audit_sub.add_parser("verify", help="verify the hash chain (exit 0 intact, 1 broken)")
    v.add_argument("file", help="the audit log (JSON Lines) to verify")
    v.add_argument("--anchor", help="SEQ:HASH of the last committed record (default: from the cluster)")
    v.add_argument("--target", help="read the anchor from this target's inventory in the cluster")
    _add_output(v, "text (default): ok or FAILED and why; json or yaml: {file, ok, message, records, firstBadLine, "
                   "anchor}")
    _add_cluster(v)
    v.set_defaults(handler=_cmd_audit)

    p = sub.add_parser("run", help="the controller: keep the cluster as Git says (every flag also AGENT_<FLAG>)")
    p.add_argument("--repo", default=_env("REPO"), help="git remote: a path, file://, https:// or ssh:// URL")
    p.add_argument("--branch", default=_env("BRANCH", "main"), help="branch to follow (default main)")
    p.add_argument("--path", dest="repo_path", default=_env("PATH_IN_REPO", _env("REPO_PATH", "")),
                   help="directory of the model repo inside the git repo (AGENT_REPO_PATH)")
    p.add_argument("--interval", default=_env("INTERVAL", "60s"), help="poll interval, jittered (default 60s)")
    p.add_argument("--resync", default=_env("RESYNC", "10m"), help="full re-plan from the cache (default 10m)")
    p.add_argument("--http-addr", default=_env("HTTP_ADDR", ":8080"),
                   help="/healthz /readyz /metrics /webhook (default :8080; empty: none)")
    p.add_argument("--audit-log", default=_env("AUDIT_LOG"), help="append hash-chained audit records to this file")
    p.add_argument("--leader-elect", action="store_true", default=_env_flag("LEADER_ELECT"),
                   help="only the holder of the target's Lease writes")
    p.add_argument("--lease-name", default=_env("LEASE_NAME"), help="default modelops-<target>")
    p.add_argument("--lease-namespace", default=_env("LEASE_NAMESPACE"), help="default: the inventory namespace")
    p.add_argument("--drift-policy", choices=["heal", "detect"], default=_env("DRIFT_POLICY", "heal"),
                   help="live changes to managed objects: undo them (heal, default) or only report them (detect)")
    p.add_argument("--prune", action="store_true", default=_env_flag("PRUNE"),
                   help="delete managed objects no longer in the repo")
    p.add_argument("--watch-dir", default=_env("WATCH_DIR"), help="a working copy to follow instead of a remote")
    p.add_argument("--webhook-secret-file", default=_env("WEBHOOK_SECRET_FILE"),
                   help="HMAC secret that signs /webhook requests (no file: /webhook is off)")
    p.add_argument("--git-token-file", default=_env("GIT_TOKEN_FILE"), help="https token, read on every fetch")
    p.add_argument("--git-token-env", default=_env("GIT_TOKEN_ENV"), help="name of a variable holding the token")
    p.add_argument("--ssh-key-file", default=_env("SSH_KEY_FILE"), help="private key for an ssh:// remote")
    p.add_argument("--known-hosts-file", default=_env("KNOWN_HOSTS_FILE"),
                   help="known_hosts for an ssh:// remote (host keys are always checked)")
    p.add_argument("--git-ca-file", default=_env("GIT_CA_FILE"),
                   help="CA bundle to trust for an https:// remote (a private CA)")
    p.add_argument("--prometheus-url", default=_env("PROMETHEUS_URL"),
                   help="Prometheus that judges rollouts (spec.rollout analysis); none: a gated step never advances")
    p.add_argument("--forge", default=_env("FORGE") or None, choices=list(FORGES),
                   help="the forge of --repo for rollout pull requests (default: from the URL)")
    p.add_argument("--forge-api-url", default=_env("FORGE_API_URL"), help="the forge's API root (self-hosted forges)")
    p.add_argument("--registry-interval", default=_env("REGISTRY_INTERVAL", "5m"), metavar="DURATION",
                   help="how often a commit's registry aliases and stages are resolved again (and --registry-sync-"
                        "alias checked); 0 or off: only when a commit loads (default 5m)")
    p.add_argument("--registry-sync-alias", default=_env("REGISTRY_SYNC_ALIAS"), metavar="ALIAS",
                   help="for models whose stable version pins a registry version: when ALIAS (MLflow alias, GTO "
                        "stage) names another version, open a promotion PR, as `agent registry sync --open-pr`")
    p.add_argument("--registry-sync-as", default=_env("REGISTRY_SYNC_AS", "canary"), choices=["canary", "stable"],
                   help="what the proposed version becomes (default canary)")
    p.add_argument("--registry-sync-traffic", default=_env("REGISTRY_SYNC_TRAFFIC", "10"), metavar="PCT",
                   help="the proposed canary's traffic (default 10)")
    p.add_argument("--cache-dir", default=_env("CACHE_DIR_CONTROLLER"), help="git mirrors (default $AGENT_CACHE_DIR/controller)")
    _add_sops(p, _env("SOPS_AGE_KEY_FILE"))
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"), help="debug, info (default), warning or error")
    _add_verify(p)
    _add_cluster(p)
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("promote", help="edit a model's canary/stable in the repo (validated first; optionally committed)",
                       description="Edit a Model's canary and stable version in the model repo's files, keeping "
                                   "everything else of the file byte for byte. The whole repo, edit included, is "
                                   "validated (promotion gates too) before anything is written; then the model-level "
                                   "plan of the change is printed.")
    p.add_argument("model", help="the Model's metadata.name")
    p.add_argument("path", nargs="?", default=".", help="model repo directory (default: .)")
    p.add_argument("-n", "--namespace", metavar="NS", help="the Model's namespace (needed when the name is in several)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--canary", metavar="VERSION",
                      help="start or change the canary: this version, with --traffic PCT (alone when the model's "
                           "spec.rollout decides the traffic)")
    what.add_argument("--stable", action="store_true", help="make the canary version the stable version; the canary is removed")
    what.add_argument("--rollback", action="store_true", help="drop the canary (the stable version takes all traffic)")
    p.add_argument("--traffic", type=int, metavar="PCT",
                   help="percent of requests to the canary, 0-100 (alone: move an existing canary's split, "
                        "written in when the canary has none)")
    p.add_argument("--commit", action="store_true",
                   help="git commit the file with a structured message (Model, From-Version, To-Version, Traffic trailers)")
    p.add_argument("--branch", metavar="NAME",
                   help="create or switch to branch NAME, then commit there (implies --commit; refused when the "
                        "work tree has uncommitted changes)")
    p.add_argument("--push", nargs="?", const="origin", metavar="REMOTE",
                   help="after the commit, git push the branch to REMOTE (default origin; implies --commit; the "
                        "branch is --branch NAME or the current one, never the PR's base)")
    p.add_argument("--open-pr", action="store_true",
                   help="after the push, open the pull/merge request BRANCH -> BASE, or update the open one "
                        "(implies --push)")
    p.add_argument("--base", metavar="BRANCH",
                   help="the PR's base branch (default: the remote's default branch, else main)")
    _add_forge(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print the file's unified diff, the commit message and the PR it would open; write "
                        "nothing, commit, push and call no API")
    _add_output(p, "text (default): the diff (--dry-run), the plan and what was done; json or yaml: {model, file, "
                   "changed, dryRun, diff, message, commit, branch, plan, push, pullRequest}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level to stderr")
    p.set_defaults(handler=_cmd_promote)

    p = sub.add_parser("registry", help="model registry tools: follow an alias with promotion PRs",
                       description="Model registry tools.")
    registry_sub = p.add_subparsers(dest="registry_command", required=True, metavar="{sync}")
    r = registry_sub.add_parser(
        "sync", help="propose (commit, push, PR) the version an alias names now for models that pin a version",
        description="For each Model whose stable version entry pins a registry version (MLflow version, GTO "
                    "version), ask the registry which version ALIAS (MLflow alias, GTO stage) names now. When it "
                    "differs, add a version entry pinning it (when there is none), make it the canary (or stable) "
                    "with the file edited byte for byte, validate the whole repo with every reference resolved "
                    "(promotion gates on the run's metrics), commit on branch PREFIX<namespace>-<model>-<N> from "
                    "HEAD (the work tree is untouched), push and open or update its PR. Never applies anything. "
                    "Exit 0: nothing to do, or proposed; 2: error.")
    r.add_argument("path", nargs="?", default=".", help="model repo directory (default: .)")
    r.add_argument("--alias", required=True, metavar="NAME", help="the alias (MLflow) or stage (GTO) to follow")
    r.add_argument("--model", action="append", metavar="NAME", help="only the model(s) NAME (repeatable)")
    r.add_argument("-n", "--namespace", metavar="NS", help="only the models of namespace NS")
    r.add_argument("--as", dest="as_", choices=["canary", "stable"], default="canary",
                   help="what the new version becomes: canary (default, at --traffic) or stable")
    r.add_argument("--traffic", type=int, metavar="PCT", help="the canary's percent of requests (default 10)")
    r.add_argument("--branch-prefix", default="registry/", metavar="PREFIX",
                   help="the branch is PREFIX<namespace>-<model>-<version> (default registry/)")
    r.add_argument("--push", nargs="?", const="origin", metavar="REMOTE",
                   help="git push the branch to REMOTE (default origin)")
    r.add_argument("--open-pr", action="store_true",
                   help="after the push, open the pull/merge request, or update the open one (implies --push)")
    r.add_argument("--base", metavar="BRANCH",
                   help="the PR's base branch (default: the remote's default branch, else main)")
    _add_forge(r)
    r.add_argument("--dry-run", action="store_true",
                   help="print the diff, the commit message and the plan; write, commit, push and open nothing")
    _add_output(r, "text (default): a line per model and what was done; json or yaml: {alias, proposals}, one "
                   "proposal per model {model, registry, alias, registryVersion, gitVersion, upToDate, branch, "
                   "diff, plan, commit, pushed, pullRequest}")
    r.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level to stderr")
    r.set_defaults(handler=_cmd_registry_sync)

    p = sub.add_parser("pr-comment", help="keep one comment (the plan) on a pull/merge request, edited in place",
                       description="Post BODY-FILE as the comment with the marker on pull/merge request NUMBER, "
                                   "or edit that comment when it is there already (one comment per marker). A "
                                   "body over 60,000 characters is cut, with a note.")
    p.add_argument("number", type=int, help="the pull/merge request number (GitLab: the merge request IID)")
    p.add_argument("--body-file", required=True, metavar="FILE", help="the comment's Markdown; - reads stdin")
    p.add_argument("--marker", default="plan", help="which comment to keep: one per marker (default plan)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--remote", metavar="URL", help="the repository's git URL (default: the URL of origin)")
    where.add_argument("--repo", metavar="OWNER/NAME",
                       help="the repository on the forge (with --forge github|gitlab, or --api-url)")
    _add_forge(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level to stderr")
    p.set_defaults(handler=_cmd_pr_comment)

    p = sub.add_parser("demo", help="local control plane + the example repo, end to end")
    p.add_argument("--dir", default=".devcluster/demo", help="state directory for the demo cluster")
    p.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    p.add_argument("--promotion", action="store_true",
                   help="the PR-driven story instead, with a local Gitea: PR opened by agent promote, plan "
                        "commented, merged, applied through the push webhook, audited")
    p.set_defaults(handler=_cmd_demo)

    dc = sub.add_parser("devcluster", help="local etcd + kube-apiserver + controllers + kwok")
    dc_sub = dc.add_subparsers(dest="action", required=True, metavar="{up,down,status}")
    for action, text in (("up", "start the local control plane (reuses a running one; builds it on first use)"),
                         ("down", "stop it"),
                         ("status", "what runs where (exit 0 ready, 1 not)")):
        d = dc_sub.add_parser(action, help=text, description=text)
        d.add_argument("--dir", default=".devcluster", help="state directory (default .devcluster)")
        if action == "status":
            _add_output(d, "text (default): one line per field; json or yaml: {ready, directory, server, kubeconfig, "
                           "node, pids, running, ports}")
        d.set_defaults(handler=_cmd_devcluster)

    p = sub.add_parser("completion", help="print a shell completion script: bash, zsh or fish",
                       description="Print a completion script. bash: `source <(agent completion bash)`; zsh: "
                                   "`source <(agent completion zsh)`; fish: `agent completion fish | source`.")
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete in")
    p.set_defaults(handler=_cmd_completion)

    p = sub.add_parser("version", help="the agent's version and the Kubernetes/CRD versions it was tested with")
    _add_output(p, "text (default); json or yaml: {version, testedWith}")
    p.set_defaults(handler=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    if hasattr(args, "sops_age_key_file"):  # this process's age identities for SOPS files (None: as sops finds them)
        from agent.source import use_age_key_file

        use_age_key_file(args.sops_age_key_file)
    if getattr(args, "verbose", False):
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return handler(args)
    except ValidationFailed as exc:
        where = f" at {exc.revision}" if exc.revision else ""
        print(f"error: {len(exc.errors)} problem(s) in the model repo{where}:", file=sys.stderr)
        from agent._cli_guard import error_lines

        for line in error_lines(exc.errors):
            print(_visible(line), file=sys.stderr)
        return EXIT_ERROR
    except AgentError as exc:
        print(_visible(f"error: {exc}"), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception:  # exit code 1 means "changes" to scripts: a crash must not look like that
        import traceback

        traceback.print_exc()
        print("error: internal error (a bug: please report it with the traceback above)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
