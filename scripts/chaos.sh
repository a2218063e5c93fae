#!/usr/bin/env bash
# Chaos run: a T-of-N threshold cluster signs for the validator simulator for SECONDS while
# random cosigners are killed (SIGKILL) and restarted, partitioned from their peers, and
# slowed down; now and then the whole cluster is killed at once. Every event is logged as it
# happens. At the end it prints the events by kind and what the simulator saw: heights
# signed and missed, refusals by reason, the longest gap, and double signs (computed by the
# simulator from every signature it received, keyed by chain/height/round/step).
# Exits non-zero if there was a double sign, or if nothing was signed at all.
#
#   scripts/chaos.sh [SECONDS] [T N] [SEED]     defaults: 20 2 3, a fresh seed
#                                               (CI runs the short default)
#
# Every random choice (which event, which cosigners, which fault, every duration and pause)
# comes from one generator seeded with SEED (or $CHAOS_SEED), printed at the start and in the
# summary: `CHAOS_SEED=S scripts/chaos.sh ...` replays a run's schedule of events. What it
# cannot replay is the processes' own timing (when a signing or a reconnection happens
# relative to an event, how long a start takes, where the run's end cuts the last event), so
# the same seed reproduces the faults, not every interleaving.
#
# Partitions and slow links come from scripts/udp_relay.py: every cosigner listens on its
# own port, its peers dial a relay front for it, and the relay drops or delays that
# cosigner's datagrams on command. Node connections are TCP and bypass the relay, so a
# partitioned cosigner still reaches the node. No root or netem needed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
threshold=${2:-2}
shares=${3:-3}
seed=${4:-${CHAOS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}}
if ! [[ $seed =~ ^[0-9]+$ ]]; then
    echo "the seed must be a non-negative integer, not \`$seed\`" >&2
    exit 2
fi
chain=chaos-chain

# The run's random numbers: a 31-bit linear congruential generator (glibc's constants) in
# shell arithmetic, seeded with the seed. Not bash's $RANDOM: a command substitution reseeds
# that from the clock and the pid, and its algorithm differs between bash versions.
rng_state=$(( seed % 2147483648 ))
# Sets r to a random integer in [0, $1) (from the generator's high bits; the low ones of an
# LCG are weak).
rand_below() {
    rng_state=$(( (rng_state * 1103515245 + 12345) % 2147483648 ))
    r=$(( (rng_state >> 8) % $1 ))
}
# Sets r to a random duration in milliseconds, between $1 and $2.
rand_ms() { rand_below $(( $2 - $1 )); r=$(( $1 + r )); }
# Sets victims to $1 distinct cosigners out of 1..$shares (a partial Fisher-Yates shuffle).
pick_victims() {
    local all=() i j t
    for i in $(seq "$shares"); do all+=("$i"); done
    for (( i = 0; i < $1; i++ )); do
        rand_below $(( shares - i )); j=$(( i + r ))
        t=${all[i]}; all[i]=${all[j]}; all[j]=$t
    done
    victims=("${all[@]:0:$1}")
}

cargo build -q -p cosigner -p split-key -p validator-sim --bins
bin=${CARGO_TARGET_DIR:-target}/debug

work=$(mktemp -d "${TMPDIR:-/tmp}/cosigner-chaos.XXXXXX")
declare -A pid=()
sim_pid=
relay_pid=
cleanup() {
    for p in "${pid[@]}" $sim_pid $relay_pid; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.'"$1"'); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$bin/validator-sim" --write-validator-key "$work/priv_validator_key.json" >/dev/null
node_port=$(free_port SOCK_STREAM)
# Cosigner i listens on real[i]; its peers know it as front[i], the relay's port for it.
cosigner_args=() relay_args=()
declare -a real front
for i in $(seq "$shares"); do
    real[i]=$(free_port SOCK_DGRAM)
    front[i]=$(free_port SOCK_DGRAM)
    cosigner_args+=(--cosigner "127.0.0.1:${front[i]}")
    relay_args+=("${front[i]}:${real[i]}")
done
"$bin/split-key" "$work/priv_validator_key.json" --threshold "$threshold" --shares "$shares" \
    --out "$work/cosigners" --chain-id "$chain" --node "tcp://127.0.0.1:$node_port" \
    "${cosigner_args[@]}" >/dev/null
