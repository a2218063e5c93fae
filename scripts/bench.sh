#!/usr/bin/env bash
# Signing latency, throughput and memory of the cosigner against tmkms 0.14 (softsign) and our
# own single-key mode, driven by the validator simulator. Writes docs/benchmarks.md.
#
#   scripts/bench.sh [HEIGHTS]            default 1000 heights per run
#   scripts/bench.sh --metrics [HEIGHTS]  only 2-of-3 with metrics off and on, alternating
#                                         ROUNDS times; rewrites that section of the report
#
# The signing pause of a share refresh has a script of its own: scripts/bench_refresh.sh.
#
# Environment: SCRAPE_EVERY (default 0.2 s, --metrics only), ROUNDS (default 2: every setup runs ROUNDS times, setups alternating),
# NETNS_HEIGHTS (default 100; the cross-region runs, needs root), TP_HEIGHTS (default 500 per
# chain), TP_CHAINS (default 4), SOAK_HEIGHTS (default 0: off; a long 2-of-3 run sampling
# memory), BLOCK_TIME_MS (default 0: the pause between heights), SKIP_TMKMS=1, SKIP_NETNS=1,
# SKIP_TP=1, SKIP_MICRO=1 (no `cargo bench`), SETUPS
# (default "single 2-of-3 3-of-5 5-of-7": the loopback setups besides tmkms), BIN (a directory
# of release binaries built before, e.g. a copy of another commit's, to compare builds: no
# build then).
# Everything runs on loopback (or inside network namespaces this script creates and deletes).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/bench_lib.sh
source scripts/bench_lib.sh
mode=all
if [[ ${1:-} == --metrics ]]; then
    mode=metrics
    # tmkms is not part of this comparison.
    SKIP_TMKMS=1
    shift
fi
heights=${1:-1000}
rounds=${ROUNDS:-2}
netns_heights=${NETNS_HEIGHTS:-100}
tp_heights=${TP_HEIGHTS:-500}
tp_chains=${TP_CHAINS:-4}
# tmkms 0.14 speaks only the v0.34 privval dialect (its `protocol_version` knows v0.33 and
# v0.34), so the comparison runs everything at v0.34; PROTOCOL=v0.38 measures ours alone.
protocol=${PROTOCOL:-v0.34}
chain=bench-chain
# Pause between heights (the three requests of a height stay back to back), so that a
# height's first request finds the signers idle, as on a chain with real block times.
block_time=${BLOCK_TIME_MS:-0}
# Upper bound for one simulator run, whatever happens.
run_limit=${RUN_LIMIT:-600}

release_binaries

mkdir -p .bench
tmkms=$root/.bench/tmkms/bin/tmkms
tmkms_note=""
if [[ -z "${SKIP_TMKMS:-}" && ! -x $tmkms ]]; then
    echo "==> installing tmkms 0.14.0 (softsign) into .bench/tmkms (once; ~10+ min on 2 cores)"
    # `--locked` pins time 0.3.34, which no longer compiles with current rustc (E0282 in
    # time's format_description); try it first, then let cargo pick semver-compatible fixes.
    if ! CARGO_TARGET_DIR=$root/.bench/tmkms-target cargo install tmkms --version 0.14.0 \
        --features softsign --locked --root .bench/tmkms > .bench/tmkms-install.log 2>&1; then
        CARGO_TARGET_DIR=$root/.bench/tmkms-target cargo install tmkms --version 0.14.0 \
            --features softsign --root .bench/tmkms >> .bench/tmkms-install.log 2>&1 || true
        tmkms_note="tmkms 0.14.0 was built without --locked (its lock file pins time 0.3.34, which current rustc rejects)."
    fi
fi
if [[ $protocol != v0.34 ]]; then
    tmkms_note="tmkms 0.14 speaks only v0.34; this run used $protocol, so tmkms was left out."
    have_tmkms=""
elif [[ -n "${SKIP_TMKMS:-}" || ! -x $tmkms ]]; then
    echo "!!  tmkms is not available (see .bench/tmkms-install.log); going on without it"
    tmkms_note="tmkms could not be installed or was skipped; ratios to tmkms are missing."
    have_tmkms=""
