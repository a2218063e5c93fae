//! The validator simulator as a test drives it: started on a port, waited on through its
//! progress lines (every wait with a deadline), and finished into its typed report.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use validator_sim::report::{Report, TypeReport};

use super::{bins, free_tcp_port, reap, tail, Proc};

/// How long [`Sim::wait_for_line`] and [`Sim::wait_for_height`] wait by default: ample for
/// any height a test waits for (a healthy cluster commits several per second), short enough
/// that a silent simulator fails the test instead of hanging it.
pub const SIM_WAIT: Duration = Duration::from_secs(60);

/// How long [`Sim::outcome`] waits for the simulator to finish its run.
pub const SIM_FINISH: Duration = Duration::from_secs(120);

/// A running validator simulator whose stdout is read line by line for progress.
pub struct Sim {
    pub child: Child,
    pub port: u16,
    pub report_path: PathBuf,
    /// Lines of the simulator's stdout, read on a thread of their own so that every wait
    /// for one can have a deadline; closed when the simulator closes its stdout (exits).
    lines: Receiver<String>,
    /// Every line read so far, for failure messages.
    pub seen: Vec<String>,
}

impl Sim {
    /// Starts the simulator listening on a free port, with extra arguments.
    pub fn start(dir: &Path, protocol: &str, args: &[&str]) -> Sim {
        Sim::start_on(dir, free_tcp_port(), protocol, args)
    }

    /// Starts the simulator listening on `port`.
    pub fn start_on(dir: &Path, port: u16, protocol: &str, args: &[&str]) -> Sim {
        let report_path = dir.join(format!("sim-{port}.json"));
        Sim::start_listen(
            &format!("127.0.0.1:{port}"),
            port,
            &report_path,
            protocol,
            args,
        )
    }

    /// Starts the simulator listening on `listen` (e.g. a bridge address in a namespace
    /// test); `port` is its port, `report_path` where its JSON report goes.
    pub fn start_listen(
        listen: &str,
        port: u16,
        report_path: &Path,
        protocol: &str,
        args: &[&str],
    ) -> Sim {
        let mut command = Command::new(&bins().validator_sim);
        command
            .args(["--listen", listen])
            .args(["--protocol", protocol])
            .arg("--json")
            .arg(report_path)
            .arg("--progress")
            .args(args);
        Sim::spawn(command, port, report_path)
    }

    /// Runs `command` (a simulator, or a stand-in for one in the harness's own tests) with
    /// its stdout read on a thread.
    pub fn spawn(mut command: Command, port: u16, report_path: &Path) -> Sim {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn validator-sim");
        let stdout = child.stdout.take().expect("sim stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                // A line that is not UTF-8 is kept, lossily, rather than ending the reading.
                let line = match line {
                    Ok(line) => line,
                    Err(e) => format!("<unreadable line: {e}>"),
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sim {
            child,
            port,
            report_path: report_path.to_path_buf(),
            lines,
            seen: Vec::new(),
        }
    }

    pub fn node_address(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Waits (at most [`SIM_WAIT`]) until the simulator has committed `height` (of any
    /// chain).
    pub fn wait_for_height(&mut self, height: u64) {
        self.wait_for_height_within(height, SIM_WAIT);
    }

    /// [`Sim::wait_for_height`] with a deadline of `limit`.
    pub fn wait_for_height_within(&mut self, height: u64, limit: Duration) {
        self.wait_for_line_within(&format!("height {height} committed"), limit);
    }

    /// Reads the simulator's output until a line contains `needle` (at most [`SIM_WAIT`]);
    /// returns that line.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        self.wait_for_line_within(needle, SIM_WAIT)
    }

    /// Reads the simulator's output until a line contains `needle`; returns that line.
    /// Panics, with everything read so far, if the simulator exits first or prints no such
    /// line within `limit`.
    pub fn wait_for_line_within(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "validator-sim printed no `{needle}` in {limit:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "validator-sim exited before printing `{needle}`; output:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits (at most `limit` in all) for the simulator to finish and returns its report
    /// and output. Panics if it does not finish in time (it is killed), or leaves no report
    /// that parses as one.
    pub fn finish(mut self, limit: Duration) -> Outcome {
        let deadline = Instant::now() + limit;
        // Its stdout closes when it exits: read to the end, bounded.
        let mut closed = false;
        while !closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => closed = true,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let status = if closed {
            super::wait_exit(&mut self.child, left.max(Duration::from_secs(1)))
        } else {
            None
        };
        let output = self.seen.join("\n");
        assert!(
            status.is_some(),
            "validator-sim did not finish in {limit:?}:\n{output}"
        );
        let text = std::fs::read_to_string(&self.report_path).unwrap_or_else(|e| {
            panic!(
                "validator-sim left no report at {} ({e}); exit status {status:?}; \
                 output:\n{output}",
                self.report_path.display()
            )
        });
        let report: Report = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "validator-sim's report {} does not parse as its Report ({e}):\n{text}",
                self.report_path.display()
            )
        });
        Outcome { report, output }
    }

    /// Finishes the run (at most [`SIM_FINISH`]) and returns what it reported.
    pub fn outcome(self) -> Outcome {
        self.finish(SIM_FINISH)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        reap(&mut self.child, "validator-sim");
    }
}

/// What a simulator run reported (its own typed report) and printed.
pub struct Outcome {
    pub report: Report,
    pub output: String,
}

impl Outcome {
    pub fn passed(&self) -> u64 {
        self.report.passed
    }

    pub fn failed(&self) -> u64 {
        self.report.failed
    }

    pub fn double_signs(&self) -> u64 {
        self.report.double_signs
    }

    /// The results for one request type (`pubkey`, `proposal`, `prevote`, `precommit`,
    /// `ping`, `replay`, `conflict`); fails the test if the run made no such request.
    pub fn of_type(&self, kind: &str) -> &TypeReport {
        self.report.by_type.get(kind).unwrap_or_else(|| {
            panic!(
                "the simulator made no `{kind}` request; it made {:?}:\n{}",
                self.report.by_type.keys().collect::<Vec<_>>(),
                self.output
            )
        })
    }

    /// Refusal descriptions (RemoteSignerError texts) and how often each came.
    pub fn refusals(&self) -> &BTreeMap<String, u64> {
        &self.report.refusals
    }

    pub fn refusals_containing(&self, needle: &str) -> u64 {
        self.refusals()
            .iter()
            .filter(|(k, _)| k.contains(needle))
            .map(|(_, n)| n)
            .sum()
    }

    /// Asserts that the signer presented `public_key_base64`, under which the simulator
    /// verified every signature.
    pub fn assert_key(&self, public_key_base64: &str) {
        assert_eq!(
            self.report.validator_pubkey.as_deref(),
            Some(public_key_base64),
            "{}",
            self.output
        );
    }

    /// Signer connections the simulator accepted.
    pub fn connections_accepted(&self) -> u64 {
        self.report.connections.accepted
    }

    /// Asserts a clean run: something signed, nothing failed, no double sign.
    pub fn assert_clean(&self, logs: &[&Proc]) {
        let logs: String = logs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.name, tail(&p.log(), 40)))
            .collect();
        assert!(
            self.passed() > 0 && self.failed() == 0 && self.double_signs() == 0,
            "simulator output:\n{}\n{logs}",
            self.output
        );
    }
}