for i in $(seq "$shares"); do
    cfg=$work/cosigners/cosigner-$i/cosigner.toml
    sed -i "s|^listen = \"127.0.0.1:${front[i]}\"$|listen = \"127.0.0.1:${real[i]}\"|" "$cfg"
    grep -q "^listen = \"127.0.0.1:${real[i]}\"$" "$cfg" || { echo "cannot move cosigner $i behind the relay" >&2; exit 1; }
done
pubkey=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pub_key"]["value"])' "$work/priv_validator_key.json")

# Waits (at most 10 s) until the relay's log has a line matching PATTERN: the relay reports
# what it did, so this waits on its word rather than on a guess of how long it takes.
wait_for_relay() { # pattern
    local i
    for i in $(seq 500); do
        grep -q -- "$1" "$work/relay.log" && return 0
        kill -0 "$relay_pid" 2>/dev/null || { echo "the relay died:" >&2; cat "$work/relay.log" >&2; exit 1; }
        sleep 0.02
    done
    echo "the relay did not say \`$1\` in 10 s:" >&2
    cat "$work/relay.log" >&2
    exit 1
}

control=$work/relay-control
python3 scripts/udp_relay.py --control "$control" "${relay_args[@]}" > "$work/relay.log" 2>&1 &
relay_pid=$!
wait_for_relay '^ready$'

# The faults the relay applies now: dropped[i]=1 partitions cosigner i, delayed[i]=MS slows it.
declare -A dropped=() delayed=()
seq_no=0
apply_faults() {
    local i
    seq_no=$((seq_no + 1))
    {
        echo "seq $seq_no"
        for i in "${!dropped[@]}"; do echo "drop $i"; done
        for i in "${!delayed[@]}"; do echo "delay $i ${delayed[$i]}"; done
    } > "$control.tmp"
    mv "$control.tmp" "$control"
    wait_for_relay "^applied seq $seq_no:"
}

start() {
    RUST_LOG=info "$bin/cosigner" start --config "$work/cosigners/cosigner-$1/cosigner.toml" \
        >> "$work/cosigner-$1.log" 2>&1 &
    pid[$1]=$!
}
stop() { kill -9 "${pid[$1]}" 2>/dev/null || true; wait "${pid[$1]}" 2>/dev/null || true; }

echo "==> chaos: $threshold-of-$shares for ${seconds}s, seed $seed (files in $work)"
echo "    replay this run's events: CHAOS_SEED=$seed scripts/chaos.sh $seconds $threshold $shares"
"$bin/validator-sim" --listen "127.0.0.1:$node_port" --chain-id "$chain" --duration "$seconds" \
    --expect-pubkey "$pubkey" --block-time-ms 50 --nil-round-every 7 \
    --json "$work/report.json" --progress > "$work/sim.out" 2>&1 &
sim_pid=$!
t0=$(date +%s.%N)
for i in $(seq "$shares"); do start "$i"; done

join() { local sep=$1 out=$2; shift 2; for x in "$@"; do out+="$sep$x"; done; echo "$out"; }
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log_event() { printf '[%5ss] %s\n' "$(elapsed)" "$*" | tee -a "$work/events.log"; }
# Milliseconds left of the run.
left_ms() { awk -v a="$t0" -v b="$(date +%s.%N)" -v s="$seconds" 'BEGIN { printf "%d", (a + s - b) * 1000 }'; }
# Waits out a fault's duration (milliseconds), cut short when the run ends, so the script
# ends with the simulator rather than up to one fault later.
hold() {
    local left
    left=$(left_ms)
    (( left > 0 )) || return 0
    sleep "$(awk -v ms="$(( $1 < left ? $1 : left ))" 'BEGIN { printf "%.3f", ms / 1000 }')"
}
# Whether to start another event: the simulator runs and its time is not up.
running() { kill -0 "$sim_pid" 2>/dev/null && (( $(left_ms) > 0 )); }

