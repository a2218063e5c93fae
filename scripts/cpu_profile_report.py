#!/usr/bin/env python3
"""Summarises scripts/cpu_profile.sh's callgrind files: instructions per signature of the
floor and of every cosigner, what each cosigner spent them on (exclusive cost by where the
code lives), and the inclusive cost of the steps that matter.

    scripts/cpu_profile_report.py OUT_DIR SIZE
"""
import glob
import os
import re
import subprocess
import sys

out, size, tool, clk_tck = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
signatures = int(open(os.path.join(out, "signatures")).read())


def ticks_report():
    start = [l.split() for l in open(os.path.join(out, "ticks-start"))]
    end = [l.split() for l in open(os.path.join(out, "ticks-end"))]
    print(f"CPU per signature from /proc (utime + stime, {1000 // clk_tck} ms ticks), {signatures} signatures after the warm-up:")
    print()
    print("| cosigner | CPU ms per signature | of which user | of which kernel |")
    print("|---|---|---|---|")
    tot = [0, 0, 0]
    for i, (a, b) in enumerate(zip(start, end), 1):
        d = [(int(y) - int(x)) * 1000 / clk_tck / signatures for x, y in zip(a, b)]
        tot = [t + x for t, x in zip(tot, d)]
        print(f"| {i} | {d[0]:.3f} | {d[1]:.3f} | {d[2]:.3f} |")
    print(f"| all | {tot[0]:.3f} | {tot[1]:.3f} | {tot[2]:.3f} |")
    print()


def strace_report():
    for f in sorted(glob.glob(os.path.join(out, "strace-*.txt"))):
        i = re.search(r"strace-(\d+)", f).group(1)
        rows = []
        for line in open(f):
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls = int(parts[3])
                rows.append((calls, parts[-1]))
        rows.sort(reverse=True)
        print(f"System calls per signature, cosigner {i} (whole run incl. start-up / {signatures}): "
              + ", ".join(f"{name} {calls / signatures:.1f}" for calls, name in rows[:12]))
        print()


def trace_report():
    """`perf trace -s` per thread (comm(tid)) and `perf stat` context switches, per signature."""
    wanted = ("futex", "epoll_wait", "sendmsg", "sendmmsg", "recvmsg", "recvmmsg", "write",
              "read", "fdatasync", "fsync", "sched_yield", "clock_nanosleep")
    print("System calls per signature after the warm-up (`perf trace -s`), per cosigner and per thread:")
    print()
    print("| cosigner | thread | " + " | ".join(wanted) + " | all |")
    print("|---|---|" + "---|" * (len(wanted) + 1))
    for f in sorted(glob.glob(os.path.join(out, "trace-*.txt"))):
        i = re.search(r"trace-(\d+)", f).group(1)
        threads, current = [], None
        for line in open(f):
            m = re.match(r"\s*(\S.*) \((\d+)\), \d+ events", line)
            if m:
                current = {"name": f"{m.group(1)}({m.group(2)})", "calls": {}}
                threads.append(current)
                continue
            parts = line.split()
            if current is not None and len(parts) >= 3 and parts[1].isdigit() and parts[0] != "syscall":
                current["calls"][parts[0]] = current["calls"].get(parts[0], 0) + int(parts[1])
        total = {"name": "all threads", "calls": {}}
        for t in threads:
            for k, v in t["calls"].items():
                total["calls"][k] = total["calls"].get(k, 0) + v
        busy = [t for t in threads if sum(t["calls"].values()) >= signatures / 10]
        busy.sort(key=lambda t: -sum(t["calls"].values()))
        for t in [total] + busy:
            c = t["calls"]
            cells = " | ".join(f"{c.get(w, 0) / signatures:.1f}" for w in wanted)
            print(f"| {i} | {t['name']} | {cells} | {sum(c.values()) / signatures:.1f} |")
    print()
    for f in sorted(glob.glob(os.path.join(out, "stat-*.txt"))):
        i = re.search(r"stat-(\d+)", f).group(1)
        counts = {}
        for line in open(f):
            parts = line.split()
            if len(parts) >= 2 and parts[0].replace(",", "").isdigit():
                counts[parts[1]] = int(parts[0].replace(",", ""))
        print(f"cosigner {i}: " + ", ".join(f"{k} {v / signatures:.1f}" for k, v in counts.items())
              + " per signature (`perf stat`, after the warm-up)")
    print()


