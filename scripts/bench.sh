#!/usr/bin/env bash
# Signing latency, throughput and memory of the cosigner against tmkms 0.14 (softsign) and our
# own single-key mode, driven by the validator simulator. Writes docs/benchmarks.md.
#
#   scripts/bench.sh [HEIGHTS]          default 1000 heights per run
#
# Environment: ROUNDS (default 2: every setup runs ROUNDS times, setups alternating),
# NETNS_HEIGHTS (default 100; the cross-region runs, needs root), TP_HEIGHTS (default 500 per
# chain), TP_CHAINS (default 4), SKIP_TMKMS=1, SKIP_NETNS=1, SKIP_TP=1.
# Everything runs on loopback (or inside network namespaces this script creates and deletes).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
heights=${1:-1000}
rounds=${ROUNDS:-2}
netns_heights=${NETNS_HEIGHTS:-100}
tp_heights=${TP_HEIGHTS:-500}
tp_chains=${TP_CHAINS:-4}
# tmkms 0.14 speaks only the v0.34 privval dialect (its `protocol_version` knows v0.33 and
# v0.34), so the comparison runs everything at v0.34; PROTOCOL=v0.38 measures ours alone.
protocol=${PROTOCOL:-v0.34}
chain=bench-chain
# Upper bound for one simulator run, whatever happens.
run_limit=${RUN_LIMIT:-600}

echo "==> building (release)"
cargo build --release --locked --workspace --bins -q
bin=$root/target/release

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
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
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
    for i in $(seq "$n"); do
        "$bin/cosigner" start --config "$dir/cosigners/cosigner-$i/cosigner.toml" \
            > "$dir/signer-$i.log" 2>&1 &
        signer_pids+=("$!")
        pids+=("$!")
    done
}

# --- 1. loopback: every setup, ROUNDS times, in alternation ---------------------------------
setups=()
[[ -n $have_tmkms ]] && setups+=(tmkms)
setups+=(single 2-of-3 3-of-5 5-of-7)
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
# on loopback stands in front of each cosigner and delays every datagram by d_j each way
# (round trip to j = 2 d_j). Either way the node is reachable by cosigner 1 only, so it
# coordinates every request, as a node next to one cosigner would have it.
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

# A UDP relay: for each "listen_port target_port delay_ms" triple, datagrams to listen_port go
# to target_port and the answers back, each held delay_ms. Python asyncio, single thread.
cat > "$work/udp_delay_relay.py" <<'PY'
import asyncio, sys

class Upstream(asyncio.DatagramProtocol):
    def __init__(self, front, client, delay):
        self.front, self.client, self.delay = front, client, delay
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay, self.front.transport.sendto, data, self.client)

class Front(asyncio.DatagramProtocol):
    def __init__(self, target, delay):
        self.target, self.delay, self.upstreams = target, delay, {}
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, addr):
        asyncio.get_running_loop().create_task(self.forward(data, addr))
    async def forward(self, data, addr):
        loop = asyncio.get_running_loop()
        up = self.upstreams.get(addr)
        if up is None:
            fut = loop.create_future()
            self.upstreams[addr] = fut
            t, _ = await loop.create_datagram_endpoint(
                lambda: Upstream(self, addr, self.delay), remote_addr=("127.0.0.1", self.target))
            fut.set_result(t)
            up = fut
        t = await up if isinstance(up, asyncio.Future) else up
        loop.call_later(self.delay, t.sendto, data)

async def main(specs):
    loop = asyncio.get_running_loop()
    for listen, target, delay in specs:
        await loop.create_datagram_endpoint(
            lambda t=target, d=delay: Front(t, d / 1000), local_addr=("127.0.0.1", listen))
    print("ready", flush=True)
    await asyncio.Event().wait()

args = [int(a) for a in sys.argv[1:]]
asyncio.run(main([tuple(args[i:i + 3]) for i in range(0, len(args), 3)]))
PY

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
                relay_args+=("${front[i]}" "${real[i]}" "$(eval echo "\$d$i")")
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
            timeout "$run_limit" python3 "$work/udp_delay_relay.py" "${relay_args[@]}" \
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
            kill -9 "$relay_pid" 2>/dev/null || true
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
if [[ -f docs/benchmarks.md ]]; then
    analysis=$(awk '/^## Analysis/ {on=1} on' docs/benchmarks.md)
fi

