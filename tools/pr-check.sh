#!/usr/bin/env bash
# The PR check of a model repo, run by action.yml (GitHub) and ci/gitlab/agent-pr-check.yml
# (GitLab), and by hand or in tests against any forge:
#   1. agent validate                          the PR's tree is a valid model repo
#   2. agent diff --base <base> -o markdown    the plan of the PR (exit 1 = changes: not a failure)
#   3. agent diff --kubeconfig (optional)      the plan against the live cluster
#   4. agent pr-comment                        one comment on the PR, edited on every run
# The check fails (exit 1) when the repo is invalid or a step errs (exit 2); the comment is
# posted first, with the error in it. Everything comes from the environment:
#   AGENT_PR_NUMBER      the PR / merge request number (empty: no comment, plan file only)
#   AGENT_PR_BASE        the base branch (required)
#   AGENT_PR_BASE_REF    the revision to diff against (default origin/$AGENT_PR_BASE; fetched
#                        from origin when the checkout does not have it)
#   AGENT_PR_PATH        the model repo inside the checkout (default .)
#   AGENT_PR_FORGE       github | gitlab | gitea (default: from the remote URL)
#   AGENT_PR_REPO        OWNER/NAME on the forge (default: the URL of origin)
#   AGENT_PR_API_URL     the forge's API root (GitHub Enterprise, GitLab, Gitea)
#   AGENT_PR_TOKEN_ENV   the variable holding the API token (default by forge: GITHUB_TOKEN, ...)
#   AGENT_PR_CA_FILE     a CA bundle for the forge's API
#   AGENT_PR_KUBECONFIG  a kubeconfig: also diff against the live cluster
#   AGENT_PR_MARKER      which comment to keep (default plan)
#   AGENT_PR_OUT         where the plan is written (default plan.md)
#   AGENT_BIN            the agent command (default agent)
set -uo pipefail

agent=${AGENT_BIN:-agent}
path=${AGENT_PR_PATH:-.}
base=${AGENT_PR_BASE:-}
out=${AGENT_PR_OUT:-plan.md}
if [ -z "$base" ]; then
  echo "pr-check: AGENT_PR_BASE (the PR's base branch) is not set" >&2
  exit 2
fi
base_ref=${AGENT_PR_BASE_REF:-origin/$base}
export GIT_TERMINAL_PROMPT=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

# A code block no line of the text can close: a fence longer than its longest backtick run.
fenced() {
  local longest fence
  longest=$(grep -o '`*' "$1" | awk '{ if (length > m) m = length } END { print m + 0 }')
  fence='```'
  while [ "${#fence}" -le "$longest" ]; do fence="$fence\`"; done
  printf '%stext\n' "$fence"
  cat "$1"
  printf '\n%s\n' "$fence"
}

if ! git -C "$path" rev-parse --verify --quiet "$base_ref^{commit}" >/dev/null; then
  fetch_env=()  # the forge's CA for the fetch too (the variable: it wins over any inherited one)
  [ -n "${AGENT_PR_CA_FILE:-}" ] && fetch_env=("GIT_SSL_CAINFO=$AGENT_PR_CA_FILE")
  env "${fetch_env[@]}" timeout 120 git -C "$path" fetch --quiet --no-tags origin "+refs/heads/$base:refs/remotes/origin/$base" \
    >"$work/fetch.err" 2>&1 || cat "$work/fetch.err" >&2
fi

{
  status=0
  "$agent" validate "$path" >"$work/validate.out" 2>"$work/validate.err" || status=$?
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "### Model changes: the model repo is invalid"
    echo
    echo "\`agent validate\` exited $status; nothing of this PR can be applied:"
    echo
    fenced "$work/validate.err"
  else
    status=0
    "$agent" diff "$path" --base "$base_ref" --revision HEAD -o markdown >"$work/diff.md" 2>"$work/diff.err" || status=$?
    if [ "$status" -le 1 ]; then
      cat "$work/diff.md"
      echo "changes=$([ "$status" -eq 1 ] && echo true || echo false)" >>"${GITHUB_OUTPUT:-/dev/null}"
    else
      failed=1
      echo "### Model changes: the plan failed"
      echo
      echo "\`agent diff\` against the base exited $status:"
      echo
      fenced "$work/diff.err"
    fi
  fi
  if [ -n "${AGENT_PR_KUBECONFIG:-}" ] && [ "$failed" -eq 0 ]; then
    echo
    echo "#### Against the live cluster"
    echo
    status=0
    "$agent" diff "$path" --revision HEAD --kubeconfig "$AGENT_PR_KUBECONFIG" -o markdown >"$work/live.md" 2>"$work/live.err" || status=$?
    if [ "$status" -le 1 ]; then
      cat "$work/live.md"
    else
      failed=1
      echo "\`agent diff --kubeconfig\` exited $status:"
      echo
      fenced "$work/live.err"
    fi
  fi
} >"$out"

cat "$out"
[ -n "${GITHUB_STEP_SUMMARY:-}" ] && cat "$out" >>"$GITHUB_STEP_SUMMARY"

if [ -n "${AGENT_PR_NUMBER:-}" ]; then
  "$agent" pr-comment "$AGENT_PR_NUMBER" --body-file "$out" --marker "${AGENT_PR_MARKER:-plan}" \
    ${AGENT_PR_FORGE:+--forge "$AGENT_PR_FORGE"} ${AGENT_PR_REPO:+--repo "$AGENT_PR_REPO"} \
    ${AGENT_PR_API_URL:+--api-url "$AGENT_PR_API_URL"} ${AGENT_PR_TOKEN_ENV:+--token-env "$AGENT_PR_TOKEN_ENV"} \
    ${AGENT_PR_CA_FILE:+--ca-file "$AGENT_PR_CA_FILE"} || failed=1
fi
for f in validate diff live; do
  [ -s "$work/$f.err" ] && sed "s/^/$f: /" "$work/$f.err" >&2
done
exit "$failed"