else
    have_tmkms=1
    [[ -z $tmkms_note && -f .bench/tmkms-note ]] && tmkms_note=$(cat .bench/tmkms-note)
    [[ -n $tmkms_note ]] && echo "$tmkms_note" > .bench/tmkms-note
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/cosigner-bench.XXXXXX")
results=$work/results
mkdir -p "$results"
pids=()
namespaces=()
cleanup() {
    stop_pids
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "==> cleaned up; raw reports and logs in $work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.'"$1"'); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$bin/validator-sim" --write-validator-key "$work/priv_validator_key.json"
pubkey=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pub_key"]["value"])' "$work/priv_validator_key.json")

# Resident memory (KiB) and CPU time (clock ticks) of a live process, as "rss cpu".
proc_stats() {
    local rss cpu
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
    cpu=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0)
    echo "${rss:-0} ${cpu:-0}"
}

# Starts the simulator (optionally inside a namespace) and sets sim_pid.
start_sim() { # dir port heights netns chain...
    local dir=$1 port=$2 n=$3 ns=$4
    shift 4
    local chain_args=()
    for c in "$@"; do chain_args+=(--chain-id "$c"); done
    local prefix=()
    [[ -n $ns ]] && prefix=(ip netns exec "$ns")
    "${prefix[@]}" timeout "$run_limit" "$bin/validator-sim" --listen "127.0.0.1:$port" \
        --protocol "$protocol" "${chain_args[@]}" --heights "$n" --nil-round-every 10 \
        --block-time-ms "$block_time" \
        --expect-pubkey "$pubkey" --json "$dir/report.json" > "$dir/sim.out" 2>&1 &
    sim_pid=$!
    pids+=("$sim_pid")
}