kills=0 all_kills=0 partitions=0 slowdowns=0
while running; do
    rand_ms 800 2500; hold "$r"
    running || break
    rand_below 8
    if (( r == 0 )); then
        rand_ms 100 600; ms=$r
        log_event "kill all $shares cosigners for ${ms} ms"
        for i in $(seq "$shares"); do stop "$i"; done
        all_kills=$((all_kills + 1))
        hold "$ms"
        for i in $(seq "$shares"); do start "$i"; done
        continue
    fi
    # 1 to N - T cosigners hit at once, each by a kill, a partition or a slow link, so a
    # quorum always remains (the whole-cluster kills above test losing it). A partition outlasting the transport's 2 s idle timeout
    # makes everyone notice the loss (a partitioned coordinator gives way); a shorter one is
    # ridden out by retransmission.
    rand_below $(( shares - threshold )); pick_victims $(( 1 + r ))
    killed=() what=() ms=0
    for i in "${victims[@]}"; do
        rand_below 3
        case $r in
            0)
                stop "$i"; killed+=("$i"); kills=$((kills + 1))
                what+=("kill $i")
                rand_ms 200 1500; d=$r
                ;;
            1)
                dropped[$i]=1; partitions=$((partitions + 1))
                what+=("partition $i")
                rand_ms 1000 7000; d=$r
                ;;
            2)
                rand_ms 50 200; delayed[$i]=$r; slowdowns=$((slowdowns + 1))
                what+=("slow $i (+${delayed[$i]} ms each way)")
                rand_ms 1000 4000; d=$r
                ;;
        esac
        if (( d > ms )); then ms=$d; fi
    done
    if (( ${#dropped[@]} + ${#delayed[@]} > 0 )); then apply_faults; fi
    log_event "$(join ", " "${what[@]}") for ${ms} ms"
    hold "$ms"
    for i in "${killed[@]}"; do start "$i"; done
    if (( ${#dropped[@]} + ${#delayed[@]} > 0 )); then
        dropped=() delayed=()
        apply_faults
    fi
done
# The simulator stops at its --duration; wait for it, bounded, in case it hangs.
for _ in $(seq 600); do kill -0 "$sim_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$sim_pid" 2>/dev/null; then
    echo "the simulator did not finish within 60 s of its time (seed $seed):" >&2
    tail -20 "$work/sim.out" >&2
    exit 1
fi
wait "$sim_pid" || true
sim_pid=
kill -0 "$relay_pid" 2>/dev/null || { echo "the relay died during the run:" >&2; cat "$work/relay.log" >&2; exit 1; }

python3 - "$work/report.json" "$work/relay.log" "$kills" "$all_kills" "$partitions" "$slowdowns" "$seed" <<'PY'
import json, re, sys
# Fields by their names in validator-sim's Report (a missing one is a KeyError, not a 0).
report = json.load(open(sys.argv[1]))
kills, all_kills, partitions, slowdowns, seed = map(int, sys.argv[3:8])
print(f"seed: {seed} (CHAOS_SEED={seed} replays the events)")
print(f"events: {kills} cosigner kills, {all_kills} whole-cluster kills, "
      f"{partitions} partitions, {slowdowns} slow links")
# The relay's own count of what it did, so a fault that never bit would show.
relay = open(sys.argv[2]).read()
dropped = sum(int(n) for n in re.findall(r"(\d+) dropped", relay))
delayed = sum(int(n) for n in re.findall(r"(\d+) delayed", relay))
print(f"relay: {dropped} datagrams dropped, {delayed} delayed")
committed, missed = report["heights_committed"], report["heights_missed"]
print(f"heights signed: {committed - missed} of {committed}, missed: {missed}")
print(f"requests signed: {report['passed']}, without a valid signature: {report['failed']} {report['failures']}")
print("refusals by reason:" if report["refusals"] else "refusals: none")
for reason, n in sorted(report["refusals"].items(), key=lambda kv: -kv[1]):
    print(f"  {n:6}  {reason[:160]}")
print(f"longest gap: {report['longest_gap_ms']:.0f} ms ({report['longest_gap_request']})")
print(f"double signs: {report['double_signs']}")
if report["double_signs"] != 0:
    print(f"DOUBLE SIGN: replay the events with CHAOS_SEED={seed}", file=sys.stderr)
    sys.exit(1)
if committed - missed == 0:
    print("nothing was signed: the run tested nothing", file=sys.stderr)
    sys.exit(1)
PY
