//! Fuzz target `privval_decode`: a node's privval byte stream, read as a session reads it.
//! Its properties are those of `cosigner::testkit::fuzz::privval_stream`, which
//! `tests/fuzz_corpus.rs` also replays over `fuzz/corpus/privval_decode/`.
#![forbid(unsafe_code)]

fn main() {
    afl::fuzz!(|data: &[u8]| {
        cosigner::testkit::fuzz::privval_stream(data);
    });
}
