"""Files of a repo at one revision -> a validated Spec, or every problem found at once."""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import posixpath
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from agent.errors import SpecError, ValidationFailed
from agent.finite import shown, within
from agent.spec import _k8s, _schema
from agent.spec._k8s import CLUSTER_SCOPED
from agent.spec._kserve import autoscaling_problems
from agent.spec._types import (
    API_VERSION,
    GROUP,
    Analysis,
    AnalysisCheck,
    Autoscaling,
    Canary,
    Gate,
    Location,
    Manifest,
    MetricNames,
    MlflowSettings,
    Model,
    ModelVersion,
    Monitor,
    MonitorRule,
    Policy,
    PruneBudget,
    Registries,
    RegistryKind,
    RegistryRef,
    RepositoryConfig,
    Resources,
    Rollout,
    ServingRuntime,
    Spec,
    group_of,
)
from agent.spec._unreadable import Unreadable
from agent.spec._yaml import Document, dotted, parse

YAML_SUFFIXES = (".yaml", ".yml")

def is_manifest_path(path: str) -> bool:
    return path.endswith(YAML_SUFFIXES)


_Parsed = tuple[list[Document], list[SpecError]]


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Parsing allocates hundreds of thousands of long-lived objects (node trees kept for line
    lookup); a pause avoids repeated full collections that would find no garbage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Loader:
    """Loads repos, keeping what the previous load parsed: two revisions of a repo (a diff), or
    two polls of the controller, share almost every file, and a file's bytes decide its parse.
    The state is this object's, not the process's: the CLI uses the default loader, a
    controller or a test can own one. `pause_gc` pauses the cyclic collector while loading
    (hundreds of thousands of long-lived objects, no garbage)."""

    def __init__(self, *, pause_gc: bool = True) -> None:
        self.pause_gc = pause_gc
        self._lock = threading.Lock()
        self._last: dict[tuple[str, bytes], _Parsed] = {}

    def forget(self) -> None:
        """Drop what the previous load parsed (the next load starts cold)."""
        with self._lock:
            self._last = {}

    def load(self, files: Mapping[str, bytes], problems: Iterable[SpecError] = ()) -> Spec:
        """Parse, validate and resolve a repo. Raises ValidationFailed listing every problem."""
        if not self.pause_gc:
            return _load(self._parse_all(files), problems, files)
        with _gc_paused():
            return _load(self._parse_all(files), problems, files)

    def _parse_all(self, files: Mapping[str, bytes]) -> list[tuple[str, list[Document], list[SpecError]]]:
        """Parse each manifest file, reusing the previous load's parse of identical bytes.
        Parsed documents are never mutated, so sharing them is safe."""
        with self._lock:
            previous = self._last
        current: dict[tuple[str, bytes], _Parsed] = {}
        out = []
        for path in sorted(files):
            if not is_manifest_path(path):
                continue
            key = (path, files[path])
            hit = previous.get(key)
            docs, errs = hit if hit is not None else parse(path, files[path])
            current[key] = (docs, errs)
            out.append((path, docs, errs))
        with self._lock:
            self._last = current
        return out


DEFAULT_LOADER = Loader()


def load(files: Mapping[str, bytes], problems: Iterable[SpecError] = ()) -> Spec:
    """Parse, validate and resolve a repo with the default loader. Raises ValidationFailed."""
    return DEFAULT_LOADER.load(files, problems)


def _load(parsed: list[tuple[str, list[Document], list[SpecError]]], problems: Iterable[SpecError],
          files: Mapping[str, bytes]) -> Spec:
    errors: list[SpecError] = list(problems)
    unreadable = Unreadable()  # what documents that failed may declare: no "not found" against them

    config_docs = [d for _, docs, _ in parsed for d in docs if _is_ours(d, "RepositoryConfig")]
    config = _config(config_docs, errors)
    excluded = config.exclude
    by_path = {path: (docs, errs) for path, docs, errs in parsed}
    templates = _job_template_paths(parsed, excluded)  # read by their Monitor, never applied
    by_kind: dict[str, list[Document]] = {}
    raw: list[Document] = []
    for path, docs, errs in parsed:
        if any(fnmatch.fnmatch(path, pattern) for pattern in excluded) or path in templates:
            continue
        errors.extend(errs)
        if errs:
            unreadable.add_text(files[path].decode("utf-8", "replace"))
        for doc in docs:
            kind = _classify(doc, errors)
            if kind is None:
                unreadable.add_data(doc.data)
            if kind == "RepositoryConfig" or kind is None:
                continue
            if kind == "":
                raw.append(doc)
            else:
                by_kind.setdefault(kind, []).append(doc)

    runtimes = []
    for d in by_kind.get("ServingRuntime", []):
        if r := _runtime(d, errors):
            runtimes.append(r)
        else:
            unreadable.add_data(d.data)
    runtime_by_name = _unique(runtimes, lambda r: r.name, "ServingRuntime", errors)
    models: list[Model] = []
    model_docs: dict[str, Document] = {}
    for d in by_kind.get("Model", []):
        if m := _model(d, config, runtime_by_name, errors, unreadable):
            models.append(m)
            model_docs.setdefault(m.key, d)
    model_by_key = _unique(models, lambda m: m.key, "Model", errors)
    monitors = [
        mon for d in by_kind.get("Monitor", [])
        if (mon := _monitor(d, config, model_by_key, _declared(by_kind.get("Model", []), config), errors, by_path,
                            unreadable))
    ]
    _unique(monitors, lambda m: f"{m.namespace}/{m.name}", "Monitor", errors)
    monitor_docs = [d for path, docs, _ in parsed if not any(fnmatch.fnmatch(path, pattern) for pattern in excluded)
                    for d in docs if _is_ours(d, "Monitor")]
    _check_rollout_rules(model_by_key, model_docs, monitor_docs, config, errors, unreadable)
    manifests = [obj for d in raw if (obj := _manifest(d, config, errors))]
    _unique(manifests, _manifest_key, "object", errors)

    if errors:  # the target's name still tells `agent status` whose live state to show
        raise ValidationFailed(errors, target=config.name if config.location is not None or not config_docs else "")
    return Spec(
        config=config,
        models=tuple(sorted(models, key=lambda m: m.key)),
        monitors=tuple(sorted(monitors, key=lambda m: (m.namespace, m.name))),
        runtimes=tuple(sorted(runtimes, key=lambda r: r.name)),
        manifests=tuple(sorted(manifests, key=_manifest_key)),
    )