# Waits for the simulators, then records every signer's memory and CPU and stops them.
finish_run() { # dir sim_pids... -- signer_pids...
    local dir=$1
    shift
    local sims=() signers=() seen_sep=""
    for p in "$@"; do
        if [[ $p == -- ]]; then seen_sep=1; continue; fi
        if [[ -n $seen_sep ]]; then signers+=("$p"); else sims+=("$p"); fi
    done
    for p in "${sims[@]}"; do wait "$p" || echo "    (simulator $p exited with $?)"; done
    : > "$dir/procs.txt"
    for p in "${signers[@]}"; do
        echo "$p $(proc_stats "$p")" >> "$dir/procs.txt"
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

run_tmkms() { # dir port
    local dir=$1 port=$2 home=$1/tmkms
    "$tmkms" init "$home" > "$dir/tmkms-init.log" 2>&1
    "$tmkms" softsign import "$work/priv_validator_key.json" "$home/secrets/consensus.key" \
        >> "$dir/tmkms-init.log" 2>&1
    cat > "$home/tmkms.toml" <<EOF
[[chain]]
id = "$chain"
key_format = { type = "bech32", account_key_prefix = "cosmospub", consensus_key_prefix = "cosmosvalconspub" }
state_file = "$home/state/$chain-consensus.json"

[[providers.softsign]]
chain_ids = ["$chain"]
key_type = "consensus"
path = "$home/secrets/consensus.key"

[[validator]]
chain_id = "$chain"
addr = "tcp://127.0.0.1:$port"
secret_key = "$home/secrets/kms-identity.key"
protocol_version = "v0.34"
reconnect = true
EOF
    "$tmkms" start -c "$home/tmkms.toml" > "$dir/signer-1.log" 2>&1 &
    signer_pids=("$!")
    pids+=("$!")
}

run_single() { # dir port
    local dir=$1 port=$2
    "$bin/cosigner" init-single "$work/priv_validator_key.json" --out "$dir/single" \
        --chain-id "$chain" --node "tcp://127.0.0.1:$port" --protocol "$protocol" > /dev/null
    "$bin/cosigner" start --config "$dir/single/cosigner.toml" > "$dir/signer-1.log" 2>&1 &
    signer_pids=("$!")
    pids+=("$!")
}

# Splits the key t-of-n (every cosigner on its own UDP port) and starts all n cosigners.
run_threshold() { # dir t n node_args...
    local dir=$1 t=$2 n=$3
    shift 3
    local args=()
    for _ in $(seq "$n"); do args+=(--cosigner "127.0.0.1:$(free_port SOCK_DGRAM)"); done
    "$bin/split-key" "$work/priv_validator_key.json" --threshold "$t" --shares "$n" \
        --out "$dir/cosigners" --protocol "$protocol" "$@" "${args[@]}" > /dev/null
    signer_pids=()
    metrics_endpoints=()
    for i in $(seq "$n"); do
        if [[ -n ${WITH_METRICS:-} ]]; then
            metrics_endpoints+=("127.0.0.1:$(free_port SOCK_STREAM)")
            printf '\n[metrics]\nlisten = "%s"\n' "${metrics_endpoints[-1]}" \
                >> "$dir/cosigners/cosigner-$i/cosigner.toml"
        fi
        "$bin/cosigner" start --config "$dir/cosigners/cosigner-$i/cosigner.toml" \
            > "$dir/signer-$i.log" 2>&1 &
        signer_pids+=("$!")
        pids+=("$!")
    done
}

# --- metrics on and off (--metrics): 2-of-3, the same run -------------------------------------
# "on": every cosigner serves [metrics] and a scraper fetches /metrics from each one every
# SCRAPE_EVERY seconds (default 0.2; Prometheus's default interval is 15 s, so this is far
# harsher than production); "off": no [metrics] section. The counters
# themselves are kept either way (`cosigner status` reads them): "off" has no endpoint and
# no scrapes.
metrics_section() { # results_dir -> markdown on stdout
    python3 - "$1" "$heights" "$rounds" "$scrape_every" "$(uptime)" <<'PY'
import json, pathlib, statistics, sys
root, heights, rounds, every, load = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
print("## Metrics on and off (2-of-3, same run)\n")
print(f"`scripts/bench.sh --metrics {heights}`: {rounds} rounds of each, alternating; \"on\" = "
      f"`[metrics]` on every cosigner and each scraped every {every} s; \"off\" = no endpoint. "
      "Latency as the simulator measured it (ms), mean over rounds; release build, loopback, "
      f"privval v0.34. Load at the end: `{load.strip()}` (on {__import__('os').cpu_count()} cores: "
      "a load above that means other processes, such as other builds, shared the machine; "
      "compare on with off within one run only).\n")
print("| metrics | request | signed | p50 | p99 | p50 per round | p99 per round | scrapes |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for m in ("off", "on"):
    reports = sorted((root / m).glob("round-*/report.json"))
    data = [json.loads(r.read_text()) for r in reports]
    scrapes = sum(int((r.parent / "scrapes").read_text() or 0) for r in reports if (r.parent / "scrapes").exists())
    for t in ("proposal", "prevote", "precommit"):
        lat = [d["by_type"][t]["latency"] for d in data if t in d["by_type"]]
        if not lat:
            continue
        n = sum(d["by_type"][t]["passed"] for d in data if t in d["by_type"])
        p50 = statistics.mean(l["p50_ms"] for l in lat)
        p99 = statistics.mean(l["p99_ms"] for l in lat)
        r50 = ", ".join(f"{l['p50_ms']:.3f}" for l in lat)
        r99 = ", ".join(f"{l['p99_ms']:.3f}" for l in lat)
        print(f"| {m} | {t} | {n} | {p50:.3f} | {p99:.3f} | {r50} | {r99} | {scrapes if m == 'on' else '-'} |")
    failed = sum(d["failed"] for d in data)
    print(f"| {m} | failed | {failed} | | | | | |")
PY
}

scrape_every=${SCRAPE_EVERY:-0.2}
scrape_loop() { # dir endpoints... (scrapes each endpoint every $scrape_every s; counts in dir/scrapes)
    local dir=$1
    shift
    timeout "$run_limit" python3 - "$dir/scrapes" "$scrape_every" "$@" <<'PY' &
import sys, time, urllib.request
out, every, endpoints, n = sys.argv[1], float(sys.argv[2]), sys.argv[3:], 0
while True:
    for e in endpoints:
        try:
            urllib.request.urlopen(f"http://{e}/metrics", timeout=2).read()
            n += 1
        except OSError:
            pass
    open(out, "w").write(str(n))
    time.sleep(every)
PY
    scraper_pid=$!
    pids+=("$scraper_pid")
}

if [[ $mode == metrics ]]; then
    for r in $(seq "$rounds"); do
        for m in off on; do
            dir=$results/metrics/$m/round-$r
            mkdir -p "$dir"
            port=$(free_port SOCK_STREAM)
            echo "==> round $r/$rounds: 2-of-3, metrics $m, $heights heights"
            start_sim "$dir" "$port" "$heights" "" "$chain"
            WITH_METRICS=$([[ $m == on ]] && echo 1 || true) run_threshold "$dir" 2 3 \
                --chain-id "$chain" --node "tcp://127.0.0.1:$port"
            [[ $m == on ]] && scrape_loop "$dir" "${metrics_endpoints[@]}"
            finish_run "$dir" "$sim_pid" -- "${signer_pids[@]}"
            if [[ $m == on ]]; then
                kill "$scraper_pid" 2>/dev/null || true
                wait "$scraper_pid" 2>/dev/null || true
            fi
        done
    done
    metrics_section "$results/metrics" > "$work/metrics.md"
    replace_report_section "Metrics on and off" "$work/metrics.md"
    cat "$work/metrics.md"
    exit 0
fi

# --- 1. loopback: every setup, ROUNDS times, in alternation ---------------------------------
setups=()
[[ -n $have_tmkms ]] && setups+=(tmkms)
read -r -a more <<< "${SETUPS:-single 2-of-3 3-of-5 5-of-7}"
setups+=("${more[@]}")
for r in $(seq "$rounds"); do
    for s in "${setups[@]}"; do
        dir=$results/loopback/$s/round-$r
        mkdir -p "$dir"
        port=$(free_port SOCK_STREAM)
        echo "==> round $r/$rounds: $s, $heights heights"
        start_sim "$dir" "$port" "$heights" "" "$chain"
        case $s in
            tmkms) run_tmkms "$dir" "$port" ;;
            single) run_single "$dir" "$port" ;;
            *-of-*)
                run_threshold "$dir" "${s%%-of-*}" "${s##*-of-}" \
                    --chain-id "$chain" --node "tcp://127.0.0.1:$port"
                ;;
        esac
        finish_run "$dir" "$sim_pid" -- "${signer_pids[@]}"
    done
