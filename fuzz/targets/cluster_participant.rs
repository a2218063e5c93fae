//! Fuzz target `cluster_participant`: cluster frames served by a real 2-of-3 participant
//! against a real sign state.
//! Its properties are those of `cosigner::testkit::fuzz::cluster_participant`, which
//! `tests/fuzz_corpus.rs` also replays over `fuzz/corpus/cluster_participant/`.
#![forbid(unsafe_code)]

fn main() {
    afl::fuzz!(|data: &[u8]| {
        cosigner::testkit::fuzz::cluster_participant(data);
    });
}
