"""The flags several commands share (PATH and --revision, -n/--model, -o, the cluster flags, the
forge flags, --verify-signatures), and the AGENT_* variables that give `agent run` its defaults."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from agent.output import FORMATS

FORGES = ("github", "gitlab", "gitea")


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"AGENT_{name}", default)


def env_flag(name: str) -> bool:
    return (os.environ.get(f"AGENT_{name}") or "").strip().lower() in ("1", "true", "yes", "on")


def add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", default=".", help="model repo directory (default: .)")
    p.add_argument("--revision", help="read this git commit/branch/tag instead of the working tree")
    add_sops(p)
    add_verbose(p)


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level to stderr")


def add_sops(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--sops-age-key-file", metavar="FILE", default=default,
                   help="age identities that decrypt the repo's SOPS-encrypted files, in memory (default: "
                        "$SOPS_AGE_KEY_FILE, $SOPS_AGE_KEY and sops's keys.txt, as sops reads them)")


def add_filter(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("-n", "--namespace", metavar="NS",
                   help=f"{verb} only objects in namespace NS (with --model: only that namespace's models of that name)")
    p.add_argument("--model", action="append", metavar="NAME",
                   help=f"{verb} only the objects of the model(s) NAME (repeatable)")


def add_forge(p: argparse.ArgumentParser) -> None:
    p.add_argument("--forge", choices=list(FORGES),
                   help="the forge's kind (default: detected from the remote's URL)")
    p.add_argument("--api-url", metavar="URL",
                   help="the forge's API (default: from the remote; GitHub Enterprise, GitLab and Gitea hosts)")
    p.add_argument("--token-env", metavar="NAME",
                   help="the variable holding the API token (default GITHUB_TOKEN, GITLAB_TOKEN or GITEA_TOKEN)")
    p.add_argument("--token-file", metavar="PATH", help="a file holding the API token (instead of --token-env)")
    p.add_argument("--ca-file", metavar="PATH",
                   help="CA bundle to trust for the forge's API and the git push (a private CA)")


def add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verify-signatures", metavar="FILE", default=env("VERIFY_SIGNATURES") or None,
                   help="only a commit signed by a key FILE allows: an SSH allowed-signers file or an OpenPGP "
                        "public keyring (default $AGENT_VERIFY_SIGNATURES; needs --revision except for run)")


def add_color(p: argparse.ArgumentParser) -> None:
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="color the diff: auto (default: on a terminal, unless $NO_COLOR), always or never")


def add_output(p: argparse.ArgumentParser, help: str, extra: Sequence[str] = (), default: str = "text") -> None:
    """-o/--output: text, json and yaml (and `extra`) on every command that prints data; json
    and yaml are one document of the same shape (agent.output.document)."""
    p.add_argument("-o", "--output", choices=[*FORMATS, *extra], default=default, help=f"output format: {help}")


def add_cluster(p: argparse.ArgumentParser) -> None:
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


def add_environment(p: argparse.ArgumentParser, verb: str) -> None:
    """--env and --cluster of render, diff, apply and status (a repo that declares environments)."""
    p.add_argument("--env", metavar="NAME",
                   help=f"{verb} environment NAME of the repo (every one of its clusters, in their order)")
    p.add_argument("--cluster", metavar="NAME",
                   help=f"{verb} only cluster NAME (a context of the kubeconfig) of its environment")