machine_cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
python3 - "$results" "$heights" "$rounds" "$(nproc)" "$machine_cpu" "$(date -u +%Y-%m-%dT%H:%MZ)" \
    "$tmkms_note" "$netns_heights" "$tp_heights" "$(getconf CLK_TCK)" "$protocol" > docs/benchmarks.md <<'EOF'
import json, os, sys, glob, statistics

res, heights, rounds, nproc, cpu, date, tmkms_note, netns_h, tp_h, clk, proto = sys.argv[1:]
clk = int(clk)
out = []
def p(line=""):
    out.append(line)

def load(d):
    try:
        return json.load(open(os.path.join(d, "report.json")))
    except Exception:
        return None

def procs(d):
    rows = []
    try:
        for line in open(os.path.join(d, "procs.txt")):
            pid, rss, cpu = line.split()
            rows.append((int(pid), int(rss), int(cpu)))
    except FileNotFoundError:
        pass
    return rows

summary = {"loopback": {}, "netns": {}, "throughput": {}}
# loopback: mean of each percentile over rounds, max of max.
order = ["tmkms", "single", "2-of-3", "3-of-5", "5-of-7"]
setups = [s for s in order if os.path.isdir(os.path.join(res, "loopback", s))]
stats = {}
for s in setups:
    reports, mem, cpu_per_sig = [], [], []
    for d in sorted(glob.glob(os.path.join(res, "loopback", s, "round-*"))):
        r = load(d)
        if r is None:
            continue
        reports.append(r)
        pr = procs(d)
        mem.append(max((x[1] for x in pr), default=0))
        if r.get("passed"):
            cpu_per_sig.append(sum(x[2] for x in pr) / clk * 1000 / r["passed"])
    coord = []
    for d in sorted(glob.glob(os.path.join(res, "loopback", s, "round-*"))):
        for lg in glob.glob(os.path.join(d, "signer-*.log")):
            for line in open(lg, errors="replace"):
                if " signed " in line and "micros=" in line:
                    try:
                        coord.append(int(line.rsplit("micros=", 1)[1].split()[0]) / 1000)
                    except ValueError:
                        pass
    coord.sort()
    types = {}
    for r in reports:
        for t, tr in r["by_type"].items():
            if tr["passed"] == 0:
                continue
            types.setdefault(t, []).append(tr)
    agg = {}
    for t, trs in types.items():
        lat = [x["latency"] for x in trs]
        agg[t] = {
            "n": sum(x["passed"] for x in trs),
            "failed": sum(x["failed"] for x in trs),
            "p50": statistics.mean(l["p50_ms"] for l in lat),
            "p90": statistics.mean(l["p90_ms"] for l in lat),
            "p99": statistics.mean(l["p99_ms"] for l in lat),
            "max": max(l["max_ms"] for l in lat),
            "rounds_p50": [l["p50_ms"] for l in lat],
        }
    stats[s] = {
        "types": agg,
        "failed": sum(r["failed"] for r in reports),
        "double_signs": sum(r["double_signs"] for r in reports),
        "rss_kib": max(mem, default=0),
        "coord": (coord[len(coord) // 2], coord[min(len(coord) - 1, int(len(coord) * 0.99))]) if coord else None,
        "cpu_ms_per_sig": statistics.mean(cpu_per_sig) if cpu_per_sig else None,
        "sig_per_s": statistics.mean(r["passed"] / (r["elapsed_ms"] / 1000) for r in reports) if reports else 0,
    }
summary["loopback"] = stats

p("# Benchmarks")
p()
p("Generated by `scripts/bench.sh` (do not edit by hand; rerun it). Micro-benchmarks: `cargo bench`")
p("(see the last section).")
p()
p("## Machine and method")
p()
p(f"- Date: {date}; `nproc` = {nproc}; CPU: {cpu}. A shared build machine: other processes")
p("  (compilers) ran concurrently, so tails are noisier than on a dedicated host.")
p(f"- Driver: `validator-sim` (release build, a CometBFT node built on tendermint-rs), privval {proto},")
p(f"  `--heights {heights} --nil-round-every 10` (a proposal, prevote and precommit per height, and")
p("  every 10th height a nil round 0 first; with v0.38 non-nil precommits carry a vote extension).")
p("  Latency is the simulator's round trip of the answered attempt, request written to response read.")
p(f"- Setups, in one run, alternating: {', '.join(setups)}; each ran {rounds} time(s) with")
p("  a fresh signer state each time. Figures are the mean over rounds of each percentile (max: the")
p("  largest). All on loopback. Our signers `fdatasync` their watermark before answering; tmkms")
p("  0.14 writes its state to a temp file and renames it without any fsync (cheaper, not durable).")
if tmkms_note:
    p(f"- Note: {tmkms_note}")
p()
p("## Loopback latency (ms)")
p()
p("| setup | request | signed | p50 | p90 | p99 | max | p50 per round |")
p("|---|---|---|---|---|---|---|---|")
for s in setups:
    for t, a in sorted(stats[s]["types"].items()):
        rp = ", ".join(f"{x:.3f}" for x in a["rounds_p50"])
        p(f"| {s} | {t} | {a['n']} | {a['p50']:.3f} | {a['p90']:.3f} | {a['p99']:.3f} | {a['max']:.3f} | {rp} |")
p()
for base in ["tmkms", "single"]:
    if base not in stats:
        continue
    p(f"## Ratios to {base} (same run): p50 ratio / p99 ratio")
    p()
    p("| setup | " + " | ".join(sorted(stats[base]["types"])) + " |")
    p("|---|" + "---|" * len(stats[base]["types"]))
    for s in setups:
        cells = []
        for t in sorted(stats[base]["types"]):
            a, b = stats[s]["types"].get(t), stats[base]["types"][t]
            cells.append("-" if not a else f"{a['p50']/b['p50']:.2f} / {a['p99']/b['p99']:.2f}")
        p(f"| {s} | " + " | ".join(cells) + " |")
    p()
p("## Memory, CPU and failures")
p()
p("| setup | largest signer VmRSS at end (MiB) | CPU ms per signature (all signers) | signatures/s (one chain) | coordinator's own time p50 / p99 (ms) | failed | double signs |")
p("|---|---|---|---|---|---|---|")
for s in setups:
    st = stats[s]
    cpu_s = "-" if st["cpu_ms_per_sig"] is None else f"{st['cpu_ms_per_sig']:.3f}"
    co = "-" if not st["coord"] else f"{st['coord'][0]:.3f} / {st['coord'][1]:.3f}"
    p(f"| {s} | {st['rss_kib']/1024:.1f} | {cpu_s} | {st['sig_per_s']:.0f} | {co} | {st['failed']} | {st['double_signs']} |")
p()
p("CPU is utime+stime from `/proc/PID/stat` of every signer process (10 ms ticks) over the run,")
p("divided by signatures; the simulator's own CPU is not included. Signatures/s of one chain is")
p("latency-bound (the simulator sends one request at a time). The coordinator's own time is the")
p("`micros=` its `signed` log line reports (request in, signature out, cluster round trip included),")
p("so the simulator's latency minus it is the privval side: SecretConnection, framing, scheduling.")
p()

p("## Across regions: 2-of-3 with delays between cosigners")
p()
note = open(os.path.join(res, "netns-note")).read().strip() if os.path.exists(os.path.join(res, "netns-note")) else ""
cases = sorted(glob.glob(os.path.join(res, "netns", "delay-*")), key=lambda d: [int(x) for x in open(os.path.join(d, "delays")).read().split()[:3]])
if not cases:
    p(f"Not run: {note or 'no results'}.")
else:
    if note:
        p(f"Note: {note}.")
        p()
    p("netem mode: cosigners 1..3 in their own network namespaces on a bridge (10.77.0.0/24,")
    p("created inside the namespaces only), `tc netem delay` on each cosigner's egress: one-way")
    p("i->j = d_i, so the round trip between 1 and j is d_1 + d_j. relay mode: every cosigner")
    p("dials peer j through a UDP relay (Python asyncio, loopback) that holds each datagram d_j")
    p("in each direction, so the round trip from 1 to j is 2 d_j (plus the relay's own ~0.1 ms).")
    p("Either way only cosigner 1 can reach the node, so it coordinates every request.")
    p(f"{netns_h} heights each. The floor is the RTT to the nearest t-1 = 1 peer.")
    p()
    p("| delays d1/d2/d3 (ms) | RTT to nearest peer (ms) | request | signed | p50 | p90 | p99 | max | p50 - RTT |")
    p("|---|---|---|---|---|---|---|---|---|")
    for d in cases:
        fields = open(os.path.join(d, "delays")).read().split()
        d1, d2, d3 = [int(x) for x in fields[:3]]
        rtt = d1 + min(d2, d3) if fields[3] == "netem" else 2 * min(d2, d3)
        r = load(d)
        if r is None:
            p(f"| {d1}/{d2}/{d3} | {rtt} | (no report) | | | | | | |")
            continue
        for t, tr in sorted(r["by_type"].items()):
            if tr["passed"] == 0:
                continue
            l = tr["latency"]
            p(f"| {d1}/{d2}/{d3} | {rtt} | {t} | {tr['passed']} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} | {l['p99_ms']:.2f} | {l['max_ms']:.2f} | {l['p50_ms']-rtt:+.2f} |")
        summary["netns"][f"{d1}/{d2}/{d3}"] = {"rtt": rtt, "report": r["by_type"], "failed": r["failed"]}
p()

p("## Throughput: several chains on one 2-of-3 cluster")
p()
tps = sorted(glob.glob(os.path.join(res, "throughput", "chains-*")), key=lambda d: int(d.rsplit("-", 1)[1]))
if not tps:
    p("Not run.")
else:
    p(f"One simulator per chain (each a different node), {tp_h} heights each, all concurrently; one")
    p("2-of-3 cluster configured with every node and chain. Signatures/s = all signed requests over")
    p("the longest simulator run (which includes the cosigners' first connection, < 1 s).")
    p()
    p("| chains | signed | failed | longest run (s) | signatures/s | p50 (ms, mean over chains) | p99 (ms, worst chain) | CPU ms per signature | largest VmRSS (MiB) |")
    p("|---|---|---|---|---|---|---|---|---|")
    for d in tps:
        k = int(d.rsplit("-", 1)[1])
        reps = [load(x) for x in sorted(glob.glob(os.path.join(d, "sim-*")))]
        reps = [x for x in reps if x]
        if not reps:
            p(f"| {k} | (no reports) | | | | | | | |")
            continue
        signed = sum(x["passed"] for x in reps)
        failed = sum(x["failed"] for x in reps)
        longest = max(x["elapsed_ms"] for x in reps) / 1000
        lat = [tr["latency"] for x in reps for tr in x["by_type"].values() if tr["passed"]]
        p50 = statistics.mean(l["p50_ms"] for l in lat)
        p99 = max(l["p99_ms"] for l in lat)
        pr = procs(d)
        cpu = sum(x[2] for x in pr) / clk * 1000 / signed if signed else 0
        rss = max((x[1] for x in pr), default=0) / 1024
        p(f"| {k} | {signed} | {failed} | {longest:.1f} | {signed/longest:.0f} | {p50:.3f} | {p99:.3f} | {cpu:.3f} | {rss:.1f} |")
        summary["throughput"][k] = {"signed": signed, "failed": failed, "seconds": longest, "per_s": signed / longest}
p()
p("## Micro-benchmarks (`cargo bench`)")
p()
p("`benches/`: `frost` (participant `handle_sign` with an in-memory and with the durable")
p("watermark, coordinator aggregate, whole in-memory signing for 2-of-3, 3-of-5, 5-of-7),")
p("`cluster_codec` (cluster frames of sign requests and responses), `secret_connection`")
p("(seal/write/read/open over an in-memory pipe, and a handshake pair). Criterion's mean and its")
p("95% interval, from `target/criterion/*/new/estimates.json` of this run:")
p()
crit = sorted(glob.glob(os.path.join(os.environ.get("CRITERION_DIR", "target/criterion"), "**", "new", "estimates.json"), recursive=True))
if os.environ.get("MICRO_RAN") != "1" or not crit:
    p("(not run in this invocation of the script; `cargo bench` runs them.)")
else:
    p("| benchmark | mean (us) | 95% interval (us) |")
    p("|---|---|---|")
    for e in crit:
        try:
            bid = json.load(open(os.path.join(os.path.dirname(e), "benchmark.json")))["full_id"]
            m = json.load(open(e))["mean"]
        except Exception:
            continue
        ci = m["confidence_interval"]
        p(f"| {bid} | {m['point_estimate']/1000:.2f} | {ci['lower_bound']/1000:.2f} - {ci['upper_bound']/1000:.2f} |")
json.dump(summary, open(os.path.join(res, "summary.json"), "w"), indent=1)
sys.stdout.write("\n".join(out) + "\n")
EOF
cp "$results/summary.json" .bench/summary.json
if python3 -c 'import matplotlib' 2>/dev/null; then
    python3 scripts/bench_plot.py .bench/summary.json docs/benchmarks.png \
        && printf '\n![latency percentiles](benchmarks.png)\n' >> docs/benchmarks.md
else
    printf '\n(No plot: matplotlib is not installed; `pip install matplotlib` and rerun.)\n' >> docs/benchmarks.md
fi
[[ -n $analysis ]] && printf '\n%s\n' "$analysis" >> docs/benchmarks.md
cat docs/benchmarks.md
