//! A simulated CometBFT node for testing remote signers.
fn main() {}
