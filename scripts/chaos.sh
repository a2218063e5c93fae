#!/usr/bin/env bash
# Chaos run: a T-of-N threshold cluster signs for the validator simulator for SECONDS while
# random cosigners are killed (SIGKILL) and restarted, one at a time and now and then all
# at once. At the end it prints what the simulator saw: heights committed, requests that got
# no signature, refusals by reason, the longest gap, and double signs (computed by the
# simulator from every signature it received, keyed by chain/height/round/step).
# Exits non-zero if there was a double sign.
#
#   scripts/chaos.sh [SECONDS] [T N]      defaults: 20 2 3   (CI runs the short default)
#
# Partitions and slow links need network namespaces and root; they are exercised by
# tests/e2e_faults.rs (netns tests), not here.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
threshold=${2:-2}
shares=${3:-3}
chain=chaos-chain

cargo build -q -p cosigner -p split-key -p validator-sim --bins
bin=${CARGO_TARGET_DIR:-target}/debug

work=$(mktemp -d "${TMPDIR:-/tmp}/cosigner-chaos.XXXXXX")
declare -A pid
sim_pid=
cleanup() {
    for p in "${pid[@]}" $sim_pid; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.'"$1"'); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$bin/validator-sim" --write-validator-key "$work/priv_validator_key.json" >/dev/null
node_port=$(free_port SOCK_STREAM)
cosigner_args=()
for _ in $(seq "$shares"); do cosigner_args+=(--cosigner "127.0.0.1:$(free_port SOCK_DGRAM)"); done
"$bin/split-key" "$work/priv_validator_key.json" --threshold "$threshold" --shares "$shares" \
    --out "$work/cosigners" --chain-id "$chain" --node "tcp://127.0.0.1:$node_port" \
    "${cosigner_args[@]}" >/dev/null
pubkey=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pub_key"]["value"])' "$work/priv_validator_key.json")

start() {
    RUST_LOG=info "$bin/cosigner" start --config "$work/cosigners/cosigner-$1/cosigner.toml" \
        >> "$work/cosigner-$1.log" 2>&1 &
    pid[$1]=$!
}
stop() { kill -9 "${pid[$1]}" 2>/dev/null || true; wait "${pid[$1]}" 2>/dev/null || true; }

echo "==> chaos: $threshold-of-$shares for ${seconds}s (files in $work)"
"$bin/validator-sim" --listen "127.0.0.1:$node_port" --chain-id "$chain" --duration "$seconds" \
    --expect-pubkey "$pubkey" --block-time-ms 50 --nil-round-every 7 \
    --json "$work/report.json" --progress > "$work/sim.out" 2>&1 &
sim_pid=$!
for i in $(seq "$shares"); do start "$i"; done

kills=0; all_kills=0
# A random duration in seconds, between $1 and $2 milliseconds.
rand_ms() { awk -v r="$RANDOM" -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (a + r % (b - a)) / 1000 }'; }
while kill -0 "$sim_pid" 2>/dev/null; do
    sleep "$(rand_ms 800 2500)"
    kill -0 "$sim_pid" 2>/dev/null || break
    if (( RANDOM % 8 == 0 )); then
        for i in $(seq "$shares"); do stop "$i"; done
        all_kills=$((all_kills + 1))
        sleep "$(rand_ms 100 600)"
        for i in $(seq "$shares"); do start "$i"; done
    else
        # Up to N - T cosigners down at once, so a quorum can always form again.
        victims=$(shuf -i 1-"$shares" -n $(( 1 + RANDOM % (shares - threshold + 1) )))
        for i in $victims; do stop "$i"; kills=$((kills + 1)); done
        sleep "$(rand_ms 200 1500)"
        for i in $victims; do start "$i"; done
    fi
done
wait "$sim_pid" || true
sim_pid=

python3 - "$work/report.json" "$work/sim.out" "$kills" "$all_kills" <<'PY'
import json, re, sys
report = json.load(open(sys.argv[1]))
committed = [int(m.group(1)) for m in re.finditer(r"^height (\d+) committed", open(sys.argv[2]).read(), re.M)]
print(f"cosigners killed: {sys.argv[3]} single kills, {sys.argv[4]} whole-cluster kills")
print(f"heights committed: {len(committed)} (last {max(committed, default=0)})")
print(f"requests signed: {report['passed']}, without a valid signature: {report['failed']} {report.get('failures', {})}")
print("refusals by reason:")
for reason, n in sorted(report.get("refusals", {}).items(), key=lambda kv: -kv[1]):
    print(f"  {n:6}  {reason[:160]}")
print(f"longest gap: {report['longest_gap_ms']:.0f} ms ({report['longest_gap_request']})")
print(f"double signs: {report['double_signs']}")
sys.exit(1 if report["double_signs"] != 0 else 0)
PY
