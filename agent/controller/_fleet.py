"""`agent run` on a repo that declares environments: one Fleet drives every cluster of every
environment (or only those named by `--cluster`, the one-agent-per-cluster way).

The fleet's thread owns ONE source follower (one fetch and one load per commit: poll timer and
webhook), the clusters known now (agent.controller._clusters: kubeconfig contexts, or labelled
Secrets, read again so that clusters added or removed are picked up without a restart), and
one `Member` per (environment, cluster): a Controller of its own on its own thread, fed the
environment's Desired. The fleet's thread never calls a member's API server: a cluster down,
slow or refusing delays only its own member, whose state the fleet reports (/readyz, metrics).

Waves (agent.controller._waves): a change of an environment's rendered objects is handed to its
first cluster, then to the next once the first's rollouts succeeded (or its soak passed); a
failed rollout stops the wave and is reported once (Warning Event in that cluster, audit record
`wave-stopped`, metric modelops_agent_wave_stopped_total{environment}).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Collection
from typing import Any, Protocol

from agent.controller._alerts import FiringAlert
from agent.controller._clusters import Connection, KubeconfigClusters, kubeconfig_path
from agent.controller._config import RunConfig
from agent.controller._env_promotion import EnvironmentPromotions
from agent.controller._fleet_metrics import FleetMetrics
from agent.controller._fleet_promotions import PromotionTicker
from agent.controller._http import HttpServer
from agent.controller._member import Member, post_event
from agent.controller._notices import record_and_tell
from agent.controller._registry import RegistryFollower
from agent.controller._rollout_setup import write_back_of
from agent.controller._serve import serve, ui_app
from agent.controller._signers import SignersFile
from agent.controller._source import SourceFollower, Status
from agent.controller._triggers import Trigger, TriggerQueue
from agent.controller._waves import Progress, Stop, Wave, watched_models
from agent.controller._write_access import WriteAccess
from agent.desired import for_environment
from agent.engine import Desired
from agent.errors import AgentError, ValidationFailed
from agent.forge import ForgeOptions
from agent.metrics_source import Prometheus
from agent.notify import NullSink, Sink, open_notifier
from agent.promotion import post_comment
from agent.render import canonical_json
from agent.source import Mirror
from agent.spec import Environment
from agent.ui import Board

log = logging.getLogger("modelops.fleet")

DISCOVERY_PERIOD = 5.0  # seconds between looks at the kubeconfig (or the cluster Secrets)
PROMOTION_MIN_PERIOD = 5.0  # seconds: promotions are judged at most this often (else every poll interval)
WAVE_TICK = 1.0  # at most this long between looks at a wave in flight


class Clusters(Protocol):
    """Where the fleet finds its clusters (agent.controller._clusters)."""

    error: str

    def current(self) -> dict[str, Connection]: ...

    def close(self) -> None: ...


def token_of(desired: Desired) -> str:
    """What a wave compares: the digest of an environment's rendered objects."""
    digest = hashlib.sha256()
    for obj in desired.objects:
        digest.update(canonical_json(obj))
    return digest.hexdigest()[:20]