def perf_report():
    for f in sorted(glob.glob(os.path.join(out, "perf-*.data"))):
        i = re.search(r"perf-(\d+)", f).group(1)
        text = subprocess.run(["perf", "report", "-i", f, "--no-children", "--sort", "dso", "--stdio", "-q"],
                              capture_output=True, text=True).stdout
        print(f"perf cpu-clock samples by binary, cosigner {i} (whole run):")
        for line in text.splitlines()[:8]:
            if line.strip():
                print("    " + line.strip())
        print()


if tool != "callgrind":
    print(f"# CPU per signature, {size} ({tool})")
    print()
    ticks_report()
    {"strace": strace_report, "perf": perf_report, "trace": trace_report}.get(tool, lambda: None)()
    sys.exit(0)

# Exclusive cost by where the function lives, first match wins.
CATEGORIES = [
    ("FROST / Ed25519 arithmetic", r"curve25519_dalek|frost_core|frost_ed25519|ed25519_dalek|sha2::|subtle::|zeroize|crypto_bigint"),
    ("QUIC packet protection (ring)", r"ring::|ring_core|^GFp|aes_gcm|chacha20|poly1305|x25519_|ecp_nistz|sha(256|512)_block"),
    ("TLS (rustls)", r"rustls"),
    ("QUIC (quinn)", r"quinn"),
    ("async runtime (tokio)", r"tokio::|mio::"),
    ("logging (tracing)", r"tracing|nu_ansi_term|sharded_slab"),
    ("serialization (bincode/serde)", r"bincode|serde|postcard"),
    ("allocation (malloc/free)", r"malloc|free|realloc|calloc|_int_|alloc::alloc|__rust_(de)?alloc|tcache|arena"),
    ("memory copies", r"mem(cpy|move|set|cmp)|__memcpy|__memmove|__memset|bcmp"),
    ("system call stubs (libc)", r"syscall|sendmsg|recvmsg|epoll|futex|__lll_|pthread_|write$|read$|clock_gettime|__vdso"),
    ("this crate (cosigner)", r"cosigner::|validator_sim"),
    ("std / core", r"^std::|^core::|<std::|<core::|<alloc::|^alloc::|hashbrown"),
]

# Frames that were live when the counters were zeroed (thread and task roots): callgrind
# books the cost of their unfinished calls to them as if it were their own.
ROOTS = (r"^(start_thread|clone3?)$|thread_start|call_once\{\{vtable\.shim\}\}|__rust_begin_short_backtrace"
         r"|tokio::runtime::(task::(harness|raw|core)|blocking::pool::Inner::run|scheduler::multi_thread::worker::run"
         r"|context::(scoped|runtime))")

# Inclusive cost of steps (largest matching entry, so recursion is not counted twice).
STEPS = [
    ("share (`Participant::sign_with`)", r"cosigner::threshold::participant::Participant::sign_with\b"),
    ("  of it, from the coordinator's group commitment (`own_share`)", r"GroupCommitment::own_share\b"),
    ("binding factors and group commitment, coordinator (`precompute`)", r"cosigner::threshold::coordinator::aggregate::group_commitment\b"),
    ("nonce pairs (`PooledNonce::generate`)", r"cosigner::threshold::nonces::PooledNonce::generate\b"),
    ("point validation, all of it", r"frost_ed25519::Ed25519Group as frost_core::traits::Group>::deserialize\b"),
    ("  refills validated (coordinator)", r"supply::<impl cosigner::signer::threshold::Inner>::add_commitments\b"),
    ("  announced commitments validated (participant)", r"Upcoming::learn\b"),
    ("verify_strict, all of it", r"ed25519_dalek::verifying::VerifyingKey::verify_strict\b"),
    ("  reported signatures checked (gossip)", r"cosigner::signer::threshold::gossip::.*adopt_reported\b"),
    ("group key decoded from the package", r"cosigner::threshold::coordinator::aggregate::group_key\b"),
    ("our nonce found in the pool", r"cosigner::threshold::nonces::NoncePool::take\b"),
    ("sign bytes parsed", r"cosigner::consensus::canonical::parse\b"),
    ("privval SecretConnection seal (open costs the same)", r"FrameSealer::seal\b"),
    ("logging: events formatted and written", r"tracing_subscriber::fmt::fmt_layer::Layer.*on_event|tracing_core::event::Event::dispatch"),
    ("quinn: connection driver", r"quinn::connection::ConnectionDriver.*::poll\b"),
    ("quinn: endpoint driver (UDP receive)", r"quinn::endpoint::EndpointDriver.*::poll\b"),
    ("QUIC packet protection (`PacketKey` en/decrypt)", r"rustls::quic::PacketKey.*::(en|de)crypt_in_place\b"),
]


