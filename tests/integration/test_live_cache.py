"""Issue #8 on the real control plane: the LIST+WATCH fed LiveCache and the streaming watch.

The cache follows creates, updates, deletes and label changes (subscribers hear each one), a
resync read costs zero requests, stop() leaves no thread, a watch the server ends is resumed
without a relist, a real `410 Gone` (a watch from a resourceVersion the server no longer
keeps) costs exactly a relist, and an identity bound in one namespace only (least-privilege
RBAC) lists and watches there after its LIST across all namespaces is refused.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agent.cache import ADDED, DELETED, MODIFIED, Backoff, LiveCache, list_kind
from agent.cluster import Cluster, ClusterError, KindInfo, watch, well_known
from agent.render import ObjectKey

pytestmark = pytest.mark.integration

CONFIGMAPS = well_known("v1", "ConfigMap")
assert CONFIGMAPS is not None
LABEL = "modelops.dev/cache-test"
Event = tuple[str, ObjectKey, dict[str, Any]]


@pytest.fixture
def cluster(kubeconfig: Path) -> Iterator[Cluster]:
    """A Cluster of its own: its request counter sees only this test's requests."""
    with Cluster.connect(str(kubeconfig)) as c:
        yield c


@pytest.fixture
def selector() -> str:
    return f"{LABEL}={uuid.uuid4().hex[:10]}"


def configmap(namespace: str, name: str, selector: str, **data: str) -> client.V1ConfigMap:
    key, value = selector.split("=")
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels={key: value}),
                              data=data)


def key_of(namespace: str, name: str) -> ObjectKey:
    return ("", "ConfigMap", namespace, name)


def cache_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(("livecache-", "watch-closer-"))}


def test_cache_follows_the_cluster_and_a_resync_costs_no_request(
        cluster: Cluster, api_client: client.ApiClient, namespace: str, selector: str, wait_for: Any) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, configmap(namespace, "before", selector, a="1"))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="unlabelled")))
    threads_before = set(threading.enumerate())
    events: list[Event] = []
    cache = LiveCache(cluster, [CONFIGMAPS], selector)
    cache.subscribe(lambda kind, key, obj: events.append((kind, key, obj)))
    cache.start()
    try:
        assert cache.wait_synced(60)
        # the first list fills the cache and is no event; the selector keeps others out
        assert set(cache.objects()) == {key_of(namespace, "before")}
        assert cache.get(key_of(namespace, "before"))["data"] == {"a": "1"}  # type: ignore[index]
        assert events == []

        core.create_namespaced_config_map(namespace, configmap(namespace, "new", selector, b="2"))
        wait_for(lambda: cache.get(key_of(namespace, "new")), "the created ConfigMap in the cache")
        wait_for(lambda: (ADDED, key_of(namespace, "new")) in [(k, key) for k, key, _ in events], "ADDED")

        core.patch_namespaced_config_map("new", namespace, {"data": {"b": "3"}})
        wait_for(lambda: (cache.get(key_of(namespace, "new")) or {}).get("data") == {"b": "3"}, "the update")
        wait_for(lambda: any(k == MODIFIED and o["data"] == {"b": "3"} for k, _, o in events), "MODIFIED")

        core.delete_namespaced_config_map("new", namespace)
        wait_for(lambda: cache.get(key_of(namespace, "new")) is None, "the delete")
        wait_for(lambda: (DELETED, key_of(namespace, "new")) in [(k, key) for k, key, _ in events], "DELETED")

        # an object that stops matching the selector leaves the cache (the server says DELETED)
        core.patch_namespaced_config_map("before", namespace, {"metadata": {"labels": {LABEL: None}}})
        wait_for(lambda: cache.get(key_of(namespace, "before")) is None, "the unlabelled object leaving")
        assert cache.objects() == {}

        # resync: reads are served from memory
        core.create_namespaced_config_map(namespace, configmap(namespace, "resync", selector, c="4"))
        wait_for(lambda: cache.get(key_of(namespace, "resync")), "the last ConfigMap")
        before = dict(cluster.requests)
        for _ in range(100):
            snapshot = cache.objects()
            assert set(snapshot) == {key_of(namespace, "resync")}
            assert cache.get(key_of(namespace, "resync")) is snapshot[key_of(namespace, "resync")]
        assert dict(cluster.requests) == before
        # one LIST (a GET) and one WATCH (counted as such, not as a GET) so far
        assert cluster.requests["GET"] == 1 and cluster.requests["WATCH"] == 1
        stats = cache.stats
        assert (stats.lists, stats.relists, stats.watches, stats.errors) == (1, 0, 1, 0)
        assert stats.events >= 5
    finally:
        cache.stop()
    assert not cache_threads()
    assert set(threading.enumerate()) <= threads_before  # nothing left behind


