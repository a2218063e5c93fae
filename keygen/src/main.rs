//! The `split-key` command: argument parsing and exit status; the work is in the library.
#![forbid(unsafe_code)]
// Input decides whether these would panic; outside tests every failure is a typed error.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // `combine` as the first argument is the way back; anything else is a key file to split
    // (a key file really named `combine` is given as `./combine`).
    let result = if argv.get(1).is_some_and(|a| a == "combine") {
        let args = split_key::combine::CombineArgs::parse_from(
            std::iter::once(OsString::from("split-key combine")).chain(argv.into_iter().skip(2)),
        );
        split_key::combine::run(&args)
            .map(|report| report.to_string())
            .map_err(|e| e.to_string())
    } else {
        let args = split_key::Args::parse_from(argv);
        split_key::run(&args, &mut rand_core::OsRng)
            .map(|report| report.to_string())
            .map_err(|e| e.to_string())
    };
    match result {
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
