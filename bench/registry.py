"""Registry resolution cost (issue #12) against a real MLflow server (tools/mlflow, SQLite).

For N models that each serve `@champion` of their own registered model (two versions, each
from a finished run that logged auc), times resolving the whole repo and counts the REST GETs:

- cold: a new client (what `agent diff`/`apply` pay once per command);
- again: the same details cache, no alias moved (what each controller registry tick pays);
- moved: every alias moved to version 2 (a tick after a release of every model);
- pinned: the same models pinning version 1 (`registry sync` proposals only: never re-asked).

Prints a Markdown table. Usage: .venv/bin/python bench/registry.py [N ...]   (default 20 100)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent._http import Transport  # noqa: E402
from agent.engine import Desired, load_desired, registries_for, resolve_registries  # noqa: E402
from devenv.cluster import mlflow_down, mlflow_up  # noqa: E402

API = "/api/2.0/mlflow"


def call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + API + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else {}


def register(url: str, n: int, tag: str) -> list[str]:
    # stored on S3 (nothing is written there): runs:/ resolves to a location a runtime can pull
    exp = call(url, "POST", "/experiments/create",
               {"name": f"bench-{tag}", "artifact_location": f"s3://bench/{tag}"})["experiment_id"]
    names = []
    for i in range(n):
        name = f"bench-{tag}-{i}"
        call(url, "POST", "/registered-models/create", {"name": name})
        for auc in (0.91, 0.93):
            run = call(url, "POST", "/runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
            call(url, "POST", "/runs/log-metric", {"run_id": run, "key": "auc", "value": auc, "timestamp": 0})
            call(url, "POST", "/runs/update", {"run_id": run, "status": "FINISHED"})
            call(url, "POST", "/model-versions/create", {"name": name, "source": f"runs:/{run}/model", "run_id": run})
        call(url, "POST", "/registered-models/alias", {"name": name, "alias": "champion", "version": "1"})
        names.append(name)
    return names


def repo(root: Path, url: str, names: list[str], ref: str) -> Path:
    root.mkdir(parents=True)
    (root / "repo.yaml").write_text(
        "apiVersion: modelops.dev/v1alpha1\nkind: RepositoryConfig\nmetadata: {name: bench}\n"
        f"spec:\n  policy: {{allowedNamespaces: [bench]}}\n  registries: {{mlflow: {{trackingUri: '{url}'}}}}\n"
        "---\napiVersion: modelops.dev/v1alpha1\nkind: ServingRuntime\nmetadata: {name: sk}\n"
        "spec: {image: 'registry.example/sk:1', formats: [sklearn]}\n")
    for name in names:
        (root / f"{name}.yaml").write_text(
            "apiVersion: modelops.dev/v1alpha1\nkind: Model\n"
            f"metadata: {{name: {name}, namespace: bench}}\n"
            "spec:\n  format: sklearn\n  runtime: sk\n  replicas: 1\n"
            f"  versions:\n    - version: v\n      registry: {{mlflow: {{name: {name}, {ref}}}}}\n"
            "  stable: v\n  gates: [{metric: auc, min: 0.9}]\n")
    return root


GETS = 0
_send = Transport.send  # the one HTTP seam of every client: count the registry's requests there


def _counted(self: Transport, method: str, target: str, **kwargs: Any) -> Any:
    global GETS
    GETS += method == "GET"
    return _send(self, method, target, **kwargs)


Transport.send = _counted  # type: ignore[method-assign]


def timed(unresolved: Desired, where: Path, details: dict[Any, Any]) -> tuple[float, int, Desired]:
    global GETS
    GETS = 0
    start = time.perf_counter()
    desired = resolve_registries(unresolved, where, registries_for(unresolved.spec, where, mlflow_details=details))
    return time.perf_counter() - start, GETS, desired


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [20, 100]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        info = mlflow_up(Path(tmp) / "mlflow")
        try:
            for n in sizes:
                names = register(info.url, n, f"n{n}")
                where = repo(Path(tmp) / f"alias-{n}", info.url, names, "alias: champion")
                unresolved = load_desired(where, cached=False, resolve=False)
                details: dict[Any, Any] = {}
                cold = timed(unresolved, where, details)
                again = timed(unresolved, where, details)
                for name in names:
                    call(info.url, "POST", "/registered-models/alias", {"name": name, "alias": "champion", "version": "2"})
                moved = timed(unresolved, where, details)
                assert {r.resolved.version for r in moved[2].resolutions} == {"2"}
                pinned_where = repo(Path(tmp) / f"pinned-{n}", info.url, names, "version: '1'")
                pinned = timed(load_desired(pinned_where, cached=False, resolve=False), pinned_where, {})
                rows.append((n, cold, again, moved, pinned))
        finally:
            mlflow_down(Path(tmp) / "mlflow")
    print("| models | cold resolve s (GETs) | again, nothing moved s (GETs) | every alias moved s (GETs) | pinned, cold s (GETs) |")
    print("|---:|---:|---:|---:|---:|")
    for n, cold, again, moved, pinned in rows:
        print(f"| {n} | {cold[0]:.3f} ({cold[1]}) | {again[0]:.3f} ({again[1]}) | {moved[0]:.3f} ({moved[1]}) | "
              f"{pinned[0]:.3f} ({pinned[1]}) |")


if __name__ == "__main__":
    main()
