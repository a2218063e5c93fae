//! The `cosigner` command.
#![forbid(unsafe_code)]

fn main() {
    println!("cosigner {}", env!("CARGO_PKG_VERSION"));
}
