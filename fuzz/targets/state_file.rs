//! Fuzz target `state_file`: arbitrary state file contents, opened as a cosigner opens them.
//! Its properties are those of `cosigner::testkit::fuzz::state_file`, which
//! `tests/fuzz_corpus.rs` also replays over `fuzz/corpus/state_file/`.
#![forbid(unsafe_code)]

fn main() {
    afl::fuzz!(|data: &[u8]| {
        cosigner::testkit::fuzz::state_file(data);
    });
}
