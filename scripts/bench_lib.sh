# Shared by the benchmark scripts (bench.sh, bench_refresh.sh, cpu_profile.sh); sourced, not run.
# Each script sets `root` (the checkout) and a `pids` array of what it started.

# Sets `bin` to the release binaries: those in $BIN if given (built before, e.g. another
# commit's, to compare builds), else a fresh release build of the workspace.
release_binaries() {
    if [[ -n ${BIN:-} ]]; then
        bin=$(cd "$BIN" && pwd)
        echo "==> using the binaries in $bin (BIN; not building)"
    else
        echo "==> building (release)"
        cargo build --release --locked --workspace --bins -q
        bin=${CARGO_TARGET_DIR:-$root/target}/release
    fi
}

# TERM first: `timeout` passes it on to the simulator or relay it runs (a SIGKILL would leave
# that child behind); then KILL whatever is left.
stop_pids() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}

# Replaces the section of docs/benchmarks.md headed "## $1" with the file $2 (or adds it
# before the analysis), keeping the rest of the report.
replace_report_section() {
    python3 - docs/benchmarks.md "$2" "$1" <<'PY'
import pathlib, re, sys
doc, new = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_text().rstrip() + "\n"
text = doc.read_text() if doc.exists() else ""
pattern = re.compile(r"^## " + re.escape(sys.argv[3]) + r".*?(?=^## |\Z)", re.S | re.M)
if pattern.search(text):
    text = pattern.sub(lambda _: new + "\n", text)
elif "\n## Analysis" in text:
    text = text.replace("\n## Analysis", "\n" + new + "\n## Analysis", 1)
else:
    text += "\n" + new
doc.write_text(text)
PY
}
