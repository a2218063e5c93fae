#!/usr/bin/env bash
# The signing pause of a share refresh, as an operator runs one today: with validator-sim
# signing against a t-of-n cluster on loopback, stop every cosigner (SIGTERM, as
# `systemctl stop` sends), run `cosigner refresh` on every host at once, start them again.
# Writes the "Share refresh: the signing pause" section of docs/benchmarks.md.
#
#   scripts/bench_refresh.sh [ROUNDS]     default 5 refreshes per setup
#
# Environment: SETUPS (default "2-of-3 3-of-5"), PROTOCOL (default v0.38), BLOCK_TIME_MS
# (default 10: the simulator idles, pinging, this long after each height), PRE_HEIGHTS
# (default 100: signed before each stop), POST_HEIGHTS (default 300: signed after the
# restart), NO_BUILD=1 (use target/release as it is).
#
# Per round it records: each host's `cosigner refresh` wall time (spawn to exit), the time
# from the last cosigner's exit to the first height committed after the restart (the
# simulator's progress lines, timestamped as they arrive), and the simulator's own report of
# that run (longest wait of one request, first attempt to answer; heights missed; failed).
# Everything runs on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
rounds=${1:-5}
setups=${SETUPS:-2-of-3 3-of-5}
protocol=${PROTOCOL:-v0.38}
block_time=${BLOCK_TIME_MS:-10}
pre=${PRE_HEIGHTS:-100}
post=${POST_HEIGHTS:-300}
chain=bench-chain
# Upper bound for one simulator run and for one refresh, whatever happens.
run_limit=${RUN_LIMIT:-600}

if [[ -z ${NO_BUILD:-} ]]; then
    echo "==> building (release)"
    cargo build --release --locked --workspace --bins -q
fi
bin=$root/target/release
load_begin=$(cut -d' ' -f1-3 /proc/loadavg)