def annotate(path, inclusive):
    args = ["callgrind_annotate", "--auto=no", "--threshold=100", f"--inclusive={'yes' if inclusive else 'no'}", path]
    text = subprocess.run(args, capture_output=True, text=True).stdout
    total = 0
    rows = []
    for line in text.splitlines():
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
            continue
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(?:\S*?):(.*?)(?: \[[^\]]*\])?$", line)
        if m:
            rows.append((int(m.group(1).replace(",", "")), m.group(2).strip()))
    return total, rows


def latest(pattern):
    files = sorted(glob.glob(pattern), key=os.path.getmtime)
    # The explicit dump (callgrind_control -d) holds the counts since the zeroing.
    dumps = [f for f in files if re.search(r"\.\d+$", f)]
    return (dumps or files)[-1] if files else None


print(f"# Instructions per signature, {size}")
print()
floor_iterations = int(open(os.path.join(out, "floor.iterations")).read())
floor_total, floor_rows = annotate(os.path.join(out, "floor.callgrind"), False)
floor = floor_total / floor_iterations
print(f"Floor (`benches/floor.rs`, one whole signing's curve work in one thread): {floor/1e6:.2f} M instructions.")
extra = [int(m.group(1)) for log in glob.glob(os.path.join(out, "cosigner-*.log"))
         for l in open(log) if "micros=" in l for m in [re.search(r"extra_shares=(\d+)", l)] if m]
print(f"Cluster: {signatures} signatures counted (after the warm-up); extra remote shares (hedges,"
      f" fan-out) per signature over the whole run: {sum(extra) / max(len(extra), 1):.2f}.")
print()
cosigners = sorted(glob.glob(os.path.join(out, "cosigner-*.log")))
per = {}
for log in cosigners:
    i = re.search(r"cosigner-(\d+)\.log", log).group(1)
    f = latest(os.path.join(out, f"cosigner-{i}.callgrind*"))
    if not f:
        continue
    total, excl = annotate(f, False)
    _, incl = annotate(f, True)
    signed_here = sum(1 for l in open(log) if " signed " in l and "micros=" in l)
    per[i] = (total, excl, incl, signed_here)
if not per:
    sys.exit("no callgrind files")
all_total = sum(v[0] for v in per.values())
print("| cosigner | role | M instructions per signature | x floor |")
print("|---|---|---|---|")
for i, (total, _, _, signed_here) in per.items():
    role = "coordinator" if signed_here else "participant or idle"
    print(f"| {i} | {role} | {total/signatures/1e6:.2f} | {total/signatures/floor:.2f} |")
print(f"| all | | {all_total/signatures/1e6:.2f} | {all_total/signatures/floor:.2f} |")
print()
print("Exclusive cost by where the code lives, M instructions per signature:")
print()
print("| category | " + " | ".join(f"cosigner {i}" for i in per) + " |")
print("|---|" + "---|" * len(per))
cat_rows = {}
for i, (total, excl, _, _) in per.items():
    acc = {name: 0 for name, _ in CATEGORIES}
    acc["other"] = 0
    for cost, fn in excl:
        if re.search(ROOTS, fn):
            continue
        for name, rx in CATEGORIES:
            if re.search(rx, fn):
                acc[name] += cost
                break
        else:
            acc["other"] += cost
    listed = sum(acc.values())
    acc["other"] += total - listed  # below the annotate threshold, or a root's
    cat_rows[i] = acc
for name in [c for c, _ in CATEGORIES] + ["other"]:
    print(f"| {name} | " + " | ".join(f"{cat_rows[i][name]/signatures/1e6:.3f}" for i in per) + " |")
print()
print("Inclusive cost of steps, M instructions per signature (steps overlap):")
print()
print("| step | " + " | ".join(f"cosigner {i}" for i in per) + " |")
print("|---|" + "---|" * len(per))
for name, rx in STEPS:
    cells = []
    for i, (_, _, incl, _) in per.items():
        best = max((c for c, fn in incl if re.search(rx, fn)), default=0)
        cells.append(f"{best/signatures/1e6:.3f}")
    print(f"| {name} | " + " | ".join(cells) + " |")
if os.environ.get("TOP"):
    for i, (_, excl, _, _) in per.items():
        print()
        print(f"Top exclusive functions, cosigner {i}:")
        for cost, fn in sorted(excl, reverse=True)[: int(os.environ["TOP"])]:
            print(f"  {cost/signatures:10.0f}  {fn[:150]}")
