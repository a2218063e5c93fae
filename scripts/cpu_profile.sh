#!/usr/bin/env bash
# Instructions per signature, repeatable on a loaded machine: the floor (benches/floor.rs)
# and every cosigner of a t-of-n cluster driven by the validator simulator, each under
# callgrind, with the counters zeroed after a warm-up so that start-up is not counted. Prints
# a table and leaves the callgrind files (for callgrind_annotate / kcachegrind) behind.
#
#   scripts/cpu_profile.sh [HEIGHTS]      default 150 heights (about 450 signatures) after
#                                         20 heights of warm-up
#
# Environment: SIZE (default 2-of-3; also 3-of-5, 5-of-7), PROTOCOL (default v0.34),
# OUT (default .bench/profile: callgrind files, logs and the summary), FLOOR_BIN (a built
# floor bench, to skip building it), CARGO_TARGET_DIR (where the binaries are built), BIN (a
# directory of release binaries built before, to compare builds: no build then), and
# TOOL, what the cosigners run under: callgrind (the default), strace (system calls per
# cosigner, `strace -c`, start-up included), trace (`perf trace -s` and `perf stat` attached
# after the warm-up: system calls and context switches per signature, per process and per
# thread, at a fraction of strace's cost), perf (`perf record -e cpu-clock -g`, user and
# kernel), or none
# (utime and stime per signature from /proc, the figure scripts/bench.sh reports, with no
# tool slowing the cosigners down). Kernel time (system calls, fsync, UDP) is not in
# callgrind's counts; the other tools show it. Needs valgrind (and strace or perf for those).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
heights=${1:-150}
warmup=20
size=${SIZE:-2-of-3}
t=${size%%-of-*}
n=${size##*-of-}
protocol=${PROTOCOL:-v0.34}
out=${OUT:-$root/.bench/profile}
chain=profile-chain

tool=${TOOL:-callgrind}
needs=$tool
[[ $tool == trace ]] && needs=perf
for needed in valgrind callgrind_annotate callgrind_control $([[ $needs == strace || $needs == perf ]] && echo "$needs"); do
    command -v "$needed" > /dev/null || { echo "!!  $needed is not installed (apt-get install valgrind strace linux-perf)"; exit 1; }
done

release_binaries
floor_bin=${FLOOR_BIN:-}
if [[ $tool == callgrind && -z $floor_bin ]]; then
    echo "==> building the floor bench"
    floor_bin=$(cargo bench --locked -p cosigner --bench floor --no-run --message-format=json 2> /dev/null \
        | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "floor" and m.get("executable"):
        print(m["executable"])')
    [[ -x $floor_bin ]] || { echo "!!  the floor bench did not build: cargo bench --bench floor --no-run"; exit 1; }
fi
rm -rf "$out"
mkdir -p "$out"

pids=()
cleanup() {
    stop_pids
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.'"$1"'); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The floor only matters next to instruction counts.
if [[ $tool == callgrind ]]; then
    echo "==> floor: $size, 50 signings under callgrind"
    FLOOR_ITERATIONS=50 FLOOR_SIZE=$size valgrind --tool=callgrind --toggle-collect='*floor_signature*' \
        --callgrind-out-file="$out/floor.callgrind" "$floor_bin" > "$out/floor.log" 2>&1
    echo 50 > "$out/floor.iterations"
fi

echo "==> $size cluster, $warmup + $heights heights, every cosigner under $tool"
"$bin/validator-sim" --write-validator-key "$out/priv_validator_key.json"
pubkey=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pub_key"]["value"])' "$out/priv_validator_key.json")
port=$(free_port SOCK_STREAM)
args=()
for _ in $(seq "$n"); do args+=(--cosigner "127.0.0.1:$(free_port SOCK_DGRAM)"); done
"$bin/split-key" "$out/priv_validator_key.json" --threshold "$t" --shares "$n" --out "$out/cosigners" \
    --protocol "$protocol" --chain-id "$chain" --node "tcp://127.0.0.1:$port" "${args[@]}" > /dev/null
total=$((warmup + heights))
timeout 1800 "$bin/validator-sim" --listen "127.0.0.1:$port" --protocol "$protocol" --chain-id "$chain" \
    --heights "$total" --nil-round-every 10 --expect-pubkey "$pubkey" --json "$out/report.json" \
    > "$out/sim.out" 2>&1 &
sim=$!
pids+=("$sim")
signers=()
for i in $(seq "$n"); do
    cfg=$out/cosigners/cosigner-$i/cosigner.toml
    case $tool in
        strace) wrap=(strace -f -c -o "$out/strace-$i.txt") ;;
        perf) wrap=(perf record -q -e cpu-clock -g -o "$out/perf-$i.data") ;;
        none | trace) wrap=() ;;
        *) wrap=(valgrind --tool=callgrind --callgrind-out-file="$out/cosigner-$i.callgrind") ;;
    esac
    "${wrap[@]}" "$bin/cosigner" start --config "$cfg" > "$out/cosigner-$i.log" 2>&1 &
    signers+=("$!")
    pids+=("$!")
done
signed() { cat "$out"/cosigner-*.log 2>/dev/null | grep -c ' signed ' || true; }
# The warm-up: connections, catch-up, the first inventories. Then count from zero.
deadline=$((SECONDS + 600))
while (( $(signed) < warmup * 3 )); do
    (( SECONDS < deadline )) || { echo "!!  no signatures after 600 s; see $out"; exit 1; }
    kill -0 "$sim" 2>/dev/null || { echo "!!  the simulator ended early; see $out/sim.out"; exit 1; }
    sleep 1
done
# utime + stime (clock ticks) of the cosigner processes (the wrapped ones: children).
ticks() { for p in "${signers[@]}"; do
    c=$(pgrep -P "$p" -x cosigner || echo "$p")
    awk '{print $14 + $15, $14, $15}' "/proc/$c/stat" 2>/dev/null || echo "0 0 0"
done; }
if [[ $tool == callgrind ]]; then
    for p in "${signers[@]}"; do timeout 60 callgrind_control -z "$p" > /dev/null; done
fi
tracers=()
# Counted from before the tracers attach: what they see lies inside [start, end].
start=$(signed)
if [[ $tool == trace ]]; then
    for i in $(seq "$n"); do
        p=${signers[$((i - 1))]}
        perf trace -s -p "$p" -o "$out/trace-$i.txt" > /dev/null 2>&1 &
        tracers+=("$!")
        perf stat -e context-switches,cpu-migrations -p "$p" -o "$out/stat-$i.txt" > /dev/null 2>&1 &
        tracers+=("$!")
    done
    pids+=("${tracers[@]}")
fi
ticks > "$out/ticks-start"
wait "$sim" || echo "!!  simulator exited with $?"
end=$(signed)
ticks > "$out/ticks-end"
for p in "${tracers[@]}"; do kill -INT "$p" 2>/dev/null || true; done
for p in "${tracers[@]}"; do wait "$p" 2>/dev/null || true; done
if [[ $tool == callgrind ]]; then
    for p in "${signers[@]}"; do timeout 60 callgrind_control -d "$p" > /dev/null; done
fi
echo $((end - start)) > "$out/signatures"
# The cosigner itself (a child of strace or perf, which then write their files and exit).
for p in "${signers[@]}"; do kill -INT "$(pgrep -P "$p" -x cosigner || echo "$p")" 2>/dev/null || true; done
for p in "${signers[@]}"; do wait "$p" 2>/dev/null || true; done
python3 scripts/cpu_profile_report.py "$out" "$size" "$tool" "$(getconf CLK_TCK)" | tee "$out/summary.md"
