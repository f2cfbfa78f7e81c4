"""Command lines of the control-plane processes (the five of Kubernetes and KServe's admission
webhook), everything bound to 127.0.0.1.

Kept apart from the orchestration so the flags are easy to read and review in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devenv.cluster._pki import Pki

SERVICE_CIDR = "10.96.0.0/16"  # room for thousands of model Services (benchmarks)
POD_CIDR = "10.244.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
NODE_IP = "127.0.0.1"  # the fake node's address: nothing may ever dial out of loopback
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kserve_webhook: int = 0  # 0: recorded by a version that ran no webhook (never reused)

    COUNT = 6

    @classmethod
    def from_list(cls, ports: list[int]) -> Ports:
        return cls(*ports)

    def as_dict(self) -> dict[str, int]:
        return {
            "etcd_client": self.etcd_client,
            "etcd_peer": self.etcd_peer,
            "apiserver": self.apiserver,
            "controller_manager": self.controller_manager,
            "scheduler": self.scheduler,
            "kserve_webhook": self.kserve_webhook,
        }


@dataclass(frozen=True)
class Layout:
    """Where one cluster keeps its files inside its state directory."""

    directory: Path
    bin_dir: Path

    @property
    def pki(self) -> Path:
        return self.directory / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.directory / "etcd"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def run(self) -> Path:
        return self.directory / "run"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def state(self) -> Path:
        return self.directory / "state.json"

    @property
    def kwok_config(self) -> Path:
        return self.run / "kwok.yaml"

    def component_kubeconfig(self, name: str) -> Path:
        return self.run / f"{name}.kubeconfig"

    def owned(self) -> list[Path]:
        """Everything `up` creates, so a restart can wipe exactly that."""
        return [self.pki, self.etcd_data, self.logs, self.run, self.kubeconfig, self.state]

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)


def server_url(ports: Ports) -> str:
    return f"https://{LOOPBACK}:{ports.apiserver}"


def etcd(layout: Layout, ports: Ports) -> list[str]:
    client = f"http://{LOOPBACK}:{ports.etcd_client}"
    peer = f"http://{LOOPBACK}:{ports.etcd_peer}"
    return [
        layout.binary("etcd"),
        "--name=devcluster",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=devcluster={peer}",
        "--initial-cluster-state=new",
        "--unsafe-no-fsync",  # a throw-away test store: durability buys nothing here
        "--log-level=warn",
    ]


def apiserver(layout: Layout, ports: Ports, pki: Pki) -> list[str]:
    return [
        layout.binary("kube-apiserver"),
        f"--etcd-servers=http://{LOOPBACK}:{ports.etcd_client}",
        f"--bind-address={LOOPBACK}",
        f"--advertise-address={LOOPBACK}",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.run / 'apiserver'}",
        f"--tls-cert-file={pki.cert('apiserver')}",
        f"--tls-private-key-file={pki.key('apiserver')}",
        f"--client-ca-file={pki.ca_cert}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-account-issuer={SA_ISSUER}",
        "--allow-privileged=true",
        # The kubernetes Service endpoint would be 127.0.0.1, which Endpoints reject.
        "--endpoint-reconciler-type=none",
        "--enable-priority-and-fairness=false",  # one client, two cores: skip the queueing
        "--profiling=false",
    ]


def controller_manager(layout: Layout, ports: Ports, pki: Pki) -> list[str]:
    kubeconfig = layout.component_kubeconfig("controller-manager")
    return [
        layout.binary("kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.run / 'controller-manager'}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--root-ca-file={pki.ca_cert}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--cluster-name=devcluster",
        "--controllers=*",
        "--profiling=false",
    ]


def scheduler(layout: Layout, ports: Ports) -> list[str]:
    kubeconfig = layout.component_kubeconfig("scheduler")
    return [
        layout.binary("kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={layout.run / 'scheduler'}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def kwok(layout: Layout) -> list[str]:
    return [
        layout.binary("kwok"),
        f"--kubeconfig={layout.kubeconfig}",
        f"--config={layout.kwok_config}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}={KWOK_ANNOTATION_VALUE}",
        f"--node-ip={NODE_IP}",
        f"--cidr={POD_CIDR}",
        "--node-lease-duration-seconds=40",
    ]


KSERVE_WEBHOOK_PATH = "/validate-serving-kserve-io-v1beta1-inferenceservice"  # KServe's own path


def kserve_webhook_url(ports: Ports) -> str:
    return f"https://{LOOPBACK}:{ports.kserve_webhook}{KSERVE_WEBHOOK_PATH}"


def kserve_webhook(layout: Layout, ports: Ports, pki: Pki) -> list[str]:
    """KServe's InferenceService validator (tools/kserve-webhook), over TLS from the cluster's CA."""
    return [
        layout.binary("kserve-webhook"),
        f"--listen={LOOPBACK}:{ports.kserve_webhook}",
        f"--tls-cert-file={pki.cert('kserve-webhook')}",
        f"--tls-private-key-file={pki.key('kserve-webhook')}",
    ]
