"""A throw-away CA and the certificates one local control plane needs, made with openssl.

The apiserver only trusts clients it can authenticate, and RBAC needs identities: the admin
is O=system:masters, the controller manager and scheduler get the users their bootstrap
ClusterRoleBindings name. ECDSA P-256 keeps generation fast.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devenv.cluster._errors import DevclusterError

SERVICE_IP = "10.96.0.1"  # first address of --service-cluster-ip-range: the kubernetes Service
_SERVER_SANS = (
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "IP:127.0.0.1",
    f"IP:{SERVICE_IP}",
)
# name -> (subject, extended key usage)
_LEAVES: dict[str, tuple[str, str]] = {
    "apiserver": ("/CN=kube-apiserver", "serverAuth"),
    "admin": ("/O=system:masters/CN=devcluster-admin", "clientAuth"),
    "controller-manager": ("/CN=system:kube-controller-manager", "clientAuth"),
    "scheduler": ("/CN=system:kube-scheduler", "clientAuth"),
}
# name -> subject of serving certificates for local servers the apiserver calls (webhooks):
# DNS:localhost and IP:127.0.0.1. Not part of `complete()`: a cluster made before one was
# added gets it on its next start (`ensure_local_servers`).
_LOCAL_SERVERS: dict[str, str] = {"kserve-webhook": "/CN=kserve-webhook"}
_DAYS = "3650"


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files (all PEM) in one directory."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def complete(self) -> bool:
        """Every file `create` makes is there (a restart can reuse them)."""
        files = [self.ca_cert, self.ca_key, self.sa_key, self.sa_pub]
        files += [p for name in _LEAVES for p in (self.cert(name), self.key(name))]
        return all(p.is_file() for p in files)


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise DevclusterError("openssl not found on PATH; it is needed to make the cluster's CA")
    result = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DevclusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def _serial() -> str:
    return "0x" + secrets.token_hex(16)


_LOCAL_SERVER_SANS = ("DNS:localhost", "IP:127.0.0.1")


def _write_config(directory: Path) -> Path:
    config = directory / "openssl.cnf"
    config.write_text(
        "[req]\ndistinguished_name = dn\n[dn]\n"
        "[ca]\nbasicConstraints = critical,CA:TRUE\n"
        "keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n"
        "subjectKeyIdentifier = hash\n"
        "[serverAuth]\nbasicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = {','.join(_SERVER_SANS)}\n"
        "[clientAuth]\nbasicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = clientAuth\n"
        "[localServer]\nbasicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        f"subjectAltName = {','.join(_LOCAL_SERVER_SANS)}\n"
    )
    return config


def _new_ca(pki: Pki, config: Path, subject: str) -> None:
    _new_key(pki.ca_key)
    _openssl(
        "req", "-x509", "-new", "-key", str(pki.ca_key), "-subj", subject,
        "-days", _DAYS, "-set_serial", _serial(), "-config", str(config), "-extensions", "ca",
        "-out", str(pki.ca_cert),
    )  # fmt: skip


def _new_leaf(pki: Pki, config: Path, name: str, subject: str, extensions: str) -> None:
    csr = pki.directory / f"{name}.csr"
    _new_key(pki.key(name))
    _openssl("req", "-new", "-key", str(pki.key(name)), "-subj", subject,
             "-config", str(config), "-out", str(csr))  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
        "-set_serial", _serial(), "-days", _DAYS, "-extfile", str(config),
        "-extensions", extensions, "-out", str(pki.cert(name)),
    )  # fmt: skip
    csr.unlink()


def create(directory: Path) -> Pki:
    """Make a fresh CA, the leaf certificates and the service-account key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    config = _write_config(directory)
    _new_ca(pki, config, "/CN=devcluster-ca")
    for name, (subject, usage) in _LEAVES.items():
        _new_leaf(pki, config, name, subject, usage)
    _new_key(pki.sa_key)
    _openssl("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    ensure_local_servers(pki)
    return pki


def ensure_local_servers(pki: Pki) -> None:
    """The serving certificates of the cluster's local webhook servers, signed by its CA; those
    already there are kept."""
    config = _write_config(pki.directory)
    for name, subject in _LOCAL_SERVERS.items():
        if not (pki.cert(name).is_file() and pki.key(name).is_file()):
            _new_leaf(pki, config, name, subject, "localServer")


def create_local_server(directory: Path, name: str = "server", ca_subject: str = "/CN=devcluster-local-ca") -> Pki:
    """A serving certificate name.crt/.key for DNS:localhost and IP:127.0.0.1, signed by the CA
    in directory (made first if there is none): a local server that clients reach over real TLS.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    config = _write_config(directory)
    if not (pki.ca_cert.is_file() and pki.ca_key.is_file()):
        _new_ca(pki, config, ca_subject)
    _new_leaf(pki, config, name, "/CN=localhost", "localServer")
    return pki
