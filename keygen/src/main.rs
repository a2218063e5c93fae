//! The `split-key` command: argument parsing and exit status; the work is in the library.
#![forbid(unsafe_code)]
// Input decides whether these would panic; outside tests every failure is a typed error.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = split_key::Args::parse();
    match split_key::run(&args, &mut rand_core::OsRng) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
