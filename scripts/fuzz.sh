#!/usr/bin/env bash
# Runs the four cargo-afl fuzz targets of fuzz/ for SECONDS each (default 600), one after the
# other at the lowest CPU priority, and prints AFL's figures per target. Exits non-zero if any
# target crashed (a panic is a failed property). Not in CI: the first run installs cargo-afl,
# which builds AFL++ from source (about 8.5 min on 2 cores), and the instrumented build of the
# targets takes 15 to 25 min (25 on a 2-core machine shared with other builds).
#
# A crash is saved under fuzz/out/<target>/default/crashes/. Replay it with
#   fuzz/target/release/<target> < CRASH
# minimise it with
#   cargo afl tmin -i CRASH -o MIN fuzz/target/release/<target>
# and add MIN to fuzz/corpus/<target>/ with the fix: `cargo test` replays every corpus file.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
targets=(privval_decode sign_bytes cluster_participant state_file)

if ! cargo afl --version >/dev/null 2>&1; then
    nice -n 19 cargo install cargo-afl --locked
fi
# cargo-afl builds AFL++ when installed; an older install may still need it.
if ! out=$(nice -n 19 cargo afl config --build 2>&1) && ! grep -q "already built" <<<"$out"; then
    echo "$out" >&2
    exit 1
fi
(cd fuzz && nice -n 19 cargo afl build --release --locked)

# The state-file and cluster targets write a state file per execution; on a tmpfs its
# fsyncs cost nothing.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm
fi

stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$2"; }

status=0
printf '%-20s %12s %8s %7s %8s %7s %6s\n' target execs exec/s paths found crashes hangs
for t in "${targets[@]}"; do
    out=fuzz/out/$t
    rm -rf "$out"
    mkdir -p "$out"
    # -t: an input that takes a second is a hang, whatever the load of the machine.
    if ! AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_NO_AFFINITY=1 nice -n 19 cargo afl fuzz -i "fuzz/corpus/$t" -o "$out" \
        -V "$seconds" -t 1000 "fuzz/target/release/$t" >"$out/afl.log" 2>&1; then
        echo "$t: afl-fuzz failed; see $out/afl.log" >&2
        tail -n 20 "$out/afl.log" >&2
        status=1
        continue
    fi
    s=$out/default/fuzzer_stats
    crashes=$(stat saved_crashes "$s")
    printf '%-20s %12s %8s %7s %8s %7s %6s\n' "$t" "$(stat execs_done "$s")" \
        "$(stat execs_per_sec "$s")" "$(stat corpus_count "$s")" "$(stat corpus_found "$s")" \
        "$crashes" "$(stat saved_hangs "$s")"
    if [ "$crashes" != 0 ]; then
        echo "$t: $crashes crash(es) in $out/default/crashes/" >&2
        status=1
    fi
done
exit $status
