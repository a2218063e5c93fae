#!/usr/bin/env bash
# The project's test command: a short chaos run (random kill -9 and restarts, partitions and
# slow links in a 2-of-3 cluster against the validator simulator; fails on any double sign),
# then every unit, interop and end-to-end test of the workspace.
#
# The chaos run prints its seed; CHAOS_SEED=N scripts/test.sh replays its schedule of events.
# With CI set (non-empty), a test whose prerequisites (root, loop devices, mkfs.ext4, e2fsck,
# python3, ip netns) are missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/chaos.sh 20 2 3
cargo test --workspace --locked "$@"
