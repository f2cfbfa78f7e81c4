"""`agent run`: keep the cluster as Git says, without anyone typing a command.

One loop thread takes triggers from a queue and runs a pass (source -> spec -> render -> plan
-> sync -> audit): a poll of the remote (each interval, jittered), a webhook push, a watch event
on an object we manage, a periodic resync, a change in a `--watch-dir` working copy. The parts,
each its own module:

  _triggers    TriggerQueue (coalesced triggers from any thread) and Timers (the timed ones)
  _source      SourceFollower: fetch and load commits, invalid ones refused; the desired state
  _gate        WriteGate: drift policy and fight back-off, pure and clocked
  _live        LiveState: the watch cache and its echo filter (agent.cache.EchoFilter)
  _leadership  Leadership: the Lease-holding thread, exposing only `leading` / `changed`
  _marks       what is recorded on the inventory (last sync, last invalid commit)

Threads and what they own. The LOOP thread (`run`) owns all mutable state below: `inventory`,
`rollouts` (and its target), the source follower, the gate, `outcomes`, `_applied*`, `status`.
Other threads only call `request()` on the trigger queue: the HTTP server (webhook, alerts,
whose firing alerts wait in AlertActions' own locked list), the cache's watch threads (through
the echo filter), the `--watch-dir` observer and the election thread (which also sets the
`leader` metric and its two events). On a leadership change the loop, not the election thread,
forgets the inventory and the rollout states the previous leader may have written.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from agent.cluster import Cluster, ClusterError, Inventory, load_inventory
from agent.controller._alerts import AlertActions, FiringAlert
from agent.controller._config import RunConfig, following
from agent.controller._feed import DesiredSource
from agent.controller._gate import WriteGate
from agent.controller._http import HttpServer
from agent.controller._leadership import Leadership
from agent.controller._live import LiveState
from agent.controller._marks import annotate_invalid, mark_synced
from agent.controller._memory import settle
from agent.controller._metrics import Metrics
from agent.controller._notices import PassNotices, publish, record_and_tell
from agent.controller._registry import RegistryFollower
from agent.controller._rollout_setup import model_event, rollout_driver, rollout_where
from agent.controller._serve import serve, ui_app
from agent.controller._signers import SignersFile
from agent.controller._source import SourceFollower, Status
from agent.controller._triggers import Timers, Trigger, TriggerQueue, watch_directory
from agent.controller._write_access import WriteAccess
from agent.engine import CacheView, Desired, Engine, EngineOptions, SyncResult, last_sync, with_traffic
from agent.errors import AgentError
from agent.notify import NullSink, Sink, open_notifier
from agent.rollout import LiveRollouts
from agent.source import Mirror
from agent.ui import Board

log = logging.getLogger("modelops.controller")


class Controller:
    """The loop. `run()` returns when `stop()` is called (SIGTERM): the current object is
    finished or abandoned, the audit log flushed, the Lease released."""

    def __init__(self, config: RunConfig, cluster: Cluster | None = None, *, source: DesiredSource | None = None,
                 labels: Mapping[str, str] | None = None, on_pass: Callable[[], None] | None = None,
                 board: Board | None = None, notify: Sink | None = None) -> None:
        """`source`: where the desired state comes from (default: a SourceFollower of
        `config.repo`, fetching itself; a fleet member gets a FeedSource). `labels` (cluster,
        environment) name this controller in its audit records; `on_pass` is called by the
        loop thread after each pass (a fleet re-judges its waves). `board` (the web UI's) and
        `notify` (where Events go) are the fleet's when it runs this controller; by default
        its own (`--notify`; the board is served by `run`)."""
        self.config = config
        self.labels = dict(labels or {})
        self.on_pass = on_pass
        signers = None
        if config.verify_signatures is not None:  # checked first: a bad file stops the start (exit 2)
            if config.watch_dir is not None:
                raise AgentError("--verify-signatures needs --repo: a working copy (--watch-dir) has no commit "
                                 "to verify")
            signers = SignersFile(config.verify_signatures)
        self.metrics = Metrics()
        self._own_cluster = cluster is None
        self.cluster = cluster or Cluster.connect(config.kubeconfig, config.context, timeouts=config.timeouts)
        self.board = board or Board()
        self._own_notify = notify is None
        self.notify: Sink = notify or (open_notifier(config.notify, cluster=self.cluster, metrics=self.metrics,
                                                     ui_url=config.ui_url, repo=config.repo) if config.notify else NullSink())
        self.notices = PassNotices(self.notify, self.labels)
        self.triggers = TriggerQueue(self.metrics.set_queue_depth)
        self._stop = threading.Event()
        mirror = None
        if config.watch_dir is None and source is None:
            mirror = Mirror(config.repo, config.branch, config.cache_dir, credentials=config.credentials)
        self.status = Status()
        self.inventory: Inventory | None = None
        self.leadership = Leadership(self.cluster, config.lease_namespace, config.identity,
                                     duration=config.lease_duration, name=config.lease_name, stop=self._stop,
                                     on_leading=self.metrics.set_leader, on_gained=lambda: self.request("resync"))
        self.gate = WriteGate(config.drift_policy, self.metrics.drift)
        # Each pass plans against the watch cache (a CacheView, no request); the engine's own view
        # (LISTs) is only for planning again under the Lease when someone else wrote the target
        # since the plan. The rollouts' traffic is the loop's own (self.rollouts.tick), not read by
        # the engine; a held-back canary is added by the pass after the watch brings the stable
        # revision's Ready status, not waited for (stage_timeout 0).
        self.engine = Engine(self.cluster, EngineOptions(
            prune=config.prune, audit_log=config.audit_log, inventory_namespace=config.inventory_namespace,
            audit_noop=False, lock_timeout=30.0, stop=self._stop, synced_by="controller",
            sync_source=following(config), rollout_traffic=False, stage_timeout=0, audit_fields=self.labels))
        self.live = LiveState(self.cluster, on_change=lambda: self.request("watch"))
        self.http: HttpServer | None = None
        self._watcher: Any = None  # the --watch-dir observer (watchdog)
        self._worker_alive = False
        self.outcomes: list[tuple[Trigger, SyncResult]] = []  # the recent ones, for tests and status
        self._applied: Desired | None = None  # the desired state last written in full
        self._applied_traffic: dict[str, int] = {}  # the rollouts' traffic of the last full write
        self.rollouts = rollout_driver(config, self.cluster, mirror, self.metrics, self._audit, self.labels)
        self.rollout_period: float | None = None  # how often rollouts need a tick now (None: none runs)
        # --- Monitor actions (rollback/retrain on firing alerts; agent/controller/_alerts.py) ---
        self.alert_actions = AlertActions(self.cluster, self.rollouts.calls, self.rollouts.abort_from_alert,
                                          record=self._audit, event=partial(model_event, self.cluster,
                                                                            where=rollout_where(self.labels)),
                                          metric=self.metrics.retrain_job)
        # --- end Monitor actions ---
        self.registry = RegistryFollower(config.registry_interval, record=self._audit,
                                         sync_alias=config.registry_sync_alias, sync_as=config.registry_sync_as,
                                         sync_traffic=config.registry_sync_traffic,
                                         write_back=self.rollouts.write_back)
        write_access = WriteAccess(mirror, registry_sync=config.registry_sync_alias is not None,
                                   has_token=config.credentials is not None and config.credentials.has_token)
        self.source: DesiredSource = source or SourceFollower(where=config.watch_dir, path=config.path, mirror=mirror,
                                     interval=config.interval, signers=signers, write_access=write_access,
                                     registry=self.registry, cluster=self.cluster,
                                     inventory_namespace=config.inventory_namespace, metrics=self.metrics,
                                     status=self.status, record=self._audit, annotate=self._annotate_invalid)

    # what the source follower and the status say, as the controller's own (tests, bench, status)
    @property
    def desired(self) -> Desired | None:
        return self.source.desired

    @property
    def commit(self) -> str:
        return self.source.commit

    @property
    def fetched(self) -> str:
        return self.source.fetched

    @property
    def invalid(self) -> dict[str, Any]:
        return self.source.invalid

    @property
    def applied(self) -> Desired | None:
        """The desired state (as its source gave it) that the last full write applied."""
        return self._applied

    @property
    def ready(self) -> bool:
        return self.status.ready

    @property
    def last_error(self) -> str:
        return self.status.last_error

    @property
    def source_error(self) -> str:
        return self.status.source_error

    @property
    def registry_error(self) -> str:
        return self.status.registry_error

    def _audit(self, event: str, **fields: Any) -> None:
        """One audit record, naming the commit in force unless `fields` names another, and the
        Events it makes."""
        record_and_tell(self.config, self.notify, self.source.desired, event,
                        {"commit": self.source.commit, **self.labels, **fields})

    # --- triggers (any thread) ----------------------------------------------------------------
    def request(self, trigger: Trigger) -> None:
        """Ask for a pass; a trigger already waiting is not queued twice."""
        self.triggers.request(trigger)

    def _on_push(self, _commit: str | None) -> None:
        self.request("webhook")

    def _on_alerts(self, alerts: list[FiringAlert]) -> None:
        """Alertmanager pushed firing alerts (Monitor actions): acted on in the next pass."""
        self.alert_actions.push(alerts)
        self.request("rollout")

    def _health(self) -> tuple[bool, str]:
        if not self._worker_alive:
            return False, "the reconcile loop is not running"
        return True, "ok"

    def _ready(self) -> tuple[bool, str]:
        status = self.status
        if status.ready:
            return True, "ok"
        return False, status.last_error or status.source_error or "no successful sync yet"

    # --- lifecycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self.triggers.wake()

    def run(self) -> int:
        """Serve until stop(); 0 on a clean stop."""
        config = self.config
        self.http = serve(config.http_addr, config.webhook_secret_file, config.branch, health=self._health,
                          ready=self._ready, metrics=self.metrics, on_push=self._on_push, on_alerts=self._on_alerts,
                          ui=ui_app(config, self.board), ui_addr=config.ui_addr)
        if config.watch_dir is not None:
            self._watcher = watch_directory(config.watch_dir, lambda: self.request("poll"))
        self._worker_alive = True
        try:
            self._loop()
        finally:
            self._worker_alive = False
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.join(timeout=5)
        self.leadership.close()
        self.live.stop()
        self.rollouts.close()  # Prometheus calls still running end by their own timeout
        if self.http is not None:
            self.http.stop()
        if self._own_notify:
            self.notify.close()
        if self._own_cluster:
            self.cluster.close()

    def _loop(self) -> None:
        config = self.config
        timers = Timers(config.resync, time.monotonic())
        self.request("startup")
        while not self._stop.is_set():
            now = time.monotonic()
            timers.follow_registry(self.registry.wanted(self.source.desired), config.registry_interval, now)
            trigger = self.triggers.take(timers.wait(now, self.gate.due(now)))
            if self._stop.is_set():
                break
            if trigger is None:
                trigger = timers.fired(time.monotonic())
            log.debug("trigger: %s", trigger)
            if trigger in ("poll", "startup", "webhook"):
                delay = self.source.fetch()
                timers.polled(time.monotonic(), delay, config.interval)
            if trigger == "resync":
                timers.resync = time.monotonic() + config.resync
            if trigger == "registry":
                timers.registry = time.monotonic() + config.registry_interval
                if not self.source.registry_tick(may_propose=not config.leader_elect or self.leadership.is_leader()):
                    continue  # nothing moved: no pass
            self.pass_once(trigger)
            period = self.rollout_period
            timers.rollout = time.monotonic() + period if period is not None else float("inf")

    # --- leadership and the inventory (loop thread) --------------------------------------------
    def may_write(self, target: str) -> bool:
        """Loop thread: whether this controller writes now (starts the election the first time)."""
        if not self.config.leader_elect:
            return True
        self.leadership.start(target)
        leading = self.leadership.is_leader()
        if self.leadership.take_change():  # gained or lost: what the previous leader wrote is read again
            self.inventory = None
            self.rollouts.target = ""
        return leading

    def _inventory(self, target: str) -> Inventory:
        if self.inventory is None or self.inventory.target != target:
            self.inventory = load_inventory(self.cluster, target, self.config.inventory_namespace)
        return self.inventory

    def _annotate_invalid(self, value: str | None) -> None:
        """Record the invalid commit on the inventory (None: remove it), where `agent status`
        shows it. Only a writer does (the leader, with --leader-elect)."""
        if self.inventory is None or self.source.desired is None:
            return
        if self.config.leader_elect and not self.leadership.is_leader():
            return
        annotate_invalid(self.cluster, self.inventory, value)

    # --- one pass (loop thread) ---------------------------------------------------------------
    def pass_once(self, trigger: Trigger) -> None:
        """One pass over the desired state in force (what a trigger leads to; the bench calls it),
        counted once done by role (`modelops_agent_passes_total{role}`)."""
        desired = self.source.desired
        if desired is None:
            return
        writer = False
        try:
            writer = self._pass(trigger, desired)
        finally:
            self.metrics.passed("leader" if writer else "follower")
            if self.on_pass is not None:
                self.on_pass()

    def _pass(self, trigger: Trigger, desired: Desired) -> bool:
        """False: a follower's pass (it keeps its source current and waits)."""
        target = desired.spec.config.name
        started = time.monotonic()
        try:
            if not self.may_write(target):
                return False
            inventory = self._inventory(target)
            self.live.manage(desired, inventory)
            self.alert_actions.act(desired)  # Monitor actions: before the tick, so an abort applies now
            # the cache follows the kinds of `desired`, which a rollout's traffic does not change
            view = self.live.view(desired, inventory)
            traffic = self.rollouts.tick(desired, live=view)
            self.rollout_period = self.rollouts.period(desired)
            # a new commit (or working copy), or a rollout's new step, applies whatever the drift policy
            new_commit = desired is not self._applied or traffic != self._applied_traffic
            if desired is not self._applied:
                self.notices.picked_up(desired, synced=str((last_sync(inventory.annotations, time.time()) or {})
                                                            .get("commit", "")))
            effective = with_traffic(desired, traffic)  # the board's too: its status documents need no re-render
            outcome = self._sync_once(effective, view, inventory, new_commit)
            self.notices.after(desired, outcome, new_commit)
        except (AgentError, ClusterError) as exc:
            self.status.last_error = str(exc)
            self._publish_error(str(exc))
            log.error("%s pass failed: %s", trigger, exc)
            if isinstance(exc, ClusterError):
                self.inventory = None  # read it again next time
            if isinstance(exc, ClusterError) or self.cluster.breaker.down:
                self.status.unreachable = str(exc)[:500]
            return True
        finally:
            self.live.manage(desired, self.inventory)
        self.status.unreachable = ""
        self.outcomes = [*self.outcomes[-19:], (trigger, outcome)]
        self._after(trigger, outcome, desired, traffic, inventory, started)
        self._publish(effective, view, inventory, traffic, outcome)  # with this pass's error and last-sync mark
        return True

    def _publish(self, desired: Desired, view: dict[Any, dict[str, Any]], inventory: Inventory,
                 traffic: dict[str, int], outcome: SyncResult) -> None:
        """The pass on the web UI's board: the desired state, the view it planned from, the
        rollouts as this pass left them."""
        rollouts = LiveRollouts(states=dict(self.rollouts.states), traffic=dict(traffic),
                                invalid=dict(self.rollouts.held))
        publish(self.board, desired, view, dict(inventory.annotations), rollouts, self.labels, outcome=outcome,
                error="" if outcome.ok else self.status.last_error, prometheus=self.rollouts.prometheus,
                audit_log=self.config.audit_log)

    def _publish_error(self, error: str) -> None:
        """A failed pass: the board keeps what it last showed, with why this pass failed."""
        desired = self.source.desired
        if desired is None:
            return
        key = (desired.spec.config.name, self.labels.get("environment", ""), self.labels.get("cluster", ""))
        last = next((e for e in self.board.entries() if e.key == key), None)
        if last is not None:
            self.board.publish(dataclasses.replace(last, error=error[:500], at=time.time()))

    def _sync_once(self, effective: Desired, view: dict[Any, dict[str, Any]], inventory: Inventory,
                   new_commit: bool) -> SyncResult:
        """Plan `effective` against the live `view` and write what the gate allows: the one place
        the controller calls the engine."""
        return self.engine.apply(effective, self.live.wrote, view=CacheView(view.values(), inventory),
                                 lease=self.leadership.lease if self.config.leader_elect else None,
                                 writes=lambda plan: self.gate.allow(plan, new_commit, time.monotonic()))

    def _after(self, trigger: Trigger, outcome: SyncResult, desired: Desired, traffic: dict[str, int],
               inventory: Inventory, started: float) -> None:
        """What a pass's outcome leads to: metrics, readiness, the last-sync mark, a log line."""
        if outcome.ok:
            self.rollouts.publish_pending()
        results = outcome.report.results
        applied = sum(1 for r in results if r.outcome == "applied")
        pruned = sum(1 for r in results if r.outcome == "deleted")
        failed = sum(1 for r in results if r.outcome == "failed")
        self.metrics.observe_reconcile(trigger, time.monotonic() - started, applied, pruned, failed)
        staged = any(note.phase == "Staged" for note in outcome.plan.rollouts.values())
        commit = self.source.commit
        if outcome.ok and (results or not outcome.plan.has_changes):
            if not staged:  # a held-back canary is still Git's to apply, whatever the drift policy
                if desired is not self._applied:
                    settle()  # the new state is long-lived: out of the collector's way
                self._applied = desired
                self._applied_traffic = traffic
            self.status.ready = True
            self.status.last_error = ""
            self.metrics.synced(commit or "working-tree")
            if not mark_synced(self.cluster, inventory, commit, following(self.config), self.config.sync_mark_every):
                self.inventory = None  # read it again next pass (someone else wrote it, or it is gone)
        elif not outcome.ok:
            failures = "; ".join(f"{r.change.ref}: {r.message}" for r in outcome.report.failed)
            self.status.last_error = (outcome.inventory_error or failures)[:500]
        if applied or pruned or failed:
            log.info("%s: %d applied, %d pruned, %d failed (commit %s)", trigger, applied, pruned, failed,
                     commit[:12] or "working tree")