done

# --- 2. across regions: 2-of-3 with delays between cosigners -------------------------------
# Preferred: cosigners in network namespaces on a bridge with `tc netem` on each cosigner's
# egress (one-way i -> j = d_i). Where the kernel has no netem (some VM kernels), a UDP relay
# on loopback (scripts/udp_relay.py) stands in front of each cosigner and delays every
# datagram through j's front by d_j each way (round trip to j = 2 d_j). Either way the node is
# reachable by cosigner 1 only, so it coordinates every request, as a node next to one
# cosigner would have it.
netns_note=""
delay_mode=""
cases=("5 5 5" "25 25 25" "50 50 50" "5 5 200")
if [[ -n "${SKIP_NETNS:-}" ]]; then
    netns_note="skipped (SKIP_NETNS)"
elif [[ $(id -u) == 0 ]] && ip netns add cbench-probe 2>/dev/null; then
    namespaces+=(cbench-probe)
    ip -n cbench-probe link add d0 type veth peer name d1
    if ip netns exec cbench-probe tc qdisc add dev d0 root netem delay 1ms 2>/dev/null; then
        delay_mode=netem
    else
        delay_mode=relay
        netns_note="the kernel has no netem qdisc (tc: unknown qdisc kind), so delays came from a UDP relay on loopback instead of network namespaces"
    fi
    ip netns del cbench-probe
    namespaces=()
else
    delay_mode=relay
    netns_note="not root or no network namespaces, so delays came from a UDP relay on loopback"
fi
[[ -n $netns_note ]] && echo "!!  cross-region: $netns_note"

if [[ $delay_mode == netem ]]; then
    echo "==> cross-region: namespaces cbench-hub, cbench-1..3 on 10.77.0.0/24 with netem"
    hub=cbench-hub
    ip netns add "$hub"
    namespaces+=("$hub")
    ip -n "$hub" link add br0 type bridge
    ip -n "$hub" link set br0 up
    ip -n "$hub" link set lo up
    for i in 1 2 3; do
        ns=cbench-$i
        ip netns add "$ns"
        namespaces+=("$ns")
        ip -n "$hub" link add "h$i" type veth peer name "v$i" netns "$ns"
        ip -n "$hub" link set "h$i" master br0 up
        ip -n "$ns" addr add "10.77.0.$i/24" dev "v$i"
        ip -n "$ns" link set "v$i" up
        ip -n "$ns" link set lo up
        ip netns exec "$ns" tc qdisc add dev "v$i" root netem delay 0ms
    done
