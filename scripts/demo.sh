#!/usr/bin/env bash
# Local demo: a fresh validator key is split 2-of-3, three cosigners sign a few hundred
# heights for the validator simulator (a CometBFT node built on tendermint-rs), one cosigner
# is killed halfway, and signing goes on. Prints the simulator's latency summary.
#
#   scripts/demo.sh [HEIGHTS] [PROTOCOL]      defaults: 300 v0.38
set -euo pipefail
cd "$(dirname "$0")/.."
heights=${1:-300}
protocol=${2:-v0.38}
half=$((heights / 2))

echo "==> building (release)"
cargo build --release --locked --workspace --bins -q
bin=target/release

work=$(mktemp -d "${TMPDIR:-/tmp}/cosigner-demo.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "==> stopped every process; logs and files in $work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.'"$1"'); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "==> a fresh validator key"
"$bin/validator-sim" --write-validator-key "$work/priv_validator_key.json"

node_port=$(free_port SOCK_STREAM)
cosigner_args=()
for _ in 1 2 3; do cosigner_args+=(--cosigner "127.0.0.1:$(free_port SOCK_DGRAM)"); done

echo "==> split-key: 2-of-3"
"$bin/split-key" "$work/priv_validator_key.json" --threshold 2 --shares 3 \
    --out "$work/cosigners" --chain-id demo-chain --node "tcp://127.0.0.1:$node_port" \
    --protocol "$protocol" "${cosigner_args[@]}"

echo "==> validator simulator on 127.0.0.1:$node_port, $heights heights, $protocol"
pubkey=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pub_key"]["value"])' "$work/priv_validator_key.json")
"$bin/validator-sim" --listen "127.0.0.1:$node_port" --protocol "$protocol" \
    --chain-id demo-chain --heights "$heights" --expect-pubkey "$pubkey" \
    --json "$work/report.json" --progress --nil-round-every 10 > "$work/sim.out" 2>&1 &
sim_pid=$!
pids+=("$sim_pid")

for i in 1 2 3; do
    RUST_LOG=info "$bin/cosigner" start --config "$work/cosigners/cosigner-$i/cosigner.toml" \
        > "$work/cosigner-$i.log" 2>&1 &
    pids+=("$!")
    echo "    cosigner-$i started (pid $!)"
done

echo "==> signing; cosigner-2 will be killed at height $half"
until grep -q "^height $half committed" "$work/sim.out" 2>/dev/null; do
    kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.2
done
kill -9 "${pids[2]}" 2>/dev/null && echo "==> killed cosigner-2 (kill -9) at height $half"

status=0
wait "$sim_pid" || status=$?
echo "==> validator simulator summary"
grep -v "^height .* committed" "$work/sim.out" || true
exit "$status"
