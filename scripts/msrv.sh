#!/usr/bin/env bash
# The MSRV check that needs no second toolchain (only one, the newest, can be had here).
#
# Two halves, neither of which compiles anything with the old compiler:
# - our code: clippy's `incompatible_msrv` lint (warn by default, so `-D warnings` in .ci/run
#   makes it an error) flags every std item we use that is newer than the workspace's
#   `rust-version`. It skips test code, and it knows std's API only: language features,
#   syntax, lints and cargo features newer than the MSRV pass it.
# - dependencies: this script fails if any package in Cargo.lock declares a `rust-version`
#   newer than ours, as one that cannot build with our MSRV would. A dependency that
#   declares none (or declares one it does not keep) is not caught.
#
# What only building with that toolchain would show (a compiler bug or inference change, an
# undeclared requirement of a dependency) stays unchecked.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked | python3 -c "$(cat <<'PY'

import json, sys

def version(text):
    # "1.88" and "1.88.0" are the same version.
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(ours) != 1 or None in ours:
    sys.exit(f"the workspace members declare rust-version {sorted(map(str, ours))}: one, please")
msrv = ours.pop()
newer = sorted(
    (p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p["id"] not in members
    and p.get("rust_version")
    and version(p["rust_version"]) > version(msrv)
)
for name, ver, needs in newer:
    print(f"{name} {ver} needs Rust {needs}, newer than our rust-version {msrv}", file=sys.stderr)
if newer:
    sys.exit(1)
deps = len(meta["packages"]) - len(members)
print(f"msrv: none of {deps} locked dependencies declares a Rust newer than {msrv}")
PY
)"
