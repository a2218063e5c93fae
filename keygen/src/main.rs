//! The `split-key` command.
#![forbid(unsafe_code)]

fn main() {}
