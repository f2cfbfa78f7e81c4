"""`agent run`: keep the cluster as Git says, without anyone typing a command.

One worker thread takes triggers from a queue and runs the pipeline (source -> spec -> render
-> plan -> sync -> audit): a poll of the remote (each interval, jittered; a head check first,
a fetch only when it moved), a webhook push, a watch event on an object we manage, a periodic
resync, a change in a `--watch-dir` working copy. Live state comes from a watch-fed cache, so a
resync with nothing changed costs no API request. An invalid commit applies nothing: the last
good commit stays in force and the failure is reported (log, metric, Event, audit record).
Drift between commits is healed (`heal`) or only reported (`detect`); an object someone keeps
rewriting is healed with a growing delay and reported, naming the other field manager, instead
of in a hot loop. With `--leader-elect` only the holder of the target's Lease writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agent._desired_cache import cache_root
from agent.apply import ObjectResult, make_event
from agent.cache import LiveCache
from agent.cluster import (
    FIELD_MANAGER,
    INVENTORY_NAMESPACE,
    LAST_INVALID,
    LAST_SYNC,
    Cluster,
    ClusterError,
    Inventory,
    KindInfo,
    LeaseHeld,
    TargetLease,
    Timeouts,
    load_inventory,
    sync_mark,
)
from agent.controller._alerts import AlertActions, FiringAlert
from agent.controller._http import HttpServer, parse_http_addr
from agent.controller._metrics import Metrics
from agent.controller._registry import RegistryFollower, SyncAs
from agent.controller._rollouts import RolloutDriver, WriteBack
from agent.controller._signers import SignersFile
from agent.controller._webhook import read_webhook_secret
from agent.controller._write_access import WriteAccess, WriteAccessDenied
from agent.errors import AgentError, SignatureError, SourceError, ValidationFailed
from agent.pipeline import Desired, has_registry_refs, load_desired, resolve_registries, with_traffic
from agent.plan import Plan
from agent.reconcile import Options, Outcome, observed_from, reconcile, selector
from agent.registry import RegistryError
from agent.render import ObjectKey, object_key
from agent.source import Backoff, Credentials, Mirror, redact_url
from agent.spec import Loader, group_of
from agent.status import last_sync

log = logging.getLogger("modelops.controller")

Trigger = Literal["poll", "webhook", "watch", "resync", "startup", "rollout", "registry"]
DriftPolicy = Literal["heal", "detect"]


def _default_cache_dir() -> Path:
    return cache_root() / "controller"


@dataclass
class RunConfig:
    """Everything `agent run` takes (each flag also from an AGENT_* variable, see cli.py)."""

    repo: str
    branch: str = "main"
    path: str = ""
    interval: float = 60.0
    resync: float = 600.0
    kubeconfig: str | None = None
    context: str | None = None
    http_addr: str | None = ":8080"
    audit_log: Path | None = None
    leader_elect: bool = False
    lease_name: str | None = None
    lease_namespace: str = INVENTORY_NAMESPACE
    inventory_namespace: str = INVENTORY_NAMESPACE
    drift_policy: DriftPolicy = "heal"
    prune: bool | None = None
    watch_dir: Path | None = None
    webhook_secret_file: Path | None = None
    cache_dir: Path = field(default_factory=_default_cache_dir)
    credentials: Credentials | None = None
    timeouts: Timeouts | None = None
    lease_duration: int = 15
    # progressive delivery (spec.rollout): where the analysis queries go, and the forge that
    # receives a rollout's pull request (onSuccess: pullRequest, revertPullRequest)
    prometheus_url: str | None = None
    forge: str | None = None
    forge_api_url: str | None = None
    # model registries: how often a commit's aliases/stages are resolved again, and
    # the alias whose moves become promotion PRs for models that pin a registry version
    registry_interval: float = 300.0
    registry_sync_alias: str | None = None
    registry_sync_as: SyncAs = "canary"
    registry_sync_traffic: int = 10
    verify_signatures: Path | None = None  # only commits signed by a key this file allows apply
    sync_mark_every: float = 300.0  # seconds: how stale the inventory's last-sync mark may get when nothing changes
    identity: str = field(default_factory=lambda: f"{FIELD_MANAGER}@{socket.gethostname()}/{os.getpid()}")


@dataclass
class _Fight:
    """Heals of one object in a row: someone keeps rewriting it."""

    heals: list[float] = field(default_factory=list)
    delay: float = 0.0
    until: float = 0.0
    managers: str = ""


class Controller:
    """The loop. `run(stop)` returns when `stop` is set (SIGTERM): the current object is
    finished or abandoned, the audit log flushed, the Lease released."""

    FIGHT_WINDOW = 60.0
    FIGHT_HEALS = 3

    def __init__(self, config: RunConfig, cluster: Cluster | None = None) -> None:
        self.config = config
        self.signers: SignersFile | None = None
        if config.verify_signatures is not None:  # checked first: a bad file stops the start (exit 2)
            if config.watch_dir is not None:
                raise AgentError("--verify-signatures needs --repo: a working copy (--watch-dir) has no commit "
                                 "to verify")
            self.signers = SignersFile(config.verify_signatures)
        self.metrics = Metrics()
        self._own_cluster = cluster is None
        self.cluster = cluster or Cluster.connect(config.kubeconfig, config.context, timeouts=config.timeouts)
        self._queue: queue.Queue[Trigger | None] = queue.Queue()
        self._pending: set[Trigger] = set()
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self.mirror: Mirror | None = None
        if config.watch_dir is None:
            self.mirror = Mirror(config.repo, config.branch, config.cache_dir, credentials=config.credentials)
        self.write_access = WriteAccess(self.mirror, registry_sync=config.registry_sync_alias is not None,
                                        has_token=config.credentials is not None and config.credentials.has_token)
        self.loader = Loader()  # its reuse of the previous commit's parsed files is this controller's own
        self.desired: Desired | None = None  # the last good commit
        self._unresolved: Desired | None = None  # the same, its registry references unresolved
        self._where: Path | None = None  # the model repo of self.desired (for a registry's relative paths)
        self.commit = ""  # the commit of self.desired ("" for a working copy)
        self.fetched = ""  # the newest commit seen, good or not
        self.invalid: dict[str, Any] = {}  # the newest invalid commit and its errors
        self.inventory: Inventory | None = None
        self.cache: LiveCache | None = None
        self.lease: TargetLease | None = None
        self._elector: threading.Thread | None = None
        self._leader = threading.Event()
        self.ready = False
        self.last_error = ""  # of the last pass (plan/apply), or why the first sync has not happened
        self.source_error = ""  # of the last fetch ("" once the remote answers again)
        self.registry_error = ""  # why the newest commit's registry references did not resolve ("" once they do)
        self.fights: dict[ObjectKey, _Fight] = {}
        self.http: HttpServer | None = None
        self._watcher: Any = None
        self._worker_alive = False
        self._source_backoff = Backoff(initial=2.0, maximum=max(2.0, 5 * config.interval))
        self.outcomes: list[tuple[Trigger, Outcome]] = []  # the recent ones, for tests and status
        self._applied: Desired | None = None  # the desired state last written in full
        # objects as our last writes returned them, until the watch brings their echo: a pass
        # in between plans against these, not against the cache's older copies
        self._written: dict[ObjectKey, dict[str, Any]] = {}
        self._written_lock = threading.Lock()
        self._keys: frozenset[ObjectKey] = frozenset()
        self._cached_for: Desired | None = None  # the desired state the cache's namespaces follow
        self._managed_namespaces: dict[tuple[str, str], frozenset[str]] = {}
        self._cached_inventory: Inventory | None = None  # the inventory object the cache's kinds follow
        self.rollouts = self._rollout_driver()
        self._applied_traffic: dict[str, int] = {}  # the rollouts' traffic of the last full write
        self.rollout_period: float | None = None  # how often rollouts need a tick now (None: none runs)
        # --- Monitor actions (rollback/retrain on firing alerts; agent/controller/_alerts.py) ---
        self.alert_actions = AlertActions(self.cluster, self.rollouts.calls, self.rollouts.abort_from_alert,
                                          record=self._audit, event=self._rollout_event,
                                          metric=self.metrics.retrain_job)
        # --- end Monitor actions ---
        self.registry = RegistryFollower(config.registry_interval, record=self._audit,
                                         sync_alias=config.registry_sync_alias, sync_as=config.registry_sync_as,
                                         sync_traffic=config.registry_sync_traffic,
                                         write_back=self.rollouts.write_back)

    def _rollout_driver(self) -> RolloutDriver:
        config = self.config
        prometheus = None
        if config.prometheus_url:
            from agent.metrics_source import Prometheus

            prometheus = Prometheus(config.prometheus_url)
        write_back = None
        if config.watch_dir is None:
            credentials = config.credentials
            write_back = WriteBack(
                url=config.repo, branch=config.branch, path=config.path,
                token=(credentials.token if credentials is not None and credentials.has_token else lambda: None),
                username=credentials.username if credentials is not None else "x-access-token",
                ca_file=credentials.ca_file if credentials is not None else None,
                forge_kind=config.forge, forge_api_url=config.forge_api_url,
                ssh_command=self.mirror.ssh_command() if self.mirror is not None and credentials is not None
                and credentials.has_ssh else None)
        return RolloutDriver(self.cluster, config.inventory_namespace, prometheus, record=self._audit,
                             event=self._rollout_event, metric=self.metrics.rollout, write_back=write_back,
                             invalid_metric=self.metrics.rollout_state_invalid,
                             held_metric=self.metrics.rollout_held)

    def _audit(self, event: str, **fields: Any) -> None:
        if self.config.audit_log is None:
            return
        from agent.audit import AuditLog

        with AuditLog(self.config.audit_log, self.config.identity) as audit:
            audit.write(event, commit=self.commit, **fields)

    def _rollout_event(self, model: Any, reason: str, message: str, warning: bool) -> None:
        """An Event on the model's serving object, where `kubectl describe` shows it."""
        if model.backend == "kserve":
            involved = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService"}
        else:
            involved = {"apiVersion": "v1", "kind": "Service"}
        involved.update(namespace=model.namespace, name=model.name)
        event = make_event(involved, reason, message, warning=warning)
        with contextlib.suppress(ClusterError, AgentError):
            self.cluster.request("POST", f"/api/v1/namespaces/{model.namespace}/events", body=event, retries=0)

    # --- triggers ---------------------------------------------------------------------------
    def request(self, trigger: Trigger) -> None:
        """Ask for a pass; a trigger already waiting is not queued twice."""
        with self._pending_lock:
            if trigger in self._pending:
                return
            self._pending.add(trigger)
            self.metrics.set_queue_depth(len(self._pending))
        self._queue.put(trigger)

    def _take(self, timeout: float) -> Trigger | None:
        item = self._queue.get(timeout=timeout)
        if item is not None:
            with self._pending_lock:
                self._pending.discard(item)
                self.metrics.set_queue_depth(len(self._pending))
        return item

    def _on_push(self, _commit: str | None) -> None:
        self.request("webhook")

    def _on_alerts(self, alerts: list[FiringAlert]) -> None:
        """Alertmanager pushed firing alerts (Monitor actions): acted on in the next pass."""
        self.alert_actions.push(alerts)
        self.request("rollout")

    def _on_watch(self, _event: str, key: ObjectKey, obj: dict[str, Any]) -> None:
        """An object we manage changed. The echo of our own write (the resourceVersion our
        apply returned) is no news: it only tells that the cache has caught up."""
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        with self._written_lock:
            mine = self._written.get(key)
            if mine is not None and (mine.get("metadata") or {}).get("resourceVersion") == rv:
                del self._written[key]
                return
        if self._is_ours(key):
            self.request("watch")

    def _is_ours(self, key: ObjectKey) -> bool:
        inventory = self.inventory
        return key in self._keys or (inventory is not None and key in inventory.entries)

    # --- probes -----------------------------------------------------------------------------
    def _health(self) -> tuple[bool, str]:
        if not self._worker_alive:
            return False, "the reconcile loop is not running"
        return True, "ok"

    def _ready(self) -> tuple[bool, str]:
        if self.ready:
            return True, "ok"
        return False, self.last_error or self.source_error or "no successful sync yet"

    # --- lifecycle --------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)

    def run(self) -> int:
        """Serve until stop(); 0 on a clean stop."""
        config = self.config
        if config.http_addr:
            host, port = parse_http_addr(config.http_addr)
            secret = read_webhook_secret(config.webhook_secret_file) if config.webhook_secret_file else None
            self.http = HttpServer(host, port, health=self._health, ready=self._ready, metrics=self.metrics,
                                   webhook_secret=secret, branch=config.branch,
                                   on_push=self._on_push if secret else None,
                                   on_alerts=self._on_alerts if secret else None)  # Monitor actions
            self.http.start()
            log.info("serving /healthz /readyz /metrics%s on %s", " /webhook /alerts" if secret else "", self.http.url)
        if config.watch_dir is not None:
            self._watch_directory(config.watch_dir)
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
        if self._elector is not None:
            self._elector.join(timeout=5)
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        self._leader.clear()
        if self.cache is not None:
            self.cache.stop()
        self.rollouts.close()  # Prometheus calls still running end by their own timeout
        if self.http is not None:
            self.http.stop()
        if self._own_cluster:
            self.cluster.close()

    def _loop(self) -> None:
        config = self.config
        next_poll = time.monotonic()
        next_resync = time.monotonic() + config.resync
        self.request("startup")
        next_rollout = float("inf")
        next_registry = float("inf")
        while not self._stop.is_set():
            now = time.monotonic()
            if not self.registry.wanted(self.desired):
                next_registry = float("inf")
            elif next_registry == float("inf"):
                next_registry = now + config.registry_interval
            wait = max(0.0, min(next_poll, next_resync, next_rollout, next_registry, self._fight_due()) - now)
            try:
                trigger = self._take(wait)
            except queue.Empty:
                now = time.monotonic()
                trigger = ("poll" if now >= next_poll else "rollout" if now >= next_rollout
                           else "registry" if now >= next_registry else "resync")
            if trigger is None or self._stop.is_set():
                break
            log.debug("trigger: %s", trigger)
            if trigger in ("poll", "startup", "webhook"):
                delay = self._fetch()
                now = time.monotonic()
                next_poll = now + (delay if delay is not None else config.interval * random.uniform(0.9, 1.1))
            if trigger == "resync":
                next_resync = time.monotonic() + config.resync
            if trigger == "registry":
                next_registry = time.monotonic() + config.registry_interval
                if not self._registry_tick():
                    continue  # nothing moved: no pass
            self._pass(trigger)
            period = self.rollout_period
            next_rollout = time.monotonic() + period if period is not None else float("inf")

    # --- source -----------------------------------------------------------------------------
    def _fetch(self) -> float | None:
        """Bring the newest commit in and load it if it is new. Returns a backoff delay after a
        failed fetch (None: the normal interval)."""
        if self.config.watch_dir is not None:
            self._load(None)
            return None
        assert self.mirror is not None
        try:
            head = self.mirror.head()
            if head != self.fetched or self.mirror.local_head() != head:
                head = self.mirror.sync()
        except SourceError as exc:
            self.metrics.fetch_error()
            self.source_error = str(exc)
            delay = self._source_backoff.failure()
            log.warning("git: %s; keeping commit %s, next try in %.0f s", exc, self.commit[:12] or "(none)", delay)
            return delay
        self._source_backoff.success()
        self.source_error = ""
        if head != self.fetched or (self.signers is not None and self.signers.changed_since_refusal()):
            self.fetched = head
            self._load(head)
        return None

    def _load(self, commit: str | None) -> None:
        config = self.config
        if commit is None:
            assert config.watch_dir is not None
            where: str | Path = config.watch_dir
        else:
            assert self.mirror is not None
            where = self.mirror.path / config.path if config.path else self.mirror.path
        try:
            signers = self.signers.current() if self.signers is not None else None
            unresolved = load_desired(where, commit, loader=self.loader, resolve=False, signers=signers)
            desired = resolve_registries(unresolved, where, self.registry.registries(unresolved, where)
                                         if has_registry_refs(unresolved.spec) else None)
        except ValidationFailed as exc:
            self._invalid(commit or "working tree", exc)
            return
        except SignatureError as exc:  # refused like an invalid commit, reported as a refusal
            self._invalid(commit or "working tree", ValidationFailed([], revision=str(exc)), refused=exc)
            return
        except SourceError as exc:
            self._invalid(commit or "working tree", ValidationFailed([], revision=str(exc)))
            return
        except RegistryError as exc:
            # not the commit's fault: keep the last good state and try this commit again
            self.fetched = ""
            self.registry_error = str(exc)
            self.metrics.registry_event("error")
            log.error("commit %s: %s; %s stays in force, retrying", (commit or "working tree")[:12], exc,
                      self.commit[:12] or "nothing")
            return
        except AgentError as exc:  # the signers file unusable, or git could not verify in time: retried
            self.fetched = ""
            self.last_error = str(exc)
            log.error("commit %s: %s; %s stays in force, retrying", (commit or "working tree")[:12], exc,
                      self.commit[:12] or "nothing")
            return
        if self.desired is not None and desired.spec.config.name != self.desired.spec.config.name:
            self._invalid(commit or "working tree", ValidationFailed([], revision=(
                f"the target changed from {self.desired.spec.config.name!r} to {desired.spec.config.name!r}: "
                "a running controller keeps its target; restart it to switch")))
            return
        if not self._may_write_git(desired, commit):
            return
        self.desired = desired
        self._unresolved, self._where = unresolved, Path(where)
        self.registry_error = ""
        if self.inventory is not None and LAST_INVALID in self.inventory.annotations:
            self._annotate_invalid(None)  # a good commit again: status no longer reports the bad one
        self._keys = frozenset(object_key(o) for o in desired.objects)
        self.commit = commit or ""
        self.invalid = {}
        if self.signers is not None:
            self.signers.accepted()
        signed = f", signed by {desired.revision.signer}" if desired.revision.signer else ""
        log.info("loaded %s: %d objects%s", (commit or "working tree")[:12], len(desired.objects), signed)

    def _may_write_git(self, desired: Desired, commit: str | None) -> bool:
        """A commit whose rollouts (or registry sync) write to Git needs credentials that may push:
        at start the agent refuses to run without them (exit 2); a later commit is refused like
        an invalid one (the last good stays). False when this commit must not be taken on."""
        try:
            self.write_access.check(desired.spec)
        except WriteAccessDenied as exc:
            if self.desired is None:
                log.error("%s", exc)
                raise
            self._invalid(commit or "working tree", ValidationFailed([], revision=str(exc)))
            return False
        except SourceError as exc:  # the remote did not answer the check: this commit again at the next poll
            self.fetched = ""
            self.last_error = str(exc)
            log.error("commit %s: could not check write access to Git: %s; retrying", (commit or "")[:12], exc)
            return False
        return True

    def _registry_tick(self) -> bool:
        """Resolve the followed commit's aliases and stages again (every controller: a follower
        stays ready to lead), and let the leader propose moved aliases as PRs. True when the
        desired state changed and needs a pass."""
        desired, unresolved, where = self.desired, self._unresolved, self._where
        if desired is None or unresolved is None or where is None:
            return False
        changed = False
        try:
            fresh = self.registry.refresh(unresolved, desired, where)
        except ValidationFailed as exc:  # a gate the alias's new version misses: keep the old one
            error = "; ".join(str(e) for e in exc.errors)[:500]
            log.error("registry: the moved reference is refused, keeping what is applied: %s", error)
            if error != self.registry_error:  # once per refusal, not every tick
                self.metrics.registry_event("refused")
                self._audit("registry-refused", errors=[str(e) for e in exc.errors][:20])
            self.registry_error = error
            fresh = None
        except RegistryError as exc:
            self.registry_error = str(exc)
            self.metrics.registry_event("error")
            log.error("registry: %s; keeping what is applied, retrying", exc)
            return False
        else:
            self.registry_error = ""
        if fresh is not None and self.desired is desired:
            self.desired = fresh
            self._keys = frozenset(object_key(o) for o in fresh.objects)
            self.metrics.registry_event("moved")
            changed = True
        if self.registry.sync_alias is not None and (not self.config.leader_elect or self._leader.is_set()):
            try:
                made = self.registry.propose(unresolved, where)
                self.registry.last_error = ""
                if made:
                    self.metrics.registry_event("proposed", len(made))
            except (AgentError, OSError) as exc:
                error = str(exc)[:500]
                log.error("registry sync: %s", exc)
                if error != self.registry.last_error:  # once per distinct failure, not every tick
                    self.metrics.registry_event("proposal_error")
                    self._audit("registry-proposal", error=error)
                self.registry.last_error = error
        return changed

    def _invalid(self, commit: str, exc: ValidationFailed, refused: SignatureError | None = None) -> None:
        """An invalid commit, or (`refused`) one --verify-signatures refuses: nothing of it applies."""
        errors = [str(e) for e in exc.errors] or [exc.revision]
        self.invalid = {"commit": commit, "errors": errors[:20],
                        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        signed: dict[str, Any] = {}
        if refused is not None:
            signed = {"reason": "signature", "signer": refused.signer}
            self.invalid.update(signed)
            self.metrics.commit_refused("signature")
            if self.signers is not None:
                self.signers.refused()
        else:
            self.metrics.invalid_commit()
        self.last_error = f"commit {commit[:12]} is {'refused' if refused else 'invalid'}: {errors[0]}"
        log.error("commit %s is %s, nothing applied, %s stays in force: %s", commit[:12],
                  "refused" if refused else "invalid", self.commit[:12] or "nothing", "; ".join(errors[:5]))
        if self.config.audit_log is not None:
            from agent.audit import AuditLog

            with AuditLog(self.config.audit_log, self.config.identity) as audit:
                audit.write("unverified-commit" if refused else "invalid-commit", commit=commit, errors=errors[:20],
                            kept=self.commit, **signed)
        self._event_invalid(commit, errors, refused=refused is not None)
        self._annotate_invalid(json.dumps(self.invalid, sort_keys=True))

    def _annotate_invalid(self, value: str | None) -> None:
        """Record the invalid commit on the inventory (None: remove it), where `agent status`
        shows it. Only a writer does (the leader, with --leader-elect)."""
        inventory, desired = self.inventory, self.desired
        if inventory is None or desired is None or inventory.resource_version is None:
            return
        if self.config.leader_elect and not self._leader.is_set():
            return
        body = {"metadata": {"annotations": {LAST_INVALID: value}}}
        try:
            patched = self.cluster.request("PATCH", f"/api/v1/namespaces/{inventory.namespace}/configmaps/{inventory.name}",
                                           body=body, content_type="application/merge-patch+json")
        except (ClusterError, AgentError) as exc:
            log.warning("could not record the invalid commit on the inventory: %s", exc)
            return
        if value is None:
            inventory.annotations.pop(LAST_INVALID, None)
        else:
            inventory.annotations[LAST_INVALID] = value
        inventory.resource_version = patched["metadata"]["resourceVersion"]

    def _event_invalid(self, commit: str, errors: list[str], refused: bool = False) -> None:
        """A Warning Event on the inventory, where `kubectl get events -n modelops-system` shows it."""
        if self.desired is None:
            return
        namespace = self.config.inventory_namespace
        inventory = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": namespace,
                     "name": Inventory(target=self.desired.spec.config.name).name}
        what, reason = ("refused", "UnverifiedCommit") if refused else ("invalid", "InvalidCommit")
        event = make_event(inventory, reason, f"commit {commit[:12]} is {what} and was not applied "
                           f"({self.commit[:12] or 'nothing'} stays): " + "; ".join(errors[:3]), warning=True)
        with contextlib.suppress(ClusterError, AgentError):
            self.cluster.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event, retries=0)

    # --- live state -------------------------------------------------------------------------
    def _ensure_cache(self, desired: Desired) -> LiveCache:
        """The watch cache, covering the kinds and namespaces of `desired` and the inventory. Those
        are worked out again only when either was replaced, not on every resync."""
        if self.cache is None or desired is not self._cached_for or self.inventory is not self._cached_inventory:
            self._follow(desired)
        assert self.cache is not None
        if not self.cache.wait_synced(120):
            raise AgentError("the live cache did not sync within 120 s")
        denied = sorted(f"{kind} in {ns or 'all namespaces'}" for _group, kind, ns in self.cache.forbidden)
        if denied:  # the plan would take what it cannot see as missing: refuse to write from it
            raise AgentError(f"not allowed to list {', '.join(denied)}: grant the agent's ServiceAccount "
                             "list/watch there (deploy/README.md)")
        return self.cache

    def _follow(self, desired: Desired) -> None:
        wanted = {(str(o["apiVersion"]), str(o["kind"])) for o in desired.objects}
        infos = [self.cluster.kind(api_version, kind) for api_version, kind in sorted(wanted)]
        if self.inventory is not None:
            for api_version, kind in sorted({(e.api_version, e.kind) for e in self.inventory.entries.values()} - wanted):
                with contextlib.suppress(AgentError):  # a kind of an old commit the cluster no longer serves
                    infos.append(self.cluster.kind(api_version, kind))
        self._map_namespaces(desired)
        if self.cache is None:
            self.cache = LiveCache(self.cluster, infos, selector(), namespaces=self._namespaces_of)
            self.cache.subscribe(self._on_watch)
            self.cache.start()
        else:
            known = {(i.api_version, i.kind) for i in self.cache.kinds}
            for info in infos:
                if (info.api_version, info.kind) not in known:
                    self.cache.add_kind(info)
            self.cache.refresh_namespaces()  # a least-privilege install lists per namespace: follow new ones
        self._cached_for, self._cached_inventory = desired, self.inventory

    def _namespaces_of(self, info: KindInfo) -> set[str]:
        """Where a kind is managed: where the cache lists it when it may not list it across all
        namespaces. Called from the cache's threads: it only reads a map the loop rebuilt."""
        return set(self._managed_namespaces.get((group_of(info.api_version), info.kind), ()))

    def _map_namespaces(self, desired: Desired) -> None:
        """(group, kind) -> namespaces of the desired objects and inventory entries (loop thread)."""
        out: dict[tuple[str, str], set[str]] = {}
        rows = [(str(o["apiVersion"]), str(o["kind"]), str(o["metadata"].get("namespace") or "")) for o in desired.objects]
        if self.inventory is not None:
            rows += [(e.api_version, e.kind, e.namespace) for e in self.inventory.entries.values()]
        for api_version, kind, ns in rows:
            if ns:
                out.setdefault((group_of(api_version), kind), set()).add(ns)
        self._managed_namespaces = {k: frozenset(v) for k, v in out.items()}

    def _inventory(self, target: str) -> Inventory:
        if self.inventory is None or self.inventory.target != target:
            self.inventory = load_inventory(self.cluster, target, self.config.inventory_namespace)
        return self.inventory

    # --- leadership -------------------------------------------------------------------------
    def _may_write(self, target: str) -> bool:
        if not self.config.leader_elect:
            return True
        if self._elector is None:
            self._elector = threading.Thread(target=self._elect, args=(target,), name="leader-election", daemon=True)
            self._elector.start()
        return self._leader.is_set()

    def _elect(self, target: str) -> None:
        """Hold the target's Lease while we can; retry every lease_duration / 5 while another does."""
        config = self.config
        retry = max(1.0, config.lease_duration / 5)
        while not self._stop.is_set():
            lease = self.lease
            if lease is not None and lease.lost:
                log.warning("%s: no longer the leader", lease.lost)
                self._leader.clear()
                self.metrics.set_leader(False)
                self.lease = None
            if self.lease is None:
                candidate = TargetLease(self.cluster, target, config.lease_namespace, config.identity,
                                        duration=config.lease_duration)
                if config.lease_name:
                    candidate.name = config.lease_name
                try:
                    candidate.acquire()
                except LeaseHeld:
                    pass
                except (ClusterError, AgentError) as exc:
                    log.warning("leader election: %s", exc)
                else:
                    self.lease = candidate
                    self.inventory = None  # the previous leader wrote it: read it again
                    self.rollouts.target = ""  # and the rollout states
                    self._leader.set()
                    self.metrics.set_leader(True)
                    log.info("leader for target %s (Lease %s/%s)", target, config.lease_namespace, candidate.name)
                    self.request("resync")
            self._stop.wait(retry)

    # --- one pass ---------------------------------------------------------------------------
    def _fight_due(self) -> float:
        dues = [f.until for f in self.fights.values() if f.until > time.monotonic()]
        return min(dues) if dues else float("inf")

    def _pass(self, trigger: Trigger) -> None:
        desired = self.desired
        if desired is None:
            return
        target = desired.spec.config.name
        started = time.monotonic()
        try:
            may_write = self._may_write(target)
            if self.config.leader_elect and not may_write:
                return  # a follower keeps its source current and waits
            inventory = self._inventory(target)
            self.alert_actions.act(desired)  # Monitor actions: before the tick, so an abort applies now
            # the cache follows the kinds of `desired`, which a rollout's traffic does not change
            view = self._view(self._ensure_cache(desired))
            traffic = self.rollouts.tick(desired, live=view)
            self.rollout_period = self.rollouts.period(desired)
            effective = with_traffic(desired, traffic)
            observed = observed_from(view.values(), inventory, target)
            # a new commit (or working copy), or a rollout's new step, applies whatever the drift policy
            new_commit = desired is not self._applied or traffic != self._applied_traffic
            options = Options(prune=self.config.prune, audit_log=self.config.audit_log,
                              inventory_namespace=self.config.inventory_namespace, audit_noop=False,
                              lock_timeout=30.0, stop=self._stop, synced_by="controller",
                              sync_source=following(self.config))
            gate = self._gate(new_commit)
            outcome = reconcile(effective, self.cluster, options, progress=self._wrote, observed=observed,
                                lease=self.lease if self.config.leader_elect else None, writes=gate)
        except (AgentError, ClusterError) as exc:
            self.last_error = str(exc)
            log.error("%s pass failed: %s", trigger, exc)
            if isinstance(exc, ClusterError):
                self.inventory = None  # read it again next time
            return
        self.outcomes = [*self.outcomes[-19:], (trigger, outcome)]
        if outcome.ok:
            self.rollouts.publish_pending()
        results = outcome.report.results
        applied = sum(1 for r in results if r.outcome == "applied")
        pruned = sum(1 for r in results if r.outcome == "deleted")
        failed = sum(1 for r in results if r.outcome == "failed")
        self.metrics.observe_reconcile(trigger, time.monotonic() - started, applied, pruned, failed)
        staged = any(note.phase == "Staged" for note in outcome.plan.rollouts.values())
        if outcome.ok and (results or not outcome.plan.has_changes):
            if not staged:  # a held-back canary is still Git's to apply, whatever the drift policy
                self._applied = desired
                self._applied_traffic = traffic
            self.ready = True
            self.last_error = ""
            self.metrics.synced(self.commit or "working-tree")
            self._mark_synced(inventory)
        elif not outcome.ok:
            failures = "; ".join(f"{r.change.ref}: {r.message}" for r in outcome.report.failed)
            self.last_error = (outcome.inventory_error or failures)[:500]
        if applied or pruned or failed:
            log.info("%s: %d applied, %d pruned, %d failed (commit %s)", trigger, applied, pruned, failed,
                     self.commit[:12] or "working tree")

    def _mark_synced(self, inventory: Inventory) -> None:
        """Keep the inventory's last-sync mark (what `agent status` shows) current: a pass that
        wrote has just saved it; one that found nothing to do refreshes it when it names another
        commit or writer, or is older than `sync_mark_every` (so a quiet resync costs one request
        at most that often). Guarded by the resourceVersion: a conflict re-reads the inventory."""
        if inventory.resource_version is None:
            return  # nothing applied yet: no inventory to mark
        source = following(self.config)
        mark = last_sync(inventory.annotations, time.time())  # None: none, or one that does not read
        if mark is not None and mark["ageSeconds"] < self.config.sync_mark_every and (
                mark.get("commit"), mark.get("by"), mark.get("source")) == (self.commit, "controller", source):
            return
        value = sync_mark(self.commit, "controller", source)
        body = {"metadata": {"resourceVersion": inventory.resource_version, "annotations": {LAST_SYNC: value}}}
        try:
            patched = self.cluster.request("PATCH", f"/api/v1/namespaces/{inventory.namespace}/configmaps/{inventory.name}",
                                           body=body, content_type="application/merge-patch+json", retries=0)
        except (ClusterError, AgentError) as exc:
            log.debug("could not refresh the last-sync mark: %s", exc)
            self.inventory = None  # read it again next pass (someone else wrote it, or it is gone)
            return
        inventory.annotations[LAST_SYNC] = value
        inventory.resource_version = patched["metadata"]["resourceVersion"]

    def _wrote(self, result: ObjectResult) -> None:
        """Called as each write returns (before its watch echo, as a rule)."""
        with self._written_lock:
            if result.outcome == "applied" and result.live is not None:
                self._written[object_key(result.live)] = result.live
            elif result.outcome == "deleted" and result.change.live is not None:
                self._written.pop(object_key(result.change.live), None)

    def _view(self, cache: LiveCache) -> dict[ObjectKey, dict[str, Any]]:
        """The cache, with our own latest writes over copies the watch has not brought yet."""
        view = cache.objects()
        with self._written_lock:
            for key, mine in list(self._written.items()):
                theirs = view.get(key)
                if theirs is not None and not _older(theirs, mine):
                    del self._written[key]  # the cache caught up (or someone wrote after us)
                else:
                    view[key] = mine
        return view

    def _gate(self, new_commit: bool) -> Callable[[Plan], bool]:
        """Whether a plan may be written: a new commit always; drift per policy, and not while
        an object is in a fight with another writer."""
        policy = self.config.drift_policy

        def allow(plan: Plan) -> bool:
            drifted = [c for c in plan.changed if c.drift]
            if drifted:
                self.metrics.drift(policy if not new_commit else "heal", len(drifted))
            if new_commit:
                return True
            if policy == "detect":
                for c in drifted:
                    log.warning("drift on %s: %s (policy detect: not healed)", c.ref,
                                ", ".join(f"{f} by {m}" for f, m in sorted(c.drift.items())))
                return False
            now = time.monotonic()
            for c in plan.changed:
                if c.desired is None:
                    continue
                fight = self.fights.setdefault(object_key(c.desired), _Fight())
                if now < fight.until:
                    return False  # still backing off; the timer brings us back
                fight.heals = [t for t in fight.heals if now - t < self.FIGHT_WINDOW] + [now]
                if len(fight.heals) > self.FIGHT_HEALS:
                    fight.delay = min(max(2 * fight.delay, 5.0), 300.0)
                    fight.until = now + fight.delay
                    fight.managers = ", ".join(sorted(set(c.drift.values()))) or "another writer"
                    log.warning("%s is rewritten again and again by %s: %d heals in %.0f s; next heal in %.0f s",
                                c.ref, fight.managers, len(fight.heals), self.FIGHT_WINDOW, fight.delay)
                    return False
            return True

        return allow

    # --- --watch-dir ------------------------------------------------------------------------
    def _watch_directory(self, directory: Path) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        controller = self

        class Handler(FileSystemEventHandler):  # type: ignore[misc]
            def on_any_event(self, event: FileSystemEvent) -> None:
                path = str(getattr(event, "src_path", ""))
                if f"{os.sep}.git" in path or event.event_type in ("opened", "closed_no_write"):
                    return
                controller.request("poll")

        observer = Observer()
        observer.schedule(Handler(), str(directory), recursive=True)
        observer.daemon = True
        observer.start()
        self._watcher = observer


def _older(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether object copy `a` is older than `b` by resourceVersion. Kubernetes calls them
    opaque; every etcd-backed server hands out increasing integers, which is all this needs
    (anything else counts as not older, so the cache wins)."""
    ra = str((a.get("metadata") or {}).get("resourceVersion") or "")
    rb = str((b.get("metadata") or {}).get("resourceVersion") or "")
    return ra.isdigit() and rb.isdigit() and int(ra) < int(rb)


def following(config: RunConfig) -> str:
    """What the controller follows, for the last-sync mark: a URL without credentials @branch."""
    if config.watch_dir is not None:
        return f"{config.watch_dir} (working copy)"
    return f"{redact_url(config.repo)}@{config.branch}" + (f"/{config.path}" if config.path else "")


def describe(config: RunConfig) -> str:
    source = f"{config.watch_dir} (working copy)" if config.watch_dir else f"{redact_url(config.repo)}@{config.branch}"
    verify = f", only commits signed by a key of {config.verify_signatures}" if config.verify_signatures else ""
    return f"{source}{'/' + config.path if config.path else ''}, every {config.interval:g} s{verify}"
