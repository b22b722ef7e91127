#!/usr/bin/env bash
# mkrepo.sh <dir> <loop-id> [approval:true|false] [timeout-seconds:0=off] [max_iterations]
# Environment: MKREPO_RUNNER (default: claude, the wrapper that makes the runtime record usage;
# stub-runner.sh records none), MKREPO_STUCK_THRESHOLD (enables stuck detection with that threshold).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="$1"; loop="$2"; approval="${3:-false}"; tmo="${4:-0}"; maxit="${5:-5}"
rm -rf "$dir"; mkdir -p "$dir/.superloop/specs"
git -C "$dir" init -q -b main
git -C "$dir" config user.email t@example.com; git -C "$dir" config user.name T
echo "# temp" > "$dir/README.md"; printf '.stub-test-count\n' > "$dir/.gitignore"
git -C "$dir" add -A; git -C "$dir" commit -qm init
"${SUPERLOOP_SH:?path to the reference superloop.sh}" init --repo "$dir" >/dev/null
echo "# Spec: stub feature" > "$dir/.superloop/specs/$loop.md"
runner="$here/${MKREPO_RUNNER:-claude}"
stuck_threshold="${MKREPO_STUCK_THRESHOLD:-0}"; stuck_enabled=false; [[ "$stuck_threshold" != "0" ]] && stuck_enabled=true || stuck_threshold=3
tenabled=false; [[ "$tmo" != "0" ]] && tenabled=true || tmo=300
jq -n --arg loop "$loop" --argjson appr "$approval" --argjson ten "$tenabled" --argjson tmo "$tmo" --argjson maxit "$maxit" \
  --arg runner "$runner" --argjson sen "$stuck_enabled" --argjson sth "$stuck_threshold" '{
  runners: {stub: {command: [$runner], args: ["{last_message_file}", "{repo}"], prompt_mode: "stdin"}},
  loops: [{
    id: $loop, spec_file: (".superloop/specs/" + $loop + ".md"), max_iterations: $maxit,
    completion_promise: "SUPERLOOP_COMPLETE", checklists: [],
    tests: {mode: "every", commands: ["bash '"$here"'/stub-tests.sh"]},
    evidence: {enabled: false, require_on_completion: false, artifacts: []},
    approval: {enabled: $appr, require_on_completion: $appr},
    reviewer_packet: {enabled: false},
    timeouts: {enabled: $ten, default: $tmo, planner: $tmo, implementer: $tmo, tester: $tmo, reviewer: $tmo},
    stuck: {enabled: $sen, threshold: $sth, action: "report_and_stop", ignore: []},
    roles: {planner: {runner: "stub"}, implementer: {runner: "stub"}, tester: {runner: "stub"}, reviewer: {runner: "stub"}}
  }]}' > "$dir/.superloop/config.json"