fi
if [[ -n $delay_mode ]]; then
    for case in "${cases[@]}"; do
        read -r d1 d2 d3 <<< "$case"
        dir=$results/netns/delay-$d1-$d2-$d3
        mkdir -p "$dir"
        echo "$d1 $d2 $d3 $delay_mode" > "$dir/delays"
        echo "==> cross-region 2-of-3 ($delay_mode), delays ${d1}/${d2}/${d3} ms, $netns_heights heights"
        port=$(free_port SOCK_STREAM)
        signer_pids=()
        if [[ $delay_mode == netem ]]; then
            for i in 1 2 3; do
                d=$(eval echo "\$d$i")
                ip netns exec "cbench-$i" tc qdisc change dev "v$i" root netem delay "${d}ms"
            done
            start_sim "$dir" "$port" "$netns_heights" cbench-1 "$chain"
            "$bin/split-key" "$work/priv_validator_key.json" --threshold 2 --shares 3 \
                --out "$dir/cosigners" --protocol "$protocol" --chain-id "$chain" \
                --node "tcp://127.0.0.1:$port" \
                --cosigner 10.77.0.1:7101 --cosigner 10.77.0.2:7101 --cosigner 10.77.0.3:7101 \
                > /dev/null
            for i in 1 2 3; do
                ip netns exec "cbench-$i" "$bin/cosigner" start \
                    --config "$dir/cosigners/cosigner-$i/cosigner.toml" > "$dir/signer-$i.log" 2>&1 &
                signer_pids+=("$!")
                pids+=("$!")
            done
        else
            real=() front=() relay_args=() cosigner_args=()
            for i in 1 2 3; do
                real[i]=$(free_port SOCK_DGRAM)
                front[i]=$(free_port SOCK_DGRAM)
                relay_args+=("${front[i]}:${real[i]}:$(eval echo "\$d$i")")
                cosigner_args+=(--cosigner "127.0.0.1:${real[i]}")
            done
            "$bin/split-key" "$work/priv_validator_key.json" --threshold 2 --shares 3 \
                --out "$dir/cosigners" --protocol "$protocol" --chain-id "$chain" \
                --node "tcp://127.0.0.1:$port" "${cosigner_args[@]}" > /dev/null
            # Peers dial each other through the relay; only cosigner 1 knows the node.
            for i in 1 2 3; do
                cfg=$dir/cosigners/cosigner-$i/cosigner.toml
                for j in 1 2 3; do
                    sed -i "s|^address = \"127.0.0.1:${real[j]}\"|address = \"127.0.0.1:${front[j]}\"|" "$cfg"
                done
                if [[ $i != 1 ]]; then
                    sed -i "s|^address = \"tcp://127.0.0.1:$port\"|address = \"tcp://127.0.0.1:1\"|" "$cfg"
                fi
            done
            timeout "$run_limit" python3 "$root/scripts/udp_relay.py" "${relay_args[@]}" \
                > "$dir/relay.log" 2>&1 &
            relay_pid=$!
            pids+=("$relay_pid")
            start_sim "$dir" "$port" "$netns_heights" "" "$chain"
            for i in 1 2 3; do
                "$bin/cosigner" start --config "$dir/cosigners/cosigner-$i/cosigner.toml" \
                    > "$dir/signer-$i.log" 2>&1 &
                signer_pids+=("$!")
                pids+=("$!")
            done
        fi
        finish_run "$dir" "$sim_pid" -- "${signer_pids[@]}"
        if [[ $delay_mode == relay ]]; then
            kill "$relay_pid" 2>/dev/null || true
            wait "$relay_pid" 2>/dev/null || true
        fi
    done
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    namespaces=()
fi
echo "$netns_note" > "$results/netns-note"

