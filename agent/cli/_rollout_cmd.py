"""`agent rollout status|abort|promote|pause|resume`: see and steer the rollouts the controller
drives. An override is written into the target's rollout ConfigMap; the controller re-reads it
on its next tick, so no controller needs to be reachable from here. Imported only when a rollout
command runs: it loads the kubernetes client."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agent.audit import AuditLog
from agent.cli._common import EXIT_OK, dur, echo, repo_path, rollout_args, warn, write_document
from agent.cli._connect import connect
from agent.cli._rollout import who
from agent.cli._show import checks_text
from agent.cluster import Cluster, RolloutStates, load_rollouts, rollouts_name, save_rollouts
from agent.engine import Desired, identity, invalid_status, judge_states, load_desired, rollout_status
from agent.errors import AgentError
from agent.rollout import abort, pause, promote, repair, resume
from agent.spec import find_model


def cmd_rollout(args: argparse.Namespace) -> int:
    rollout_args(args)
    desired = load_desired(repo_path(args), args.revision)
    target = desired.spec.config.name
    where = f"{args.inventory_namespace}/{rollouts_name(target)}"
    if args.rollout_command != "status" or args.model is not None:
        find_model(desired.spec, args.model, args.namespace)  # a name not in the repo: exit 2 before any request
    with connect(args) as cluster:
        stored = load_rollouts(cluster, target, args.inventory_namespace)
        if args.rollout_command != "status":
            return _override(args, cluster, desired, stored, where)
        judged = judge_states(cluster, desired.spec.models, stored)
    now = time.time()
    rows = []
    for key in sorted(set(stored.states) | set(stored.invalid) | set(judged.invalid)):
        ns, _, name = key.partition("/")
        if (args.model is not None and name != args.model) or (args.namespace is not None and ns != args.namespace):
            continue
        if key in judged.invalid:
            rows.append(invalid_status(judged.invalid[key]))
        elif key in judged.states:
            rows.append(rollout_status(judged.states[key], desired, key, now))
        elif key not in {m.key for m in desired.spec.models}:
            warn(f"the rollout state of {key} in {where} is unreadable, and its model is not in the repo")
    if args.output != "text":
        write_document({"target": target, "rollouts": rows}, args.output)
        return EXIT_OK
    if not rows:
        echo(f"no rollouts of target {target} in {where}" + (f" for {args.model}" if args.model else ""))
        return EXIT_OK
    print(f"{'MODEL':<36} {'VERSION':<10} {'STRATEGY':<9} {'PHASE':<12} {'STEP':<6} {'TRAFFIC':<8} {'SINCE':<9} CHECKS")
    for r in rows:
        step = "-" if r["step"] is None else f"{r['step']}/{r['steps']}" if r.get("steps") else str(r["step"])
        since = "-" if r["sinceSeconds"] is None else dur(r["sinceSeconds"])
        echo(f"{r['model']:<36} {r['version']:<10} {r['strategy']:<9} {r['phase']:<12} {step:<6} "
             f"{str(r['traffic']) + '%':<8} {since:<9} {checks_text(r['checks'])}")
        echo(f"  {r['message']}")
        for note in r.get("notes") or []:
            echo(f"  note: {note}")
    return EXIT_OK


def _override(args: argparse.Namespace, cluster: Cluster, desired: Desired, stored: RolloutStates, where: str) -> int:
    """abort/promote/pause/resume one model's rollout: the machine's transition, saved where the
    controller reads it, audited when --audit-log is given."""
    model = find_model(desired.spec, args.model, args.namespace)
    judged = judge_states(cluster, [model], stored)
    command = args.rollout_command
    by = who(args)
    now = time.time()
    because = f"{by} ({args.reason})" if args.reason else by
    held = judged.invalid.get(model.key)
    if held is not None:  # a fresh, valid state of Git's canary: the way out of an invalid one
        try:
            transition = repair(model, held, command, now, because if command == "abort" else by)
        except ValueError as exc:
            raise AgentError(f"{model.key}: {exc}") from None
        before = ("Invalid", held.traffic, held.version)
    else:
        state = judged.states.get(model.key)
        if state is None and model.key not in stored.states and model.key not in stored.invalid:
            raise AgentError(f"{model.key} has no rollout state in {where}: no rollout of it is running "
                             "(the controller starts one when Git names a canary under spec.rollout)")
        if state is None:
            raise AgentError(f"the rollout state of {model.key} in {where} is unreadable and Git names no canary under "
                             f"spec.rollout: the controller forgets it on its next tick; nothing to {command}")
        if model.canary is None or model.canary.version != state.version or model.rollout is None:
            git = f"canary {model.canary.version}" if model.canary is not None else "no canary"
            raise AgentError(f"the stored rollout of {model.key} is of version {state.version} but Git has {git}"
                             f"{'' if model.rollout is not None else ' and no spec.rollout'}: the controller ends or "
                             f"restarts it on its next tick; nothing to {command}")
        done = {"abort": "Aborted", "promote": "Succeeded", "pause": "Paused", "resume": "Progressing"}[command]
        if state.phase == done:
            echo(f"{model.key}: the rollout of {state.version} is {done} already; nothing written")
            return EXIT_OK
        try:
            if command == "abort":
                transition = abort(state, now, because)
            elif command == "pause":
                transition = pause(state, now, because)
            elif command == "resume":
                transition = resume(state, now, by)
            else:
                transition = promote(state, model, now, by)
        except ValueError as exc:  # pause of a finished rollout, resume of one not paused
            raise AgentError(f"{model.key}: {exc}") from None
        before = (state.phase, state.traffic, state.version)
    new = transition.state
    assert new is not None
    stored.states[model.key] = new.to_json()
    save_rollouts(cluster, stored, prefer="ours")  # the override wins over a concurrent controller tick
    if args.audit_log:
        with AuditLog(Path(args.audit_log), identity()) as audit:
            audit.write("rollout-override", model=model.key, action=args.rollout_command, who=by,
                        reason=args.reason, version=before[2],
                        phase={"from": before[0], "to": new.phase}, step=new.step,
                        traffic={"from": before[1], "to": new.traffic}, configmap=where)
    echo(f"{model.key}: {transition.reason}; {new.phase} at {new.traffic}% (written to {where}; the "
         "controller applies it on its next tick, `agent apply` does now)")
    return EXIT_OK