work=$(mktemp -d "${TMPDIR:-/tmp}/cosigner-bench-refresh.XXXXXX")
results=$work/results
mkdir -p "$results"
pids=()
cleanup() {
    stop_pids
    wait 2>/dev/null || true
    echo "==> cleaned up; raw results and logs in $work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.'"$1"'); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { echo "$EPOCHREALTIME"; }

"$bin/validator-sim" --write-validator-key "$work/priv_validator_key.json" > /dev/null
pubkey=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pub_key"]["value"])' "$work/priv_validator_key.json")

# Lines committed so far in a timestamped progress file.
committed() { grep -c ' committed ' "$1" 2>/dev/null || true; }

# Waits (bounded) until the progress file has at least $2 committed heights.
wait_committed() { # file count what
    local until=$((SECONDS + run_limit))
    while (( $(committed "$1") < $2 )); do
        if (( SECONDS > until )); then echo "!!  timed out waiting for $3" >&2; exit 1; fi
        if ! kill -0 "$sim_pid" 2>/dev/null; then echo "!!  the simulator ended early ($3)" >&2; exit 1; fi
        sleep 0.05
    done
}

start_cosigners() { # dir n
    local dir=$1 n=$2
    cosigner_pids=()
    for i in $(seq "$n"); do
        "$bin/cosigner" start --config "$dir/cosigners/cosigner-$i/cosigner.toml" \
            >> "$dir/signer-$i.log" 2>&1 &
        cosigner_pids+=("$!")
        pids+=("$!")
    done
}

for s in $setups; do
    t=${s%%-of-*}
    n=${s##*-of-}
    dir=$results/$s
    mkdir -p "$dir"
    port=$(free_port SOCK_STREAM)
    args=()
    for _ in $(seq "$n"); do args+=(--cosigner "127.0.0.1:$(free_port SOCK_DGRAM)"); done
    "$bin/split-key" "$work/priv_validator_key.json" --threshold "$t" --shares "$n" \
        --out "$dir/cosigners" --protocol "$protocol" --chain-id "$chain" \
        --node "tcp://127.0.0.1:$port" "${args[@]}" > /dev/null
    start_cosigners "$dir" "$n"
    next_height=1
    for r in $(seq "$rounds"); do
        rd=$dir/round-$r
        mkdir -p "$rd"
        echo "==> $s, refresh $r/$rounds"
        # One simulator run per refresh: PRE_HEIGHTS before the stop, the rest after the
        # restart; it ends by itself and writes its report.
        timeout "$run_limit" "$bin/validator-sim" --listen "127.0.0.1:$port" \
            --protocol "$protocol" --chain-id "$chain" --start-height "$next_height" \
            --heights $((pre + post)) --block-time-ms "$block_time" --nil-round-every 10 \
            --expect-pubkey "$pubkey" --json "$rd/report.json" --progress 2> "$rd/sim.err" \
            | python3 -u -c '
import sys, time
for line in sys.stdin:
    print(f"{time.time():.6f} {line}", end="", flush=True)' > "$rd/sim.out" &
        sim_pid=$!
        pids+=("$sim_pid")
        next_height=$((next_height + pre + post))
        wait_committed "$rd/sim.out" "$pre" "$pre heights before the stop"

        # 1. Stop every cosigner at once, as `systemctl stop` on every host would.
        t_stop=$(now)
        for p in "${cosigner_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
        for p in "${cosigner_pids[@]}"; do wait "$p" 2>/dev/null || true; done
        t_stopped=$(now)
        # 2. `cosigner refresh` on every host at once; each one's wall time.
        refresh_pids=()
        for i in $(seq "$n"); do
            (
                a=$(now)
                rc=0
                timeout "$run_limit" "$bin/cosigner" refresh \
                    --config "$dir/cosigners/cosigner-$i/cosigner.toml" \
                    > "$rd/refresh-$i.log" 2>&1 || rc=$?
                echo "$a $(now) $rc" > "$rd/refresh-$i.time"
            ) &
            refresh_pids+=("$!")
        done
        for p in "${refresh_pids[@]}"; do wait "$p"; done
        for i in $(seq "$n"); do
            read -r _ _ rc < "$rd/refresh-$i.time"
            if [[ $rc != 0 ]]; then
                echo "!!  cosigner refresh $i failed (exit $rc):" >&2
                cat "$rd/refresh-$i.log" >&2
                exit 1
            fi
        done
        # 3. Start them again.
        t_restart=$(now)
        start_cosigners "$dir" "$n"
        wait "$sim_pid" || echo "    (simulator exited with $?)"
        echo "$t_stop $t_stopped $t_restart" > "$rd/times"
    done
    for p in "${cosigner_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${cosigner_pids[@]}"; do wait "$p" 2>/dev/null || true; done
done

# --- report ---------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src examples scripts || echo "+changes")
python3 - "$results" "$rounds" "$protocol" "$block_time" "$pre" "$post" "$commit" \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$load_begin" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(nproc)" "$setups" > "$work/refresh.md" <<'PY'
import datetime, json, pathlib, statistics, sys
(res, rounds, proto, block, pre, post, commit, date, load0, load1, nproc,
 setups) = sys.argv[1:]
res = pathlib.Path(res)
def fmt(xs):
    return f"{statistics.median(xs):.2f} / {max(xs):.2f}" if xs else "-"
print("## Share refresh: the signing pause\n")
print(f"`scripts/bench_refresh.sh {rounds}` ({date}, commit {commit}, {nproc} cores, load "
      f"average {load0} at the start and {load1} at the end; release build, loopback, privval "
      f"{proto}). Per refresh: validator-sim signs {pre} heights (`--block-time-ms {block}`), "
      "every cosigner gets SIGTERM at once (what `systemctl stop` sends), `cosigner refresh` "
      "runs on every host at once, every cosigner starts again, and the simulator signs "
      f"{post} more heights under the unchanged key. {rounds} refreshes per setup on one "
      "cluster (key epoch 1, 2, ...). Seconds, median / max over the refreshes.\n")
print("- *stop*: SIGTERM to the last cosigner's exit.")
print("- *switched*: the last host's start of `cosigner refresh` to the last host's "
      "`switched to the new share` (its log): the ceremony itself.")
print("- *refresh, per host*: one host's `cosigner refresh`, start to exit (every host, every "
      "refresh); *refresh, all*: the first start to the last exit. After switching, a host "
      "answers the others until each has switched or heard that it did (at most 30 s).")
print("- *last stop to first signature*: the last cosigner's exit to the first height the "
      "simulator committed after the restart (its progress lines, timestamped on arrival).")
print("- *node's longest wait*: the simulator's `longest_gap_ms`, the longest one request "
      "waited from its first attempt to its answer (it starts before the stop: the request "
      "in flight when the signer went away).")
print("- *missed*, *failed*: the simulator's `heights_missed` and failed requests, summed "
      "over the refreshes.\n")
print("| setup | stop | switched | refresh, per host | refresh, all | last stop to first "
      "signature | node's longest wait | missed | failed |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
def switched_at(log):
    for line in log.read_text(errors="replace").splitlines():
        if "switched to the new share" in line:
            stamp = line.split()[0].rstrip("Z")
            return datetime.datetime.fromisoformat(stamp).replace(
                tzinfo=datetime.timezone.utc).timestamp()
    return None
for s in setups.split():
    stop, switched, per_host, whole, gap, longest = [], [], [], [], [], []
    missed = failed = 0
    for rd in sorted((res / s).glob("round-*")):
        t_stop, t_stopped, t_restart = map(float, (rd / "times").read_text().split())
        stop.append(t_stopped - t_stop)
        spans = []
        for f in sorted(rd.glob("refresh-*.time")):
            a, b, _ = f.read_text().split()
            spans.append((float(a), float(b)))
            per_host.append(float(b) - float(a))
        whole.append(max(b for _, b in spans) - min(a for a, _ in spans))
        switches = [switched_at(f) for f in sorted(rd.glob("refresh-*.log"))]
        if all(switches):
            switched.append(max(switches) - max(a for a, _ in spans))
        after = [float(l.split()[0]) for l in (rd / "sim.out").read_text().splitlines()
                 if " committed " in l and float(l.split()[0]) > t_restart]
        if after:
            gap.append(after[0] - t_stopped)
        report = json.loads((rd / "report.json").read_text())
        longest.append(report["longest_gap_ms"] / 1000)
        missed += report["heights_missed"]
        failed += report["failed"]
    print(f"| {s} | {fmt(stop)} | {fmt(switched)} | {fmt(per_host)} | {fmt(whole)} | {fmt(gap)} | "
          f"{fmt(longest)} | {missed} | {failed} |")
PY

replace_report_section "Share refresh: the signing pause" "$work/refresh.md"
cat "$work/refresh.md"