def test_an_expired_watch_is_resumed_without_a_relist(
        cluster: Cluster, api_client: client.ApiClient, namespace: str, selector: str, wait_for: Any) -> None:
    core = client.CoreV1Api(api_client)
    with LiveCache(cluster, [CONFIGMAPS], selector, watch_timeout=2) as cache:
        assert cache.wait_synced(60)
        wait_for(lambda: cache.stats.watches >= 3, "two watches ended by the server and resumed", timeout=120)
        core.create_namespaced_config_map(namespace, configmap(namespace, "late", selector, d="5"))
        wait_for(lambda: cache.get(key_of(namespace, "late")), "an object created after the resumes")
        stats = cache.stats
        assert (stats.lists, stats.relists, stats.errors) == (1, 0, 0)
        assert cluster.requests["GET"] == 1  # the one LIST: every resume is a WATCH
        assert cluster.requests["WATCH"] == stats.watches
    assert not cache_threads()


class Widgets:
    """A CRD of the test's own (cluster-scoped, so it is deleted at the end): a kind whose watch
    cache starts when the CRD is established, so resourceVersion "1" is older than anything
    the server can still send (the ConfigMaps' cache starts with the server, at about "1")."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.group = f"t{uuid.uuid4().hex[:8]}.cache.modelops.dev"
        self.info = KindInfo(f"{self.group}/v1", "Widget", "widgets", True)
        self.api_client = api_client
        self.installed = False

    def install(self, wait_for: Any) -> None:
        ext = client.ApiextensionsV1Api(self.api_client)
        schema = client.V1JSONSchemaProps(type="object", x_kubernetes_preserve_unknown_fields=True)
        ext.create_custom_resource_definition(client.V1CustomResourceDefinition(
            metadata=client.V1ObjectMeta(name=f"widgets.{self.group}"),
            spec=client.V1CustomResourceDefinitionSpec(
                group=self.group, scope="Namespaced",
                names=client.V1CustomResourceDefinitionNames(plural="widgets", singular="widget", kind="Widget"),
                versions=[client.V1CustomResourceDefinitionVersion(
                    name="v1", served=True, storage=True,
                    schema=client.V1CustomResourceValidation(open_apiv3_schema=schema))])))
        self.installed = True

        def established() -> bool:
            crd = ext.read_custom_resource_definition(f"widgets.{self.group}")
            return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

        wait_for(established, "the Widget CRD established")

    def create(self, namespace: str, name: str, selector: str) -> None:
        key, value = selector.split("=")
        client.CustomObjectsApi(self.api_client).create_namespaced_custom_object(
            self.group, "v1", namespace, "widgets",
            {"apiVersion": self.info.api_version, "kind": "Widget",
             "metadata": {"name": name, "labels": {key: value}}, "spec": {"size": 1}})

    def uninstall(self) -> None:
        if self.installed:
            client.ApiextensionsV1Api(self.api_client).delete_custom_resource_definition(f"widgets.{self.group}")


@pytest.fixture
def widgets(api_client: client.ApiClient) -> Iterator[Widgets]:
    crd = Widgets(api_client)
    try:
        yield crd
    finally:
        crd.uninstall()


def test_a_kind_installed_later_is_picked_up(
        cluster: Cluster, widgets: Widgets, namespace: str, selector: str, wait_for: Any) -> None:
    events: list[Event] = []
    quick = Backoff(base=0.1, cap=0.5, not_served_cap=0.5)
    with LiveCache(cluster, [widgets.info], selector, backoff=quick) as cache:
        cache.subscribe(lambda kind, key, obj: events.append((kind, key, obj)))
        assert cache.wait_synced(60)  # not served (404) counts as synced, empty
        assert cache.objects() == {} and cache.stats.not_served >= 1 and cache.stats.lists == 0
        widgets.install(wait_for)
        widgets.create(namespace, "w1", selector)
        key = (widgets.group, "Widget", namespace, "w1")
        wait_for(lambda: cache.get(key), "the Widget in the cache")
        wait_for(lambda: (ADDED, key) in [(k, key) for k, key, _ in events], "ADDED for the Widget")
        assert cache.stats.lists >= 1
    assert not cache_threads()


def test_a_real_410_costs_one_relist(
        cluster: Cluster, widgets: Widgets, namespace: str, selector: str, wait_for: Any) -> None:
    """The first list is made to report resourceVersion "1", older than the Widgets' watch
    window: the server answers the watch with 410 Gone and the cache relists (once)."""
    widgets.install(wait_for)
    widgets.create(namespace, "old", selector)
    calls: list[str] = []

    def stale_first(info: KindInfo, sel: str) -> tuple[list[dict[str, Any]], str]:
        objects, version = list_kind(cluster, info, sel)
        calls.append(version)
        return objects, "1" if len(calls) == 1 else version

    with LiveCache(cluster, [widgets.info], selector, lister=stale_first) as cache:
        assert cache.wait_synced(60)
        wait_for(lambda: cache.stats.relists == 1, "the relist after 410 Gone")
        widgets.create(namespace, "after", selector)
        wait_for(lambda: cache.get((widgets.group, "Widget", namespace, "after")), "an object created after the relist")
        assert set(cache.objects()) == {(widgets.group, "Widget", namespace, n) for n in ("old", "after")}
        stats = cache.stats
        assert (stats.lists, stats.relists, stats.errors) == (2, 1, 0)
    assert not cache_threads()


def test_a_kind_that_is_not_served_is_empty_and_synced(cluster: Cluster, selector: str, wait_for: Any) -> None:
    widgets = KindInfo("example.invalid/v1", "Widget", "widgets", True)
    with LiveCache(cluster, [CONFIGMAPS, widgets], selector) as cache:
        assert cache.wait_synced(60)
        assert cache.objects() == {}
        assert cache.stats.not_served >= 1 and cache.stats.lists == 1
    assert not cache_threads()


def test_watch_streams_events_and_stops_from_another_thread(
        cluster: Cluster, api_client: client.ApiClient, namespace: str, selector: str, wait_for: Any) -> None:
    core = client.CoreV1Api(api_client)
    _objects, version = list_kind(cluster, CONFIGMAPS, selector)
    stop = threading.Event()
    seen: list[dict[str, Any]] = []
    ended: list[BaseException | None] = []

    def consume() -> None:
        try:
            for event in watch(cluster, CONFIGMAPS, selector, version, 300, stop):
                seen.append(event)
        except BaseException as exc:  # reported to the test
            ended.append(exc)
        else:
            ended.append(None)

    thread = threading.Thread(target=consume, name="test-watch")
    thread.start()
    core.create_namespaced_config_map(namespace, configmap(namespace, "streamed", selector, g="8"))
    wait_for(lambda: any(e["type"] == "ADDED" and e["object"]["metadata"]["name"] == "streamed" for e in seen),
             "the ADDED event")
    stop.set()  # the thread is blocked reading a watch the server keeps open for 300 s
    thread.join(10)
    assert not thread.is_alive() and ended == [None]
    assert not cache_threads()
    assert cluster.requests["WATCH"] == 1 and cluster.requests["GET"] == 1




def may_list(cluster: Cluster, namespace: str) -> bool:
    try:
        cluster.request("GET", CONFIGMAPS.collection_path(namespace), query={"limit": "1"}, retries=0)
    except ClusterError as err:
        if err.status == 403:
            return False
        raise
    return True


@pytest.fixture
def reader_in_one_namespace(api_client: client.ApiClient, namespace: str, wait_for: Any) -> Iterator[Cluster]:
    """A Cluster authenticated as a ServiceAccount that may list/watch ConfigMaps in `namespace`
    only (a Role and a RoleBinding there, nothing cluster-wide): least-privilege RBAC."""
    core = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    name = f"cache-reader-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
    reader: Cluster | None = None
    try:
        rbac.create_namespaced_role(namespace, client.V1Role(
            metadata=client.V1ObjectMeta(name=name),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list", "watch"])]))
        rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)]))
        token = core.create_namespaced_service_account_token(name, namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=1800))).status.token
        admin = api_client.configuration
        config = client.Configuration()
        config.host = admin.host
        config.ssl_ca_cert = admin.ssl_ca_cert
        config.verify_ssl = admin.verify_ssl
        config.api_key = {"authorization": f"Bearer {token}"}
        reader = Cluster(client.ApiClient(config))
        # the Role is in force (the authorizer's cache follows RBAC objects within moments)
        wait_for(lambda: may_list(reader, namespace), "the Role in force")
        reader.requests.clear()
        yield reader
    finally:
        if reader is not None:
            reader.close()
        for delete in (rbac.delete_namespaced_role_binding, rbac.delete_namespaced_role,
                       core.delete_namespaced_service_account):
            try:
                delete(name, namespace)
            except client.ApiException as err:
                if err.status != 404:
                    raise


@pytest.fixture
def other_namespace(api_client: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def test_an_identity_bound_in_one_namespace_lists_and_watches_there(
        reader_in_one_namespace: Cluster, api_client: client.ApiClient, namespace: str, other_namespace: str,
        selector: str, wait_for: Any) -> None:
    """No cluster-wide permission: the LIST across all namespaces answers 403 and the cache
    lists and watches in the namespace it manages instead (and only there)."""
    reader = reader_in_one_namespace
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, configmap(namespace, "before", selector, a="1"))
    core.create_namespaced_config_map(other_namespace, configmap(other_namespace, "elsewhere", selector, x="1"))
    urls: list[tuple[str, str]] = []
    rest = reader.api.rest_client
    counted = rest.request

    def recorded(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        urls.append((method, url))
        return counted(method, url, *args, **kwargs)

    rest.request = recorded
    events: list[Event] = []
    cache = LiveCache(reader, [CONFIGMAPS], selector, namespaces=lambda info: {namespace})
    cache.subscribe(lambda kind, key, obj: events.append((kind, key, obj)))
    cache.start()
    try:
        assert cache.wait_synced(60)
        assert set(cache.objects()) == {key_of(namespace, "before")}  # not the other namespace's
        assert cache.per_namespace == {("", "ConfigMap"): frozenset({namespace})}
        assert cache.forbidden == frozenset()
        assert ("v1", "ConfigMap") in reader.namespace_scoped  # observe() on this Cluster skips the 403 too

        core.create_namespaced_config_map(namespace, configmap(namespace, "new", selector, b="2"))
        wait_for(lambda: (ADDED, key_of(namespace, "new")) in [(k, key) for k, key, _ in events], "ADDED")
        core.patch_namespaced_config_map("new", namespace, {"data": {"b": "3"}})
        wait_for(lambda: any(k == MODIFIED and o["data"] == {"b": "3"} for k, _, o in events), "MODIFIED")
        assert (cache.get(key_of(namespace, "new")) or {}).get("data") == {"b": "3"}
        core.delete_namespaced_config_map("new", namespace)
        wait_for(lambda: (DELETED, key_of(namespace, "new")) in [(k, key) for k, key, _ in events], "DELETED")
        assert cache.get(key_of(namespace, "new")) is None
        core.patch_namespaced_config_map("elsewhere", other_namespace, {"data": {"x": "2"}})
        core.create_namespaced_config_map(namespace, configmap(namespace, "last", selector, c="4"))
        wait_for(lambda: cache.get(key_of(namespace, "last")), "the last ConfigMap")
        assert set(cache.objects()) == {key_of(namespace, "before"), key_of(namespace, "last")}
        assert not [e for e in events if e[1][2] != namespace]

        # the requests: the refused LIST across all namespaces, then one LIST and one WATCH in
        # the namespace, nothing else
        assert reader.requests["GET"] == 2 and reader.requests["WATCH"] == 1, reader.requests
        paths = [(method, url.split("://", 1)[-1].split("/", 1)[1].split("?")[0], "watch=true" in url)
                 for method, url in urls]
        assert paths == [("GET", "api/v1/configmaps", False),
                         ("GET", f"api/v1/namespaces/{namespace}/configmaps", False),
                         ("GET", f"api/v1/namespaces/{namespace}/configmaps", True)], paths
        stats = cache.stats
        assert (stats.lists, stats.watches, stats.forbidden, stats.errors) == (1, 1, 1, 0)
    finally:
        cache.stop()
    assert not cache_threads()