class Fleet:
    """`run()` returns when `stop()` is called; every member stopped and joined."""

    def __init__(self, config: RunConfig, *, only: Collection[str] = (), clusters: Clusters | None = None) -> None:
        self.config = config
        self.only = frozenset(only)
        signers = SignersFile(config.verify_signatures) if config.verify_signatures is not None else None
        self.members: dict[tuple[str, str], Member] = {}
        self._stopping: list[Member] = []
        self.metrics = FleetMetrics(lambda: list(self.members.values()))
        # one board (the web UI's) and one notifier for every member
        self.board = Board()
        self.notify: Sink = (open_notifier(config.notify, cluster=None, metrics=self.metrics, ui_url=config.ui_url,
                                           repo=config.repo)
                             if config.notify else NullSink())
        self.triggers = TriggerQueue(self.metrics.set_queue_depth)
        self.status = Status()
        self._stop = threading.Event()
        mirror = None
        if config.watch_dir is None:
            mirror = Mirror(config.repo, config.branch, config.cache_dir, credentials=config.credentials)
        self.registry = RegistryFollower(0.0, record=self._audit)
        write_access = WriteAccess(mirror, registry_sync=False,
                                   has_token=config.credentials is not None and config.credentials.has_token)
        self.source = SourceFollower(where=config.watch_dir, path=config.path, mirror=mirror,
                                     interval=config.interval, signers=signers, write_access=write_access,
                                     registry=self.registry, cluster=None,
                                     inventory_namespace=config.inventory_namespace, metrics=self.metrics,
                                     status=self.status, record=self._audit, annotate=lambda _value: None)
        self.clusters: Clusters = clusters or KubeconfigClusters(kubeconfig_path(config.kubeconfig))
        self.connections: dict[str, Connection] = {}
        self.environments: tuple[Environment, ...] = ()
        self.waves: dict[str, Wave] = {}
        self.stops: list[tuple[str, Stop]] = []  # (environment, stop) as reported, for tests and status
        self._wave_desired: dict[str, dict[str, Desired]] = {}  # environment -> token -> its newest Desired
        self._wave_models: dict[str, Any] = {}  # environment -> the models of its wave's token
        self._distributed: Desired | None = None
        self._offered: dict[tuple[str, str], Desired] = {}
        self.http: HttpServer | None = None
        self._alive = False
        self._reported_missing: set[tuple[str, str]] = set()
        # promotions between environments by policy (spec.promotion), judged on live evidence
        self.promotions = PromotionTicker(
            EnvironmentPromotions(write_back_of(config, mirror), Prometheus, record=self._audit,
                                  metric=self.metrics.environment_promotion, prometheus_url=config.prometheus_url),
            lambda: self.source.desired, self._promotes_into, max(PROMOTION_MIN_PERIOD, config.interval), self._stop)

    # --- what the fleet says ------------------------------------------------------------------
    @property
    def commit(self) -> str:
        return self.source.commit

    def member(self, environment: str, cluster: str) -> Member | None:
        return self.members.get((environment, cluster))

    def _audit(self, event: str, **fields: Any) -> None:
        record_and_tell(self.config, self.notify, self.source.desired, event, {"commit": self.source.commit, **fields})

    def _health(self) -> tuple[bool, str]:
        return (True, "ok") if self._alive else (False, "the fleet loop is not running")

    def _ready(self) -> tuple[bool, str]:
        """Ready once every reachable member synced; the reason names the others."""
        if self.source.desired is None:
            return False, self.status.last_error or self.status.source_error or "no commit loaded yet"
        problems = [f"cluster {c} ({e}) is in no context of the kubeconfig" for e, c in self._missing()]
        waiting, down = [], []
        for (env, name), m in sorted(self.members.items()):
            if m.unreachable:
                down.append(f"{name} ({env}) unreachable: {m.unreachable}")
            elif not m.ready:
                waiting.append(f"{name} ({env})")
        if waiting:
            return False, "not synced yet: " + ", ".join(waiting) + "; " + "; ".join(down + problems)
        if not self.members or len(down) == len(self.members):
            return False, "; ".join(down + problems) or "no cluster to drive"
        return True, "ok" + ("; " + "; ".join(down + problems) if down or problems else "")

    def _promotes_into(self) -> set[str]:
        """The environments this agent promotes into: those whose first cluster it drives."""
        return {env.name for env in self.environments if env.clusters and (not self.only or env.clusters[0] in self.only)}

    def _missing(self) -> list[tuple[str, str]]:
        return [(e.name, c) for e in self.environments for c in e.clusters
                if (not self.only or c in self.only) and c not in self.connections]

    # --- triggers (any thread) ----------------------------------------------------------------
    def request(self, trigger: Trigger) -> None:
        self.triggers.request(trigger)

    def _on_push(self, _commit: str | None) -> None:
        self.request("webhook")

    def _on_alerts(self, alerts: list[FiringAlert]) -> None:
        """Each alert to the members whose environment has its model; to all when in doubt."""
        for member in list(self.members.values()):
            controller = member.controller
            desired = member.source.desired
            if controller is None:
                continue
            mine = [a for a in alerts if desired is None or _has_model(desired, a)]
            if mine:
                controller.alert_actions.push(mine)
                controller.request("rollout")

    # --- lifecycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self.triggers.wake()

    def run(self) -> int:
        config = self.config
        self.http = serve(config.http_addr, config.webhook_secret_file, config.branch, health=self._health,
                          ready=self._ready, metrics=self.metrics, on_push=self._on_push, on_alerts=self._on_alerts,
                          ui=ui_app(config, self.board), ui_addr=config.ui_addr)
        self._alive = True
        self.promotions.start()
        try:
            self._loop()
        finally:
            self._alive = False
            self.promotions.join()
            for member in self.members.values():
                member.stop()
            for member in [*self.members.values(), *self._stopping]:
                member.join()
            self.clusters.close()
            if self.http is not None:
                self.http.stop()
            self.notify.close()
        return 0

    def _loop(self) -> None:
        config = self.config
        poll = discover = time.monotonic()
        self.request("startup")
        while not self._stop.is_set():
            now = time.monotonic()
            wait = min(poll, discover) - now
            if any(w.waiting_on for w in self.waves.values()):
                wait = min(wait, WAVE_TICK)
            trigger = self.triggers.take(max(0.0, wait))
            if self._stop.is_set():
                break
            now = time.monotonic()
            if trigger in ("startup", "webhook") or (trigger is None and now >= poll):
                delay = self.source.fetch()
                poll = time.monotonic() + (delay if delay is not None else config.interval)
            if trigger == "startup" or now >= discover:
                self._discover()
                discover = time.monotonic() + DISCOVERY_PERIOD
            self._distribute()
            self._step_waves(time.monotonic())
            if trigger == "webhook":
                for member in self.members.values():
                    member.request("webhook")

    # --- members (fleet thread) ---------------------------------------------------------------
    def _discover(self) -> None:
        """Start a member for each cluster of an environment that is known now, stop those gone."""
        self.connections = self.clusters.current()
        if self.clusters.error:
            log.error("clusters: %s", self.clusters.error)
        wanted: dict[tuple[str, str], Connection] = {}
        for env in self.environments:
            for name in env.clusters:
                if (not self.only or name in self.only) and name in self.connections:
                    wanted[(env.name, name)] = self.connections[name]
        for key, member in list(self.members.items()):
            if wanted.get(key) != member.connection:
                log.info("cluster %s (%s): %s", key[1], key[0], "credentials changed, restarting" if key in wanted
                         else "no longer in the kubeconfig or the environment, stopping")
                member.stop()
                self._stopping.append(self.members.pop(key))
                self.board.forget_where(key[0], key[1])
                self._offered.pop(key, None)
        self._stopping = [m for m in self._stopping if m.alive]
        for key, connection in wanted.items():
            if key not in self.members:
                log.info("cluster %s (%s): starting", key[1], key[0])
                env = next(e for e in self.environments if e.name == key[0])
                config = dataclasses.replace(self.config, prometheus_url=env.prometheus or self.config.prometheus_url,
                                             writes_rollout_success=key[1] == env.clusters[-1])
                member = Member(key[0], key[1], connection, config, on_pass=lambda: self.request("rollout"),
                                board=self.board, notify=self.notify)
                self.members[key] = member
                member.start()
        missing = set(self._missing())
        for env_name, name in sorted(missing - self._reported_missing):
            log.warning("cluster %s of environment %s: no such context; it is not synced", name, env_name)
        self._reported_missing = missing

    # --- desired state and waves (fleet thread) -----------------------------------------------
    def _distribute(self) -> None:
        """A newly loaded commit: each environment's Desired, a wave started where it changed."""
        desired, unresolved, where = self.source.desired, self.source.unresolved, self.source.where
        if desired is None or unresolved is None or desired is self._distributed:
            self._hand()
            return
        if not desired.spec.environments:
            self.status.last_error = ("the repo declares no environments any more: restart agent run to drive "
                                      "one cluster")
            log.error("commit %s: %s", self.source.commit[:12], self.status.last_error)
            self._distributed = desired
            return
        self._distributed = desired
        environments = []
        for env in desired.spec.environments:
            try:
                env_desired = for_environment(unresolved, env.name, where)
            except (ValidationFailed, AgentError) as exc:
                log.error("environment %s at %s: %s; it keeps what it has", env.name, self.source.commit[:12], exc)
                continue
            environments.append(env)
            self._start_wave(env, env_desired)
        self.environments = tuple(environments)
        self.status.last_error = ""
        self._discover()
        self._hand()

    def _start_wave(self, env: Environment, desired: Desired) -> None:
        wave = self.waves.get(env.name)
        if wave is None or wave.clusters != env.clusters:
            wave = self.waves[env.name] = Wave(env.clusters, env.soak_seconds)
            self._wave_desired[env.name] = {}
        wave.soak_seconds = env.soak_seconds
        token = token_of(desired)
        kept = {wave.handed(c) for c in wave.clusters} | {token}
        tokens = self._wave_desired[env.name]
        tokens[token] = desired
        for old in [t for t in tokens if t not in kept]:
            del tokens[old]
        watched = watched_models(self._wave_models.get(env.name, ()), desired.spec.models)
        if wave.start(token, watched):
            self._wave_models[env.name] = desired.spec.models
            if wave.reached < len(wave.clusters):
                log.info("environment %s: commit %s starts a wave at %s%s", env.name, self.source.commit[:12],
                         wave.clusters[0], f" (rollouts of {', '.join(sorted(watched))})" if watched else "")

    def _hand(self) -> None:
        """Offer each member what its wave hands its cluster (when that changed)."""
        for (env, name), member in self.members.items():
            wave = self.waves.get(env)
            if wave is None:
                continue
            desired = self._wave_desired[env].get(wave.handed(name))
            if desired is None or self._offered.get((env, name)) is desired:
                continue
            self._offered[(env, name)] = desired
            member.offer(desired, desired.revision.commit or self.source.commit, wave.handed(name))

    def _step_waves(self, now: float) -> None:
        for env_name, wave in self.waves.items():
            progress = {name: Progress(reachable=False) for name in wave.clusters}  # no member: not driven
            progress.update({name: dataclasses.replace(m.progress, reachable=not m.unreachable)
                             for (env, name), m in self.members.items() if env == env_name})
            stop = wave.update(progress, now)
            if stop is not None:
                self._stopped(env_name, stop)
        self._hand()

    def _stopped(self, environment: str, stop: Stop) -> None:
        """A failed rollout stopped a wave: reported once (log, audit, metric, Warning Event)."""
        commit = self._commit_of(environment, stop.token)
        rest = [c for c in self.waves[environment].clusters if c != stop.cluster]
        message = (f"the rollout of {stop.model} ended {stop.reason} in cluster {stop.cluster}: commit "
                   f"{commit[:12]} stops there, {', '.join(rest)} keep what they have")
        log.error("environment %s: %s", environment, message)
        self.stops.append((environment, stop))
        self.metrics.wave_stopped(environment)
        self._audit("wave-stopped", environment=environment, cluster=stop.cluster, commit=commit, model=stop.model,
                    reason=stop.reason)
        member = self.members.get((environment, stop.cluster))
        desired = self._wave_desired.get(environment, {}).get(stop.token)
        model = next((m for m in desired.spec.models if m.key == stop.model), None) if desired else None
        if member is not None and model is not None:
            post_event(member, model, "WaveStopped", message)
        if desired is not None:
            self._comment(environment, desired.revision.pull_request, message)

    def _comment(self, environment: str, pull_request: str, message: str) -> None:
        """Tell the pull request the stopped commit came from (a thread of its own: the forge's
        calls have their timeouts); a failure is logged. A commit pushed without one: the log,
        the audit record and the Event say it (a comment on a bare commit is not in agent.forge)."""
        config, credentials = self.config, self.config.credentials
        number = pull_request.rpartition("#")[2].rpartition("!")[2]
        if not number.isdigit() or config.watch_dir is not None or credentials is None or not credentials.has_token:
            return
        options = ForgeOptions(kind=config.forge, api_url=config.forge_api_url, token_env=credentials.token_env,
                               token_file=credentials.token_file, ca_file=credentials.ca_file)

        def post() -> None:
            try:
                post_comment(int(number), f"**modelops-agent**: wave stopped in {environment}: {message}",
                             f"modelops-wave:{environment}", config.repo, options)
            except (AgentError, OSError) as exc:
                log.error("could not comment on pull request %s: %s", pull_request, exc)

        threading.Thread(target=post, name="wave-comment", daemon=True).start()

    def _commit_of(self, environment: str, token: str) -> str:
        desired = self._wave_desired.get(environment, {}).get(token)
        return (desired.revision.commit if desired is not None else "") or self.source.commit


def _has_model(desired: Desired, alert: FiringAlert) -> bool:
    namespace, model = alert.labels.get("namespace", ""), alert.labels.get("model", "")
    if not model:
        return True  # not said: every member acts on it (each keeps its own cooldown)
    return any(m.name == model and (not namespace or m.namespace == namespace) for m in desired.spec.models)
