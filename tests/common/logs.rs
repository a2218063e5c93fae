//! Reading what cosigners log: the coordinator's `signed` lines, and waiting for a line.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use super::Proc;

/// Height, round and FilePV step number (1 proposal, 2 prevote, 3 precommit).
pub type Hrs = (i64, i64, u8);

/// One `signed` line of a coordinator's log.
#[derive(Debug)]
pub struct Signing {
    /// The log timestamp (RFC 3339, UTC, fixed width: compares as text).
    pub at: String,
    pub hrs: Hrs,
    pub participants: Vec<usize>,
    /// How long the signing took the coordinator.
    pub micros: u64,
    /// Remote shares asked for beyond the `t - 1` one set needs (hedges, fan-out).
    pub extra_shares: u64,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
}

fn step_number(name: &str) -> Option<u8> {
    match name {
        "proposal" => Some(1),
        "prevote" => Some(2),
        "precommit" => Some(3),
        _ => None,
    }
}

/// Parses the coordinator's `signed chain=… height=… round=… step=… participants=[…]
/// extra_shares=… micros=…` lines. A line that looks like one but does not parse fails the test: silently
/// skipping it could hide exactly the signing an assertion is about.
pub fn signings(log: &str) -> Vec<Signing> {
    log.lines()
        .filter(|l| l.contains(" signed chain="))
        .map(|line| {
            let parsed = (|| {
                let at = timestamp(line).to_string();
                let hrs = (
                    field(line, "height")?.parse().ok()?,
                    field(line, "round")?.parse().ok()?,
                    step_number(field(line, "step")?)?,
                );
                let list = line.split("participants=[").nth(1)?.split(']').next()?;
                let participants = list
                    .split(',')
                    .map(|p| p.trim().parse().ok())
                    .collect::<Option<Vec<usize>>>()?;
                let micros = field(line, "micros")?.parse().ok()?;
                let extra_shares = field(line, "extra_shares")?.parse().ok()?;
                Some(Signing {
                    at,
                    hrs,
                    participants,
                    micros,
                    extra_shares,
                })
            })();
            parsed.unwrap_or_else(|| panic!("unparsable signing line: {line}"))
        })
        .collect()
}

/// A log line's timestamp.
pub fn timestamp(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

/// The timestamp of the first line of `log` at or after `after` containing every needle.
pub fn first_line_after(log: &str, after: &str, needles: &[&str]) -> Option<String> {
    log.lines()
        .find(|l| timestamp(l) >= after && needles.iter().all(|n| l.contains(n)))
        .map(|l| timestamp(l).to_string())
}

/// Waits (at most `limit`) until `proc`'s log has a line stamped at or after `after` that
/// contains every needle; its timestamp. Panics with the log if none comes.
pub fn wait_for_log_line(proc: &Proc, after: &str, needles: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(at) = first_line_after(&proc.log(), after, needles) {
            return at;
        }
        assert!(
            Instant::now() < deadline,
            "{} never logged a line with {needles:?}:\n{}",
            proc.name,
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