def _validated(doc: Document, kind: str) -> list[SpecError]:
    if doc.schema_errors is None:
        errors = _schema.validate(doc, kind)
        meta = doc.data.get("metadata") if isinstance(doc.data, dict) else None
        too_big = _k8s.annotations_size_problem(meta.get("annotations")) if isinstance(meta, dict) else None
        if too_big:
            errors.append(doc.error(["metadata", "annotations"], too_big))
        doc.schema_errors = errors
    return doc.schema_errors


def _is_ours(doc: Document, kind: str) -> bool:
    d = doc.data
    return isinstance(d, dict) and d.get("apiVersion") == API_VERSION and d.get("kind") == kind


def _classify(doc: Document, errors: list[SpecError]) -> str | None:
    """Our kind name, "" for a raw manifest, or None (with an error) for neither."""
    data = doc.data
    if not isinstance(data, dict):
        errors.append(doc.error([], "each YAML document must be a mapping with apiVersion and kind"))
        return None
    api, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api, str) or not api:
        errors.append(doc.error(["apiVersion"], "missing or empty apiVersion"))
        return None
    if not isinstance(kind, str) or not kind:
        errors.append(doc.error(["kind"], "missing or empty kind"))
        return None
    if api.split("/")[0] == GROUP:
        if api != API_VERSION:
            errors.append(doc.error(["apiVersion"], f"unsupported version {api!r} (supported: {API_VERSION})"))
            return None
        if kind not in _schema.SCHEMA_FILES:
            known = ", ".join(sorted(_schema.SCHEMA_FILES))
            errors.append(doc.error(["kind"], f"unknown kind {kind!r} for {API_VERSION} (known: {known})"))
            return None
        schema_errors = _validated(doc, kind)
        if schema_errors:
            errors.extend(schema_errors)
            return None
        return kind
    return ""


