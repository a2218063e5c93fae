//! Fuzz target `sign_bytes`: candidate sign bytes, parsed as a participant parses them.
//! Its properties are those of `cosigner::testkit::fuzz::sign_bytes`, which
//! `tests/fuzz_corpus.rs` also replays over `fuzz/corpus/sign_bytes/`.
#![forbid(unsafe_code)]

fn main() {
    afl::fuzz!(|data: &[u8]| {
        cosigner::testkit::fuzz::sign_bytes(data);
    });
}