# --- 3. throughput: several chains, one 2-of-3 cluster ---------------------------------------
if [[ -z "${SKIP_TP:-}" ]]; then
    for k in 1 "$tp_chains"; do
        dir=$results/throughput/chains-$k
        mkdir -p "$dir"
        echo "==> throughput: $k chain(s) x $tp_heights heights, one 2-of-3 cluster"
        node_args=()
        sims=()
        for c in $(seq "$k"); do
            port=$(free_port SOCK_STREAM)
            node_args+=(--chain-id "chain-$c" --node "tcp://127.0.0.1:$port")
            mkdir -p "$dir/sim-$c"
            start_sim "$dir/sim-$c" "$port" "$tp_heights" "" "chain-$c"
            sims+=("$sim_pid")
        done
        start=$(date +%s.%N)
        run_threshold "$dir" 2 3 "${node_args[@]}"
        finish_run "$dir" "${sims[@]}" -- "${signer_pids[@]}"
        echo "$start $(date +%s.%N)" > "$dir/wall"
    done
fi

# --- 4. memory over a long run (SOAK_HEIGHTS, default off): 2-of-3, VmRSS every 5 s --------
soak_heights=${SOAK_HEIGHTS:-0}
if (( soak_heights > 0 )); then
    dir=$results/soak
    mkdir -p "$dir"
    echo "==> memory soak: 2-of-3, $soak_heights heights, VmRSS every 5 s"
    port=$(free_port SOCK_STREAM)
    run_limit=$((run_limit * 10)) start_sim "$dir" "$port" "$soak_heights" "" "$chain"
    run_threshold "$dir" 2 3 --chain-id "$chain" --node "tcp://127.0.0.1:$port"
    t0=$(date +%s)
    while kill -0 "$sim_pid" 2>/dev/null; do
        line="$(( $(date +%s) - t0 ))"
        for p in "${signer_pids[@]}"; do line+=" $(proc_stats "$p" | cut -d' ' -f1)"; done
        echo "$line" >> "$dir/rss.txt"
        sleep 5
    done
    finish_run "$dir" "$sim_pid" -- "${signer_pids[@]}"
fi

# --- report ----------------------------------------------------------------------------------
if [[ -z "${SKIP_MICRO:-}" ]]; then
    echo "==> cargo bench (micro-benchmarks, a few minutes)"
    rm -rf target/criterion
    cargo bench --locked -p cosigner --benches -q > "$work/cargo-bench.log" 2>&1 \
        && export MICRO_RAN=1 || echo "!!  cargo bench failed; see $work/cargo-bench.log"
fi

# The hand-written analysis at the end of the report survives regeneration (it names the run
# it was written for, so a stale one is recognisable).
analysis=""
metrics_ab=""
refresh_pause=""
if [[ -f docs/benchmarks.md ]]; then
    analysis=$(awk '/^## Analysis/ {on=1} on' docs/benchmarks.md)
    # So do the last `--metrics` run's section and scripts/bench_refresh.sh's.
    metrics_ab=$(awk '/^## Metrics on and off/ {on=1; print; next} /^## / {on=0} on' docs/benchmarks.md)
    refresh_pause=$(awk '/^## Share refresh: the signing pause/ {on=1; print; next} /^## / {on=0} on' docs/benchmarks.md)
fi

machine_cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
python3 scripts/bench_report.py "$results" "$heights" "$rounds" "$(nproc)" "$machine_cpu" "$(date -u +%Y-%m-%dT%H:%MZ)" \
    "$tmkms_note" "$netns_heights" "$tp_heights" "$(getconf CLK_TCK)" "$protocol" "$block_time" \
    > "$work/benchmarks.md"
mkdir -p docs
mv "$work/benchmarks.md" docs/benchmarks.md
cp "$results/summary.json" .bench/summary.json
if python3 -c 'import matplotlib' 2>/dev/null; then
    python3 scripts/bench_plot.py .bench/summary.json docs/benchmarks.png \
        && printf '\n![latency percentiles](benchmarks.png)\n' >> docs/benchmarks.md
else
    printf '\n(No plot: matplotlib is not installed; `pip install matplotlib` and rerun.)\n' >> docs/benchmarks.md
fi
[[ -n $metrics_ab ]] && printf '\n%s\n' "$metrics_ab" >> docs/benchmarks.md
[[ -n $refresh_pause ]] && printf '\n%s\n' "$refresh_pause" >> docs/benchmarks.md
[[ -n $analysis ]] && printf '\n%s\n' "$analysis" >> docs/benchmarks.md
cat docs/benchmarks.md
