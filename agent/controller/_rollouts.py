"""The controller's side of progressive delivery: drive each Model's rollout one tick at a time.

Per tick, for every model with a `spec.rollout` and a canary (or a rollout still on record):
query Prometheus for the new version's analysis, let the pure state machine (agent.rollout)
decide, keep the state in the cluster (so a restart or a new leader resumes at the same step),
and tell the reconcile pass which live traffic each model must have now. Every transition is an
Event, an audit record and a metric; the outcome goes back to Git (a commit, or a PR) so Git
stays the truth about which version serves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.cluster import Cluster, ClusterError, RolloutStates, load_rollouts, save_rollouts
from agent.controller._offloop import PrometheusCalls
from agent.controller._rollout_notices import Notices
from agent.engine import Desired, judge_states
from agent.errors import AgentError
from agent.forge import open_forge, repo_ref
from agent.promotion import Change, publish_remote
from agent.render import ObjectKey
from agent.rollout import (
    CheckResult,
    InvalidState,
    Query,
    RolloutState,
    Transition,
    abort,
    analysis_queries,
    describe,
    judge,
    step,
    traffic_override,
)
from agent.source import GitAuth
from agent.spec import Model

log = logging.getLogger("agent.controller.rollouts")

# kinds of transition that change what is stored (a "waiting" tick only refreshes the message)
_STORED = {"started", "advanced", "check-failed", "rolled-back", "succeeded", "switched", "aborted", "promoted",
           "paused", "resumed", "finished", "reset"}
_WARNING = {"check-failed", "rolled-back", "aborted"}


def _judging(model: Model, state: RolloutState, now: float) -> bool:
    """Whether the new version is under analysis now: every step of a rollout in progress, and
    a blue-green switch for its scale-down delay (a failure then switches back)."""
    if state.phase == "Progressing":
        return True
    return (state.phase == "Succeeded" and state.strategy == "blueGreen" and model.rollout is not None
            and now - state.step_started < model.rollout.scale_down_delay_seconds)


@dataclass
class WriteBack:
    """How the outcome of a rollout reaches Git: the repo the controller follows, the git auth,
    and (for pull requests) the forge."""

    url: str
    branch: str
    path: str = ""
    token: Callable[[], str | None] = lambda: None
    username: str = "x-access-token"
    ca_file: Path | None = None
    forge_kind: str | None = None
    forge_api_url: str | None = None
    ssh_command: str | None = None  # an ssh remote: the key and known_hosts the controller fetches with


@dataclass
class RolloutDriver:
    """Holds the states of one target's rollouts between ticks (the cluster has the truth)."""

    cluster: Cluster
    namespace: str
    prometheus: Any | None  # agent.metrics_source.Prometheus, or None: analysis cannot run
    record: Callable[..., None]  # audit: record(event, **fields)
    event: Callable[[Model, str, str, bool], None]  # Event on the model's object: (model, reason, message, warning)
    metric: Callable[[str, str, int, int], None]  # (model, kind, step, traffic)
    write_back: WriteBack | None = None
    target: str = ""
    # a fleet member: its environment's overlay is what a rollout's outcome edits; only the last
    # cluster of the environment's wave writes a success (the earlier ones hand the change on)
    environment: str | None = None
    writes_success: bool = True
    invalid_metric: Callable[[str, bool], None] = lambda _model, _invalid: None  # (model, held now)
    held_metric: Callable[[str, str, bool], None] = lambda _model, _kind, _held: None  # (model, hold kind, now)
    states: dict[str, RolloutState] = field(default_factory=dict)
    held: dict[str, InvalidState] = field(default_factory=dict)  # states that may not steer: traffic kept
    calls: PrometheusCalls | None = None  # the analysis queries, off the loop thread
    _reported: dict[str, str] = field(default_factory=dict)  # model key -> the invalid state last reported
    _pending: list[tuple[Model, RolloutState, str]] = field(default_factory=list)
    _retry_at: dict[str, float] = field(default_factory=dict)
    _stored: RolloutStates | None = None
    notices: Notices = field(init=False)  # holds and Git traffic a rollout does not apply, said once
    _ticked: Desired | None = None  # the desired state of the last tick, for what is said after its pass

    def __post_init__(self) -> None:
        if self.prometheus is not None and self.calls is None:
            self.calls = PrometheusCalls(self.prometheus)
        self.notices = Notices(lambda *a: self.event(*a), lambda *a: self.held_metric(*a),
                               analyses=self.calls is not None)

    def close(self) -> None:
        if self.calls is not None:
            self.calls.close()

    # --- when -----------------------------------------------------------------------------
    def period(self, desired: Desired) -> float | None:
        """How often the loop must tick for the rollouts running now (None: none is running):
        a quarter of the shortest step interval, 1-30 s, so a failing canary is caught well
        within one interval."""
        intervals = [m.rollout.interval_seconds for m in desired.spec.models
                     if m.rollout is not None and (m.canary is not None or m.key in self.states)]
        if not intervals:
            return None
        return min(30.0, max(1.0, min(intervals) / 4))

    # --- one tick -------------------------------------------------------------------------
    def tick(self, desired: Desired, *, analyse: bool = True,
             live: Mapping[ObjectKey, dict[str, Any]] | None = None) -> dict[str, int]:
        """Advance every rollout of `desired` that is due; return the live traffic per model key
        that the rollouts decide (models absent: as Git says). A stored state that may not steer
        (agent.rollout.judge_stored) keeps its model's live canary traffic and is reported once;
        `live` (the watch cache's view) is where that traffic is read, else one GET per model."""
        target = desired.spec.config.name
        if not self.states and not self.held and not any(m.rollout is not None for m in desired.spec.models):
            return {}  # no rollout here: no request (a no-op resync stays free, no RBAC needed)
        # Read the states on every tick while rollouts exist: `agent rollout abort|promote`
        # writes them from outside, and a new leader must see its predecessor's.
        self.target = target
        self._ticked = desired
        if not self._load(desired, live):
            return self._traffic()
        now = time.time()
        models = {m.key: m for m in desired.spec.models}
        due: dict[str, tuple[Model, RolloutState]] = {}
        for key, stored in self.states.items():
            git = models.get(key)
            if analyse and git is not None and git.canary is not None and git.canary.version == stored.version \
                    and _judging(git, stored, now):
                due[key] = (git, stored)
        analyses = self._analyse(desired, due)  # every model's queries at once, within one deadline
        changed = False
        rolling = {k for k, m in models.items() if m.rollout is not None} - set(self.held)
        for key in sorted(set(self.states) | rolling):
            model = models.get(key)
            state = self.states.get(key)
            if model is None:  # the model left the repo: its rollout ends with it
                if state is not None:
                    del self.states[key]
                    changed = True
                self.notices.hold(key, None, None)
                continue
            transition = step(model, state, analyses.get(key), now)
            changed |= self._apply(model, state, transition) or self.notices.refresh(key, state, transition, now)
            after = transition.state
            self.notices.hold(key, model, after)
            self.notices.traffic(model, after, desired.revision.commit)
            if (after is not None and transition.kind not in _STORED and after.phase == "Succeeded"
                    and not after.outcome_written and not _judging(model, after, now)
                    and now >= self._retry_at.get(key, 0.0)):
                # a blue-green switch that held through its scale-down delay, or an earlier write
                # to Git that failed (or whose pass did)
                self._retry_at[key] = now + 30.0
                self._pending.append((model, after, "success"))
        if changed and self._save():
            self._load(desired, live)  # another writer's change was merged in: judge it before it steers
        return self._traffic()

    def _load(self, desired: Desired, live: Mapping[ObjectKey, dict[str, Any]] | None = None) -> bool:
        """Read and judge the stored states (False: they could not be read; the last known stay)."""
        try:
            self._stored = load_rollouts(self.cluster, self.target, self.namespace)
            judged = judge_states(self.cluster, desired.spec.models, self._stored, live)
        except (ClusterError, AgentError) as exc:
            log.warning("could not read the rollout states: %s; keeping the last known", exc)
            return False
        self.states = judged.states
        self._hold(desired, judged.invalid)
        return True

    def _traffic(self) -> dict[str, int]:
        traffic = {key: percent for key, state in self.states.items()
                   if (percent := traffic_override(state)) is not None}
        traffic.update({key: held.traffic for key, held in self.held.items()})
        return traffic

    def _hold(self, desired: Desired, invalid: dict[str, InvalidState]) -> None:
        """Keep the invalid states' traffic; report each distinct one once (log, Event, audit,
        metric), and when it is valid again."""
        models = {m.key: m for m in desired.spec.models}
        for key in sorted(set(self._reported) - set(invalid)):
            del self._reported[key]
            self.invalid_metric(key, False)
            log.info("rollout of %s: the stored state is valid again", key)
        stored = self._stored
        for key, held in sorted(invalid.items()):
            raw = stored.states.get(key) if stored is not None else None
            text = (stored.invalid.get(key, ("", ""))[1] if stored is not None else "") if raw is None \
                else json.dumps(raw, sort_keys=True)
            seen = hashlib.sha256(f"{held.reason}\0{held.traffic}\0{text}".encode()).hexdigest()
            if self._reported.get(key) == seen:
                continue
            self._reported[key] = seen
            log.error("rollout of %s: %s", key, held.message)
            self.event(models[key], "RolloutStateInvalid", held.message, True)
            self.record("rollout-state-invalid", model=key, version=held.version, reason=held.reason,
                        traffic=held.traffic)
            self.invalid_metric(key, True)
        self.held = dict(invalid)

    def abort_from_alert(self, desired: Desired, model_key: str, reason: str) -> bool:
        """A firing `action: rollback` alert ends the model's Progressing rollout as `agent
        rollout abort` would (traffic 0 until Git changes), read fresh from the cluster so a
        re-delivered alert finds it already ended. True when it changed anything."""
        model = next((m for m in desired.spec.models if m.key == model_key), None)
        target = desired.spec.config.name
        if model is None:
            return False
        try:
            stored = load_rollouts(self.cluster, target, self.namespace)
        except (ClusterError, AgentError) as exc:
            log.warning("could not read the rollout states: %s", exc)
            return False
        states = {}
        for key, raw in stored.states.items():
            with contextlib.suppress(ValueError):
                states[key] = RolloutState.from_json(raw)
        state = states.get(model_key)
        if state is None or state.phase not in ("Progressing", "Paused"):  # a paused canary still serves
            return False
        self.target, self._stored, self.states = target, stored, states
        self._apply(model, state, abort(state, time.time(), who=reason))
        self._save()
        return True

    def notes(self, desired: Desired) -> dict[str, str]:
        """model key -> what its rollout is doing, for status and logs."""
        models = {m.key: m for m in desired.spec.models}
        notes = {key: describe(state, models[key]) for key, state in self.states.items() if key in models}
        notes.update({key: held.message for key, held in self.held.items()})
        return notes

    # --- parts ----------------------------------------------------------------------------
    def _analyse(self, desired: Desired, due: dict[str, tuple[Model, RolloutState]]
                 ) -> dict[str, list[CheckResult] | None]:
        """The judged checks of each model under analysis (None: nothing can judge the step, no
        Prometheus). The queries run off the loop thread; what has not answered within the
        deadline is not judged ("Prometheus did not answer within 5s"): the step holds."""
        out: dict[str, list[CheckResult] | None] = {}
        pending: dict[str, tuple[list[Query], Future[Any]]] = {}
        started = time.monotonic()
        for key, (model, state) in sorted(due.items()):
            assert model.rollout is not None
            monitors = [m for m in desired.spec.monitors if m.model_key == model.key]
            track = "canary"  # the new version's pods carry track=canary under either strategy
            queries = analysis_queries(model, monitors, desired.spec.config.metrics, state.version, track,
                                       model.rollout.interval)
            if not queries or self.calls is None:
                out[key] = [] if not queries else None  # no Prometheus: waiting, nothing can judge
                continue
            future = self.calls.query_each(key, {q.name: q.expr for q in queries})
            if future is None:
                out[key] = judge(queries, {}, unreachable=dict.fromkeys((q.name for q in queries), self.calls.busy))
                continue
            pending[key] = (queries, future)
        if self.calls is not None and pending:
            self.calls.wait([future for _, future in pending.values()], started)
        for key, (queries, future) in pending.items():
            assert self.calls is not None
            if not future.done():
                log.debug("rollout of %s: analysis not judged: %s", key, self.calls.late)
                out[key] = judge(queries, {}, unreachable=dict.fromkeys((q.name for q in queries), self.calls.late))
                continue
            down: dict[str, str] = {}
            try:
                values, errors, down = future.result()
            except AgentError as exc:
                values, errors = {}, dict.fromkeys((q.name for q in queries), str(exc))
            for name, error in sorted(errors.items()):  # said once per hold (hold reports), not per tick
                log.debug("rollout of %s: %s not judged: %s", key, name, error)
            out[key] = judge(queries, values, errors, down)
        return out

    def _apply(self, model: Model, before: RolloutState | None, transition: Transition) -> bool:
        """Take a transition on: remember it, say it (log, Event, audit, metric) and publish an
        outcome. True when the stored state changed."""
        key = model.key
        if transition.state is None:
            self.states.pop(key, None)
        else:
            self.states[key] = transition.state
        kind = transition.kind
        if kind not in _STORED:
            return False
        state = transition.state
        shown_step = state.step + 1 if state is not None else 0  # 1-based, as people see it; 0: none
        traffic = transition.traffic if transition.traffic is not None else -1
        checks = [{"name": c.name, "value": c.value, "ok": c.ok, "message": c.message}
                  for c in state.last_checks] if state is not None else []
        (log.warning if kind in _WARNING else log.info)("rollout of %s: %s: %s", key, kind, transition.reason)
        self.event(model, "Rollout" + "".join(p.capitalize() for p in kind.split("-")), transition.reason,
                   kind in _WARNING)
        self.record("rollout", model=key, transition=kind, reason=transition.reason, step=shown_step,
                    traffic=transition.traffic, version=state.version if state else (before.version if before else None),
                    checks=checks)
        self.metric(key, kind, shown_step, max(traffic, 0))
        # Git is written after the pass has put the traffic in place (publish_pending): a
        # rollback must reach the cluster first, not wait for a clone, a push and a PR.
        if state is not None and kind == "succeeded" and not state.outcome_written:
            self._pending.append((model, state, "success"))  # blue-green: after its scale-down delay
        if state is not None and kind == "rolled-back":
            self._pending.append((model, state, "rollback"))
        return True

    def publish_pending(self) -> None:
        """Write the outcomes of this tick's transitions to Git, and say what no rollout of the
        repo can do without Prometheus (called after a pass that went well: the models'
        namespaces and objects exist, so their Events can be written)."""
        if self._ticked is not None:
            self.notices.unjudgeable(self._ticked)
        pending, self._pending = self._pending, []
        changed = False
        for model, state, what in pending:
            if what == "success":
                self._publish_success(model, state)
                changed |= state.outcome_written
            else:
                self._publish_rollback(model, state)
        if changed:
            self._save()

    def _publish_success(self, model: Model, state: RolloutState) -> None:
        assert model.rollout is not None
        mode = model.rollout.on_success
        if mode == "none" or self.write_back is None or not self.writes_success:
            return
        head = f"rollout/{self._branch_prefix}{model.namespace}-{model.name}-{state.version}" if mode == "pullRequest" else None
        result = self._publish(model, Change("stable"), head)
        if result is not None:
            state.outcome_written = True
            self.record("rollout-outcome", model=model.key, version=state.version, outcome="stable", **result)

    def _publish_rollback(self, model: Model, state: RolloutState) -> None:
        assert model.rollout is not None
        if not model.rollout.revert_pull_request or self.write_back is None:
            return
        result = self._publish(model, Change("rollback"),
                               f"rollback/{self._branch_prefix}{model.namespace}-{model.name}-{state.version}")
        if result is not None:
            self.record("rollout-outcome", model=model.key, version=state.version, outcome="rolled-back", **result)

    @property
    def _branch_prefix(self) -> str:
        return f"{self.environment}/" if self.environment else ""

    def _publish(self, model: Model, change: Change, head: str | None) -> dict[str, Any] | None:
        """Push `change` (to the followed branch, or to `head` with a PR); the fields to audit,
        or None when it failed (logged; the next success/rollback tick does not retry a PR, but
        an unwritten success is retried on the next tick of its state)."""
        wb = self.write_back
        assert wb is not None
        forge = None
        work = Path(tempfile.mkdtemp(prefix="modelops-writeback-"))
        try:
            token = wb.token()
            auth = GitAuth(token=token, username=wb.username, ca_file=wb.ca_file, ssh_command=wb.ssh_command)
            if head is not None:
                if token is None:
                    raise AgentError("a pull request needs a token (--git-token-file or --git-token-env)")
                forge = open_forge(repo_ref(wb.url, wb.forge_kind, wb.forge_api_url), token, ca_file=wb.ca_file)
            published = publish_remote(wb.url, wb.branch, wb.path, model.name, model.namespace, change, auth=auth,
                                       work=work / "repo", head=head, forge=forge, environment=self.environment)
        except AgentError as exc:
            log.error("rollout of %s: could not write the outcome to Git: %s", model.key, exc)
            self.record("rollout-outcome", model=model.key, outcome="write-failed", error=str(exc)[:500])
            return None
        finally:
            if forge is not None:
                forge.close()
            shutil.rmtree(work, ignore_errors=True)
        fields: dict[str, Any] = {"pushed": published.commit}
        if published.pull_request is not None:
            fields["pull_request"] = published.pull_request.url
        log.info("rollout of %s: outcome written to Git: pushed %s%s", model.key, published.commit,
                 f", pull request {fields['pull_request']}" if "pull_request" in fields else "")
        return fields

    def _save(self) -> bool:
        """Write the states (an invalid one stays as stored, for a human to see and repair).
        True when another writer's change was merged in (the next judging must see it)."""
        stored = self._stored or RolloutStates(target=self.target, namespace=self.namespace)
        self._stored = stored
        ours = {key: state.to_json() for key, state in self.states.items()}
        kept = {key: raw for key, raw in stored.states.items() if key in self.held and key not in ours}
        stored.states = {**kept, **ours}
        stored.invalid = {key: entry for key, entry in stored.invalid.items() if key in self.held}
        try:
            save_rollouts(self.cluster, stored)  # another writer's concurrent change wins (a human override)
        except (ClusterError, AgentError) as exc:
            log.error("could not save the rollout states: %s", exc)
            self._stored = None  # read them again next time
            return False
        written = {key: raw for key, raw in stored.states.items() if key not in self.held}
        if written == ours:
            return False
        merged = {}
        for key, raw in written.items():
            with contextlib.suppress(ValueError):
                merged[key] = RolloutState.from_json(raw)
        self.states = merged  # the next tick starts from what was written (judged again)
        return True
