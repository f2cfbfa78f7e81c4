"""`agent run`: the controller's flags, each also an AGENT_* variable. The command runs from
agent.cli._run_cmd, imported when it runs (it loads the controller and the kubernetes client)."""

from __future__ import annotations

import argparse

from agent.cli._args import FORGES, add_cluster, add_sops, add_verify, env, env_flag
from agent.cli._common import lazy


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="the controller: keep the cluster as Git says (every flag also AGENT_<FLAG>)")
    p.add_argument("--repo", default=env("REPO"), help="git remote: a path, file://, https:// or ssh:// URL")
    p.add_argument("--branch", default=env("BRANCH", "main"), help="branch to follow (default main)")
    p.add_argument("--path", dest="repo_path", default=env("PATH_IN_REPO", env("REPO_PATH", "")),
                   help="directory of the model repo inside the git repo (AGENT_REPO_PATH)")
    p.add_argument("--interval", default=env("INTERVAL", "60s"), help="poll interval, jittered (default 60s)")
    p.add_argument("--resync", default=env("RESYNC", "10m"), help="full re-plan from the cache (default 10m)")
    p.add_argument("--http-addr", default=env("HTTP_ADDR", ":8080"),
                   help="/healthz /readyz /metrics /webhook (default :8080; empty: none)")
    p.add_argument("--ui", choices=["on", "off"], default=env("UI", "on"),
                   help="the read-only web UI at / of --http-addr (or of --ui-addr); default on")
    p.add_argument("--ui-addr", default=env("UI_ADDR"), help="serve the web UI on this address instead (host:port)")
    p.add_argument("--ui-auth-file", default=env("UI_AUTH_FILE"),
                   help="the UI needs this bearer token or basic credentials (docs/ui.md); default: open")
    p.add_argument("--ui-url", default=env("UI_URL"),
                   help="the UI's address as people reach it: notifications and commit statuses link to it")
    p.add_argument("--notify", default=env("NOTIFY"), metavar="FILE|secret:NS/NAME",
                   help="notification targets (Slack-style and CloudEvents webhooks, forge commit statuses; "
                        "docs/notifications.md): a file, or a Secret's notify.yaml")
    p.add_argument("--audit-log", default=env("AUDIT_LOG"), help="append hash-chained audit records to this file")
    p.add_argument("--leader-elect", action="store_true", default=env_flag("LEADER_ELECT"),
                   help="only the holder of the target's Lease writes")
    p.add_argument("--lease-name", default=env("LEASE_NAME"), help="default modelops-<target>")
    p.add_argument("--lease-namespace", default=env("LEASE_NAMESPACE"), help="default: the inventory namespace")
    p.add_argument("--drift-policy", choices=["heal", "detect"], default=env("DRIFT_POLICY", "heal"),
                   help="live changes to managed objects: undo them (heal, default) or only report them (detect)")
    p.add_argument("--prune", action="store_true", default=env_flag("PRUNE"),
                   help="delete managed objects no longer in the repo")
    p.add_argument("--watch-dir", default=env("WATCH_DIR"), help="a working copy to follow instead of a remote")
    p.add_argument("--webhook-secret-file", default=env("WEBHOOK_SECRET_FILE"),
                   help="HMAC secret that signs /webhook requests (no file: /webhook is off)")
    p.add_argument("--git-token-file", default=env("GIT_TOKEN_FILE"), help="https token, read on every fetch")
    p.add_argument("--git-token-env", default=env("GIT_TOKEN_ENV"), help="name of a variable holding the token")
    p.add_argument("--ssh-key-file", default=env("SSH_KEY_FILE"), help="private key for an ssh:// remote")
    p.add_argument("--known-hosts-file", default=env("KNOWN_HOSTS_FILE"),
                   help="known_hosts for an ssh:// remote (host keys are always checked)")
    p.add_argument("--git-ca-file", default=env("GIT_CA_FILE"),
                   help="CA bundle to trust for an https:// remote (a private CA)")
    p.add_argument("--prometheus-url", default=env("PROMETHEUS_URL"),
                   help="Prometheus that judges rollouts (spec.rollout analysis); none: a gated step never advances")
    p.add_argument("--forge", default=env("FORGE") or None, choices=list(FORGES),
                   help="the forge of --repo for rollout pull requests (default: from the URL)")
    p.add_argument("--forge-api-url", default=env("FORGE_API_URL"), help="the forge's API root (self-hosted forges)")
    p.add_argument("--registry-interval", default=env("REGISTRY_INTERVAL", "5m"), metavar="DURATION",
                   help="how often a commit's registry aliases and stages are resolved again (and --registry-sync-"
                        "alias checked); 0 or off: only when a commit loads (default 5m)")
    p.add_argument("--registry-sync-alias", default=env("REGISTRY_SYNC_ALIAS"), metavar="ALIAS",
                   help="for models whose stable version pins a registry version: when ALIAS (MLflow alias, GTO "
                        "stage) names another version, open a promotion PR, as `agent registry sync --open-pr`")
    p.add_argument("--registry-sync-as", default=env("REGISTRY_SYNC_AS", "canary"), choices=["canary", "stable"],
                   help="what the proposed version becomes (default canary)")
    p.add_argument("--registry-sync-traffic", default=env("REGISTRY_SYNC_TRAFFIC", "10"), metavar="PCT",
                   help="the proposed canary's traffic (default 10)")
    p.add_argument("--cache-dir", default=env("CACHE_DIR_CONTROLLER"), help="git mirrors (default $AGENT_CACHE_DIR/controller)")
    add_sops(p, env("SOPS_AGE_KEY_FILE"))
    p.add_argument("--log-level", default=env("LOG_LEVEL", "info"), help="debug, info (default), warning or error")
    p.add_argument("--cluster", dest="clusters", action="append", default=None, metavar="NAME",
                   help="a repo with environments: drive only cluster NAME (repeatable; the one-agent-per-cluster "
                        "way); default every cluster of every environment (AGENT_CLUSTERS, comma-separated)")
    add_verify(p)
    add_cluster(p)
    p.set_defaults(handler=lazy("_run_cmd", "cmd_run"))
