#!/usr/bin/env bash
# The project's test command: a short chaos run (random kill -9 and restarts, partitions and
# slow links in a 2-of-3 cluster against the validator simulator; fails on any double sign),
# then every unit, interop and end-to-end test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/chaos.sh 20 2 3
cargo test --workspace --locked "$@"