def _unique(items: list[Any], key: Any, what: str, errors: list[SpecError]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for item in items:
        k = key(item)
        if k in seen:
            first = seen[k].location
            errors.append(SpecError(
                item.location.file, item.location.line, "metadata.name",
                f"duplicate {what} {k!r} (first declared at {first.file}:{first.line})",
            ))
        else:
            seen[k] = item
    return seen


def _loc(doc: Document) -> Location:
    return Location(doc.path, doc.line)


_NO_RESOURCES = Resources()


def _resources(raw: Mapping[str, Any] | None, base: Resources = _NO_RESOURCES) -> Resources:
    raw = raw or {}

    def q(key: str, fallback: str | None) -> str | None:
        return str(raw[key]) if key in raw else fallback

    return Resources(
        cpu=q("cpu", base.cpu),
        memory=q("memory", base.memory),
        gpu=int(raw["gpu"]) if "gpu" in raw else base.gpu,
        cpu_limit=q("cpuLimit", base.cpu_limit),
        memory_limit=q("memoryLimit", base.memory_limit),
    )


_QUANTITY = re.compile(r"([0-9.eE+-]+?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
_SUFFIX = {"": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
           "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18, "Ki": Decimal(2) ** 10,
           "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}


def _quantity(value: str) -> Decimal | None:
    """The amount a Kubernetes quantity (as the schema admits it) stands for; None if unreadable."""
    match = _QUANTITY.fullmatch(value)
    if match is None:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]
    except InvalidOperation:
        return None


# (request field, limit field, the limit's YAML key, what): a limit below its request is a 422
_REQUEST_LIMIT = (("cpu", "cpu_limit", "cpuLimit", "CPU"), ("memory", "memory_limit", "memoryLimit", "memory"))


def _limits_below_requests(layers: list[tuple[str, Resources]]) -> Iterator[str]:
    """Each request that the layered resources (most specific first: Model, ServingRuntime,
    repo defaults; each field from the first layer that sets it) put above its limit, naming
    the layer each value came from. The API server refuses such a container."""
    for request_attr, limit_attr, limit_key, what in _REQUEST_LIMIT:
        request = next(((v, who) for who, layer in layers if (v := getattr(layer, request_attr)) is not None), None)
        limit = next(((v, who) for who, layer in layers if (v := getattr(layer, limit_attr)) is not None), None)
        if request is None or limit is None:
            continue
        amount, cap = _quantity(request[0]), _quantity(limit[0])
        if amount is not None and cap is not None and amount > cap:
            yield (f"the {what} request {request[0]} ({request[1]}) is above the {what} limit {limit[0]} ({limit[1]}): "
                   f"the API server would refuse the container; set {limit_key} (or lower the request)")


def _config(docs: list[Document], errors: list[SpecError]) -> RepositoryConfig:
    valid = []
    for doc in docs:
        errs = _validated(doc, "RepositoryConfig")
        errors.extend(errs)
        if not errs:
            valid.append(doc)
    if len(docs) > 1:
        first = docs[0]
        for doc in docs[1:]:
            errors.append(doc.error(["kind"], f"only one RepositoryConfig is allowed (first at {first.path}:{first.line})"))
    if not valid:
        return RepositoryConfig()
    doc = valid[0]
    spec = doc.data.get("spec") or {}
    defaults = spec.get("defaults") or {}
    policy = spec.get("policy") or {}
    budget = policy.get("pruneBudget") or {}
    metrics = spec.get("metrics") or {}
    base_policy = Policy()
    base_metrics = MetricNames()
    return RepositoryConfig(
        name=doc.data["metadata"]["name"],
        default_namespace=defaults.get("namespace", "default"),
        default_backend=defaults.get("backend", "kserve"),
        default_stage=defaults.get("stage", "production"),
        default_resources=_resources(defaults.get("resources")),
        monitor_for=defaults.get("monitorFor", "5m"),
        monitor_window=defaults.get("monitorWindow", "5m"),
        policy=Policy(
            allowed_namespaces=tuple(policy.get("allowedNamespaces", ())),
            allowed_kinds=tuple(policy.get("allowedKinds", base_policy.allowed_kinds)),
            prune=bool(policy.get("prune", False)),
            allow_cluster_admin=bool(policy.get("allowClusterAdmin", False)),
            prune_budget=PruneBudget(
                max_fraction=float(budget.get("maxFraction", PruneBudget.max_fraction)),
                max_count=int(budget.get("maxCount", PruneBudget.max_count)),
            ),
        ),
        metrics=MetricNames(
            latency_histogram=metrics.get("latencyHistogram", base_metrics.latency_histogram),
            requests_total=metrics.get("requestsTotal", base_metrics.requests_total),
            errors_total=metrics.get("errorsTotal", base_metrics.errors_total),
            drift_score=metrics.get("driftScore", base_metrics.drift_score),
        ),
        exclude=tuple(spec.get("exclude", ())),
        location=_loc(doc),
        registries=_registries(doc, spec.get("registries") or {}, errors),
    )


def _registries(doc: Document, raw: Mapping[str, Any], errors: list[SpecError]) -> Registries:
    """`spec.registries`: where registry references resolve. Only the shape is checked; the
    tracking URI's default (MLFLOW_TRACKING_URI) is read when resolving."""
    mlflow = raw.get("mlflow") or {}
    if "tokenEnv" in mlflow and "tokenFile" in mlflow:
        errors.append(doc.error(["spec", "registries", "mlflow", "tokenFile"], "tokenEnv and tokenFile are exclusive: name one"))
    return Registries(mlflow=MlflowSettings(
        tracking_uri=mlflow.get("trackingUri"), token_env=mlflow.get("tokenEnv"), token_file=mlflow.get("tokenFile"),
    ))


def _check_namespace(doc: Document, path: list[str | int], ns: str, config: RepositoryConfig, errors: list[SpecError]) -> bool:
    allowed = config.policy.allowed_namespaces
    if allowed and not any(fnmatch.fnmatchcase(ns, pattern) for pattern in allowed):
        errors.append(doc.error(path, f"namespace {ns!r} is not allowed by policy.allowedNamespaces ({', '.join(allowed)})"))
        return False
    if ns in _k8s.PROTECTED_NAMESPACES and ns not in allowed:
        # the cluster's own namespaces are never matched by a glob or by an empty policy
        errors.append(doc.error(path, f"namespace {ns!r} belongs to the cluster: allowed only when "
                                      "policy.allowedNamespaces names it exactly"))
        return False
    return True


def _runtime(doc: Document, errors: list[SpecError]) -> ServingRuntime | None:
    meta, spec = doc.data["metadata"], doc.data["spec"]
    resources = _resources(spec.get("resources"))
    problems = list(_limits_below_requests([("this ServingRuntime", resources)]))
    for problem in problems:
        errors.append(doc.error(["spec", "resources"], problem))
    if problems:
        return None
    return ServingRuntime(
        name=meta["name"],
        image=spec["image"],
        formats=tuple(spec["formats"]),
        protocol=spec.get("protocol", "v2"),
        port=int(spec.get("port", 8080)),
        metrics_port=spec.get("metricsPort"),
        metrics_path=spec.get("metricsPath", "/metrics"),
        args=tuple(spec.get("args", ())),
        env=dict(spec.get("env", {})),
        resources=resources,
        labels=dict(meta.get("labels", {})),
        location=_loc(doc),
    )


def _model(doc: Document, config: RepositoryConfig, runtimes: Mapping[str, ServingRuntime], errors: list[SpecError],
           unreadable: Unreadable | None = None) -> Model | None:
    meta, spec = doc.data["metadata"], doc.data["spec"]
    ns = meta.get("namespace", config.default_namespace)
    before = len(errors)
    _check_namespace(doc, ["metadata", "namespace"], ns, config, errors)

    versions: dict[str, ModelVersion] = {}
    for i, v in enumerate(spec["versions"]):
        if v["version"] in versions:
            errors.append(doc.error(["spec", "versions", i, "version"], f"duplicate version {v['version']!r}"))
            continue
        ref = _registry_ref(doc, v, ["spec", "versions", i], errors)
        at: list[str | int] = ["spec", "versions", i, "registry"] if "registry" in v else ["spec", "versions", i]
        versions[v["version"]] = ModelVersion(
            version=v["version"], uri=v.get("uri", ""), digest=v.get("digest"),
            evaluation={k: float(x) for k, x in (v.get("evaluation") or {}).items()},
            registry=ref, location=Location(doc.path, doc.line_of(at)),
        )
    known = ", ".join(versions)
    stable = spec["stable"]
    if stable not in versions:
        errors.append(doc.error(["spec", "stable"], f"version {stable!r} is not listed in spec.versions ({known})"))
    rollout = _rollout(doc, spec["rollout"], errors) if "rollout" in spec else None
    canary = None
    if "canary" in spec:
        canary = Canary(version=spec["canary"]["version"], traffic=_canary_traffic(doc, spec["canary"], rollout, errors))
        if canary.version not in versions:
            errors.append(doc.error(["spec", "canary", "version"], f"version {canary.version!r} is not listed in spec.versions ({known})"))
        elif canary.version == stable:
            errors.append(doc.error(["spec", "canary", "version"], f"canary version {stable!r} is the stable version; remove the canary to finish a promotion"))

    autoscaling = None
    if "autoscaling" in spec:
        a = spec["autoscaling"]
        autoscaling = Autoscaling(min=a["min"], max=a["max"], metric=a.get("metric", "cpu"), target=a.get("target", 80))
        if autoscaling.min > autoscaling.max:
            errors.append(doc.error(["spec", "autoscaling", "min"], f"min ({autoscaling.min}) is greater than max ({autoscaling.max})"))

    backend = spec.get("backend", config.default_backend)
    if autoscaling is not None and backend == "kserve":  # what KServe's own admission accepts
        for refusal in autoscaling_problems(autoscaling.metric, autoscaling.target, meta.get("annotations") or {}):
            errors.append(doc.error(list(refusal.field), refusal.message))
    fmt = spec["format"]
    runtime_name = spec.get("runtime")
    if runtime_name is not None:
        runtime = runtimes.get(runtime_name)
        if runtime is None:
            if unreadable is None or not unreadable.may_declare_runtime(runtime_name):  # else its own error comes first
                names = ", ".join(sorted(runtimes)) or "none declared"
                errors.append(doc.error(["spec", "runtime"], f"ServingRuntime {runtime_name!r} not found in the repo ({names})"))
        elif fmt not in runtime.formats:
            errors.append(doc.error(["spec", "format"], f"runtime {runtime_name!r} does not serve format {fmt!r} (it serves {', '.join(runtime.formats)})"))
    elif backend == "kubernetes":
        errors.append(doc.error(["spec", "runtime"], "the kubernetes backend needs a runtime (it provides the container image)"))

    resources = _resources(spec.get("resources"))
    runtime_of = runtimes.get(runtime_name) if runtime_name is not None else None
    layers = [("the Model", resources)]
    if runtime_of is not None:
        layers.append((f"ServingRuntime {runtime_of.name!r}", runtime_of.resources))
    layers.append(("defaults.resources", config.default_resources))
    for problem in _limits_below_requests(layers):
        errors.append(doc.error(["spec", "resources"], problem))

    gates = tuple(Gate(metric=g["metric"], min=g.get("min"), max=g.get("max")) for g in spec.get("gates", ()))
    serving = [("stable", stable)] + ([("canary", canary.version)] if canary else [])
    deferred: list[str] = []
    for role, version in serving:
        if version not in versions:
            continue
        field = ["spec", "stable"] if role == "stable" else ["spec", "canary", "version"]
        entry = versions[version]
        # a registry version's missing metrics come from its run once resolved: checked then
        registry = entry.registry is not None
        if registry and any(g.metric not in entry.evaluation for g in gates):
            deferred.append(version)
        for problem in gate_problems(role, version, entry.evaluation, gates, skip_missing=registry):
            errors.append(doc.error(field, problem))

    if len(errors) > before:
        return None
    return Model(
        name=meta["name"],
        namespace=ns,
        format=fmt,
        format_version=spec.get("formatVersion"),
        versions=versions,
        stable=stable,
        canary=canary,
        backend=backend,
        stage=spec.get("stage", config.default_stage),
        runtime=runtime_name,
        resources=resources,  # render layers the runtime's, then the repo defaults
        replicas=spec.get("replicas"),
        autoscaling=autoscaling,
        gates=gates,
        owner=spec.get("owner"),
        env=dict(spec.get("env", {})),
        service_account=spec.get("serviceAccountName"),
        labels=dict(meta.get("labels", {})),
        annotations=dict(meta.get("annotations", {})),
        location=_loc(doc),
        rollout=rollout,
        deferred_gates=tuple(deferred),
    )


def gate_problems(role: str, version: str, evaluation: Mapping[str, float], gates: Iterable[Gate], *,
                  sources: Mapping[str, str] | None = None, skip_missing: bool = False,
                  missing_hint: str = "") -> list[str]:
    """The promotion-gate failures of one serving version (pure): each message starts
    "promotion gate:". `sources` names where a metric came from ("MLflow run abc"); a
    missing metric is skipped with `skip_missing` (a registry version before resolution),
    and `missing_hint` is added to its message otherwise."""
    out = []
    for gate in gates:
        value = evaluation.get(gate.metric)
        origin = f" from {sources[gate.metric]}" if sources and gate.metric in sources else ""
        if value is None:
            if not skip_missing:
                out.append(f"promotion gate: {role} version {version!r} has no recorded evaluation of {gate.metric!r}{missing_hint}")
        elif within(value, gate.min, gate.max) is None:  # NaN or ±Inf: never a pass (agent.finite)
            out.append(f"promotion gate: {role} version {version!r} has {gate.metric}={shown(value)}{origin}, "
                       "not a finite number")
        elif gate.min is not None and value < gate.min:
            out.append(f"promotion gate: {role} version {version!r} has {gate.metric}={value:g}{origin}, below the minimum {gate.min:g}")
        elif gate.max is not None and value > gate.max:
            out.append(f"promotion gate: {role} version {version!r} has {gate.metric}={value:g}{origin}, above the maximum {gate.max:g}")
    return out


_SELECTORS: dict[RegistryKind, tuple[str, str]] = {"mlflow": ("version", "alias"), "gto": ("version", "stage")}


def _registry_ref(doc: Document, v: Mapping[str, Any], at: list[str | int], errors: list[SpecError]) -> RegistryRef | None:
    """The registry reference of a version entry, its shape checked (offline: nothing is
    resolved here); None, with an error, for a wrong one or for neither uri nor registry."""
    if "registry" not in v:
        if "uri" not in v:
            errors.append(doc.error(at, "missing required field 'uri' (or registry: the version in a model registry)"))
        return None
    before = len(errors)
    here: list[str | int] = [*at, "registry"]
    for other in ("uri", "digest"):
        if other in v:
            errors.append(doc.error([*at, other], f"{other} and registry are exclusive: a registry version takes its "
                                                  f"{'artifact URI' if other == 'uri' else 'digest'} from the registry"))
    raw = v["registry"] or {}
    kinds = [k for k in _SELECTORS if k in raw]
    if len(kinds) != 1:
        found = f"found {' and '.join(kinds)}" if kinds else "found none"
        errors.append(doc.error(here, f"name exactly one registry: mlflow or gto ({found})"))
        return None
    kind = kinds[0]
    entry = raw[kind]
    chosen = [s for s in _SELECTORS[kind] if s in entry]
    if len(chosen) != 1:
        a, b = _SELECTORS[kind]
        found = "both given" if chosen else "neither given"
        errors.append(doc.error([*here, kind], f"give exactly one of {a} or {b} ({found})"))
    if len(errors) > before:
        return None
    return RegistryRef(
        kind=kind, name=str(entry["name"]),
        version=str(entry["version"]) if "version" in entry else None,
        alias=entry.get("alias"), stage=entry.get("stage"), repo=entry.get("repo"),
    )


_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def _seconds(duration: str) -> float:
    """Seconds of a Prometheus duration (30s, 5m, 1h30m, 500ms; a year is 365 days, as in
    Prometheus): the controller waits and compares in seconds. ValueError if unreadable."""
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(duration):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(duration) or not duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return total


# a placeholder is `{word}`; PromQL's own braces hold matchers (`{model="x"}`), never a bare word
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
PLACEHOLDERS = ("namespace", "model", "version", "track", "interval")


def _missing(doc: Document, field_path: list[str | int], message: str) -> SpecError:
    """An error on a missing field, at the line of its parent's key (as the schema's
    "missing required field" errors are)."""
    return SpecError(doc.path, doc.line_of(field_path[:-1]), dotted(field_path), message)


def _rollout(doc: Document, raw: Mapping[str, Any], errors: list[SpecError]) -> Rollout:
    """The rollout of a Model, defaults applied. Problems the schema cannot state (order of
    the steps, which fields go with which strategy, placeholders, min <= max) are errors on
    the field; the Rollout is still returned, the caller drops the Model on any error."""
    at: list[str | int] = ["spec", "rollout"]
    strategy = raw["strategy"]
    steps = tuple(int(s) for s in raw.get("steps", ()))
    if strategy == "canary":
        if "steps" not in raw:
            errors.append(_missing(doc, [*at, "steps"], "required for the canary strategy (traffic percentages ending at 100)"))
        for i in range(1, len(steps)):
            if steps[i] <= steps[i - 1]:
                errors.append(doc.error([*at, "steps", i], f"steps must be strictly ascending: {steps[i]} after {steps[i - 1]}"))
        if steps and steps[-1] != 100:
            errors.append(doc.error([*at, "steps", len(steps) - 1],
                                    f"the last step must be 100, not {steps[-1]}: the canary takes all traffic before it becomes stable"))
        if "scaleDownDelay" in raw:
            errors.append(doc.error([*at, "scaleDownDelay"], "applies to the blueGreen strategy only"))
    elif "steps" in raw:
        errors.append(doc.error([*at, "steps"], "steps apply to the canary strategy only: blueGreen switches all traffic at once"))

    interval = str(raw.get("interval", Rollout.interval))
    if _seconds(interval) <= 0:
        errors.append(doc.error([*at, "interval"], f"must be longer than 0, got {interval!r}"))
    scale_down_delay = str(raw.get("scaleDownDelay", Rollout.scale_down_delay))
    return Rollout(
        strategy=strategy,
        steps=steps,
        interval=interval,
        interval_seconds=_seconds(interval),
        analysis=_analysis(doc, raw.get("analysis") or {}, [*at, "analysis"], errors),
        max_failed_checks=int(raw.get("maxFailedChecks", Rollout.max_failed_checks)),
        on_success=raw.get("onSuccess", Rollout.on_success),
        on_failure=raw.get("onFailure", Rollout.on_failure),
        revert_pull_request=bool(raw.get("revertPullRequest", Rollout.revert_pull_request)),
        scale_down_delay=scale_down_delay,
        scale_down_delay_seconds=_seconds(scale_down_delay),
    )


def _analysis(doc: Document, raw: Mapping[str, Any], at: list[str | int], errors: list[SpecError]) -> Analysis:
    """The analysis of a rollout; its rule names are checked against the Monitors later
    (`_check_rollout_rules`), once those are loaded."""
    checks: list[AnalysisCheck] = []
    names: set[str] = set()
    allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    for i, c in enumerate(raw.get("checks", ())):
        here: list[str | int] = [*at, "checks", i]
        if c["name"] in names:
            errors.append(doc.error([*here, "name"], f"duplicate check name {c['name']!r}"))
        names.add(c["name"])
        for word in dict.fromkeys(_PLACEHOLDER.findall(c["query"])):
            if word not in PLACEHOLDERS:
                errors.append(doc.error([*here, "query"], f"unknown placeholder {{{word}}} (allowed: {allowed})"))
        low, high = c.get("min"), c.get("max")
        if low is None and high is None:
            errors.append(doc.error(here, "a check needs min, max or both"))
        elif low is not None and high is not None and low > high:
            errors.append(doc.error([*here, "min"], f"min ({low:g}) is greater than max ({high:g})"))
        checks.append(AnalysisCheck(
            name=c["name"], query=c["query"],
            min=float(low) if low is not None else None, max=float(high) if high is not None else None,
        ))
    return Analysis(rules=tuple(raw.get("rules", ())), checks=tuple(checks), min_requests=int(raw.get("minRequests", 0)))


def _canary_traffic(doc: Document, raw: Mapping[str, Any], rollout: Rollout | None, errors: list[SpecError]) -> int:
    """The canary's traffic: as written; with a canary rollout and none written, the first
    step; with blueGreen always 0 (the preview gets no live traffic until the switch)."""
    if rollout is not None and rollout.strategy == "blueGreen":
        return 0
    if "traffic" in raw:
        return int(raw["traffic"])
    if rollout is None:
        errors.append(_missing(doc, ["spec", "canary", "traffic"], "required unless spec.rollout decides the traffic"))
        return 0
    return rollout.steps[0] if rollout.steps else 0


def _check_rollout_rules(models: Mapping[str, Model], model_docs: Mapping[str, Document],
                         monitor_docs: list[Document], config: RepositoryConfig, errors: list[SpecError],
                         lost: Unreadable | None = None) -> None:
    """Each `spec.rollout.analysis.rules` entry must name a rule of a Monitor of that Model.
    The rule names come from every Monitor document that passed the schema (a Monitor with
    other errors still declares its rules); a Model that a schema-invalid Monitor may name is
    not checked, as its rules are unknown and "not found" would mislead."""
    rules: dict[str, set[str]] = {}
    unreadable: set[str] = set()
    for d in monitor_docs:
        meta, spec = d.data.get("metadata"), d.data.get("spec")
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            continue
        key = f"{meta.get('namespace', config.default_namespace)}/{spec.get('model')}"
        if d.schema_errors:
            unreadable.add(key)
            continue
        rules.setdefault(key, set()).update(r["name"] for r in spec["rules"])
    for key, model in models.items():
        if model.rollout is None or not model.rollout.analysis.rules or key in unreadable:
            continue
        if lost is not None and lost.may_watch(model.name):  # a Monitor that did not parse may declare them
            continue
        known = rules.get(key, set())
        shown = ", ".join(sorted(known)) if known else f"no Monitor of Model {model.name!r} declares rules"
        for i, name in enumerate(model.rollout.analysis.rules):
            if name not in known:
                errors.append(model_docs[key].error(
                    ["spec", "rollout", "analysis", "rules", i],
                    f"rule {name!r} is not a rule of a Monitor of Model {model.name!r} ({shown})"))


def _declared(docs: list[Document], config: RepositoryConfig) -> set[str]:
    """namespace/name of every Model document that passed the schema, valid or not."""
    return {f"{d.data['metadata'].get('namespace', config.default_namespace)}/{d.data['metadata']['name']}" for d in docs}


def _template_path(raw: Any) -> str | None:
    """A job template's path as the loader keys files (normalized, from the repo root); None
    for one that leaves the repo (absolute, or through "..")."""
    if not isinstance(raw, str) or not raw or raw.startswith("/"):
        return None
    path = posixpath.normpath(raw)
    return None if path == ".." or path.startswith("../") else path


def _job_template_paths(parsed: list[tuple[str, list[Document], list[SpecError]]], excluded: tuple[str, ...]) -> set[str]:
    """Files that Monitors of the repo name as retrain job templates: a template is a Job for
    the agent to start when an alert fires, so it is not applied as a manifest. Read from every
    Monitor-looking document, valid or not (an invalid Monitor's template is not a manifest either)."""
    out: set[str] = set()
    for path, docs, _ in parsed:
        if any(fnmatch.fnmatch(path, pattern) for pattern in excluded):
            continue
        for d in docs:
            spec = d.data.get("spec") if _is_ours(d, "Monitor") else None
            rules = spec.get("rules") if isinstance(spec, dict) else None
            for r in rules if isinstance(rules, list) else ():
                retrain = r.get("retrain") if isinstance(r, dict) else None
                if isinstance(retrain, dict) and (t := _template_path(retrain.get("jobTemplate"))):
                    out.add(t)
    return out


def _job_template(doc: Document, at: list[str | int], raw: str, files: Mapping[str, _Parsed],
                  errors: list[SpecError]) -> dict[str, Any] | None:
    """The batch/v1 Job a retrain rule names, checked: one document, a Job with a pod template
    and containers, no namespace (it runs in the model's). Errors name the field of the rule,
    or the line of the template file that is wrong."""
    field_path = [*at, "retrain", "jobTemplate"]
    path = _template_path(raw)
    if path is None:
        errors.append(doc.error(field_path, f"{raw!r} must be a path inside the repo, from its root"))
        return None
    if path not in files:
        errors.append(doc.error(field_path, f"job template {path!r} not found in the repo"))
        return None
    docs, errs = files[path]
    if errs:
        errors.extend(errs)
        return None
    if len(docs) != 1:
        errors.append(doc.error(field_path, f"job template {path!r} must hold exactly one YAML document "
                                            f"(a batch/v1 Job), found {len(docs)}"))
        return None
    t = docs[0]
    data = t.data
    if not isinstance(data, dict) or data.get("apiVersion") != "batch/v1" or data.get("kind") != "Job":
        got = f"{data.get('apiVersion')}/{data.get('kind')}" if isinstance(data, dict) else type(data).__name__
        errors.append(t.error(["kind"] if isinstance(data, dict) else [],
                              f"a job template must be a batch/v1 Job, not {got} (named by {doc.path}:{doc.line})"))
        return None
    meta = data.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        errors.append(t.error(["metadata"], "metadata must be a mapping"))
        return None
    if isinstance(meta, dict) and meta.get("namespace") is not None:
        errors.append(t.error(["metadata", "namespace"], "a job template takes no namespace: the Job runs in the "
                                                         "model's namespace"))
        return None
    spec = data.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not isinstance(template, dict):
        errors.append(t.error(["spec", "template"], "a job template needs spec.template (the pod to run)"))
        return None
    if not isinstance(containers, list) or not containers or not all(isinstance(c, dict) for c in containers):
        errors.append(t.error(["spec", "template", "spec", "containers"], "a job template needs at least one container"))
        return None
    return cast(dict[str, Any], data)


def _monitor(doc: Document, config: RepositoryConfig, models: Mapping[str, Model], declared: set[str],
             errors: list[SpecError], files: Mapping[str, _Parsed] | None = None,
             unreadable: Unreadable | None = None) -> Monitor | None:
    meta, spec = doc.data["metadata"], doc.data["spec"]
    ns = meta.get("namespace", config.default_namespace)
    before = len(errors)
    _check_namespace(doc, ["metadata", "namespace"], ns, config, errors)
    key = f"{ns}/{spec['model']}"
    if key in declared and key not in models:
        return None  # the Model has errors of its own; "not found" would mislead
    if key not in models and not (unreadable is not None and unreadable.may_declare_model(spec["model"])):
        errors.append(doc.error(["spec", "model"], f"Model {spec['model']!r} not found in namespace {ns!r}"))
    rules = []
    names: set[str] = set()
    for i, r in enumerate(spec["rules"]):
        if r["name"] in names:
            errors.append(doc.error(["spec", "rules", i, "name"], f"duplicate rule name {r['name']!r}"))
        names.add(r["name"])
        retrain = r.get("retrain") or {}
        job = None
        if "jobTemplate" in retrain:
            job = _job_template(doc, ["spec", "rules", i], retrain["jobTemplate"], files or {}, errors)
        cooldown = str(retrain.get("cooldown", MonitorRule.retrain_cooldown))
        if _seconds(cooldown) <= 0:
            errors.append(doc.error(["spec", "rules", i, "retrain", "cooldown"], f"must be longer than 0, got {cooldown!r}"))
        rules.append(MonitorRule(
            name=r["name"], type=r["type"], threshold=float(r["threshold"]),
            window=r.get("window", config.monitor_window), for_=r.get("for", config.monitor_for),
            severity=r.get("severity", "warning"), action=r.get("action", "alert"),
            description=r.get("description"), quantile=float(r.get("quantile", 0.95)),
            feature=r.get("feature"), method=r.get("method", "psi"),
            retrain_job_template=_template_path(retrain.get("jobTemplate")), retrain_job=job,
            retrain_cooldown=cooldown, retrain_cooldown_seconds=_seconds(cooldown),
        ))
    if len(errors) > before:
        return None
    return Monitor(
        name=meta["name"], namespace=ns, model=spec["model"], rules=tuple(rules),
        labels=dict(meta.get("labels", {})), location=_loc(doc),
    )


def _manifest(doc: Document, config: RepositoryConfig, errors: list[SpecError]) -> Manifest | None:
    body = cast(dict[str, Any], doc.data)
    kind, api = body["kind"], body["apiVersion"]
    malformed = list(_k8s.type_problems(api, kind))
    if malformed:
        errors.extend(doc.error(path, message) for path, message in malformed)
        return None
    group = group_of(api)
    allowed = config.policy.allowed_kinds
    # a bare Kind covers the built-in API groups only; other groups must be named
    builtin = "." not in group or group.endswith(".k8s.io")
    if not (builtin and kind in allowed) and f"{group}/{kind}" not in allowed:
        shown = ", ".join(allowed) or "none"
        errors.append(doc.error(["kind"], f"kind {group + '/' if group else ''}{kind} is not allowed by policy.allowedKinds ({shown})"))
        return None
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        errors.append(doc.error(["metadata", "name"], "missing metadata.name"))
        return None
    if meta.get("namespace") is not None and not isinstance(meta["namespace"], str):
        errors.append(doc.error(["metadata", "namespace"], "metadata.namespace must be a string"))
        return None
    problems = list(_k8s.metadata_problems(group, kind, meta))
    if _k8s.binds_cluster_admin(group, kind, body) and not config.policy.allow_cluster_admin:
        problems.append((["roleRef", "name"], f"{kind} to the ClusterRole cluster-admin is refused "
                                              "(set policy.allowClusterAdmin: true to allow it)"))
    if problems:
        errors.extend(doc.error(path, message) for path, message in problems)
        return None
    # `labels: null` is Kubernetes' "no labels": leave it out, as the API server does
    body = {**body, "metadata": {k: v for k, v in meta.items() if not (k in _MAPS and v is None)}}
    if kind in CLUSTER_SCOPED:
        if "namespace" in meta:
            errors.append(doc.error(["metadata", "namespace"], f"{kind} is cluster-scoped and takes no namespace"))
            return None
        if kind == "Namespace" and not _check_namespace(doc, ["metadata", "name"], meta["name"], config, errors):
            return None
    else:
        ns = meta.get("namespace") or config.default_namespace
        body["metadata"]["namespace"] = ns
        if not _check_namespace(doc, ["metadata", "namespace"], ns, config, errors):
            return None
    if kind == "Secret" and "data" in body and not isinstance(body["data"], dict):
        errors.append(doc.error(["data"], "Secret data must be a mapping"))
        return None
    return Manifest(body=body, location=_loc(doc))


_MAPS = ("labels", "annotations")


def _manifest_key(m: Manifest) -> str:
    group = group_of(m.api_version)
    return f"{group}/{m.kind}/{m.namespace or ''}/{m.name}"
