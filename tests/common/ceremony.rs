//! Key ceremonies as a test drives them: `split-key --dkg` or `--horcrux-pubkey` for a
//! loopback cluster, `cosigner dkg` or `cosigner import-horcrux` started on every chosen
//! "host" at once, each waited for with a deadline, and what they printed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::cluster::CHAIN;
use super::*;

/// A loopback cluster's directories for a ceremony, made by the real `split-key` with
/// `mode` (`--dkg`, or `--horcrux-pubkey KEY`) and `extra` arguments, serving one node at
/// `node_port`.
pub fn split_for_ceremony(
    dir: &Path,
    mode: &[&str],
    threshold: u16,
    shares: u16,
    node_port: u16,
    extra: &[&str],
) -> Vec<PathBuf> {
    let out = dir.join("cosigners");
    let mut cmd = Command::new(&bins().split_key);
    cmd.args(mode)
        .args(["--threshold", &threshold.to_string()])
        .args(["--shares", &shares.to_string()])
        .arg("--out")
        .arg(&out)
        .args(["--chain-id", CHAIN])
        .args(["--node", &format!("tcp://127.0.0.1:{node_port}")])
        .args(extra);
    for _ in 0..shares {
        cmd.args(["--cosigner", &format!("127.0.0.1:{}", free_udp_port())]);
    }
    let output = cmd.output_bounded().expect("run split-key");
    assert!(
        output.status.success(),
        "split-key failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (1..=shares)
        .map(|i| out.join(format!("cosigner-{i}")))
        .collect()
}

/// Starts `cosigner <command> --config <dir>/cosigner.toml --timeout <timeout>` for every
/// index in `hosts` (0-based), each with `extra(index)` arguments, logging to `log_dir`.
pub fn spawn_ceremony(
    dirs: &[PathBuf],
    hosts: &[usize],
    command: &str,
    timeout: Duration,
    extra: &dyn Fn(usize) -> Vec<String>,
    log_dir: &Path,
) -> Vec<(usize, Proc)> {
    hosts
        .iter()
        .map(|&i| {
            let mut cmd = Command::new(&bins().cosigner);
            cmd.arg(command)
                .arg("--config")
                .arg(dirs[i].join("cosigner.toml"))
                .args(["--timeout", &timeout.as_secs().to_string()])
                .args(extra(i))
                .env("RUST_LOG", "info");
            let name = format!("{command}-{}", i + 1);
            (i, Proc::spawn(&name, &mut cmd, log_dir))
        })
        .collect()
}

/// Waits for every ceremony process to exit, all within `limit`; each one's exit status and
/// log. A process still running then fails the test.
pub fn finish(procs: Vec<(usize, Proc)>, limit: Duration) -> Vec<(usize, ExitStatus, String)> {
    let deadline = std::time::Instant::now() + limit;
    procs
        .into_iter()
        .map(|(i, mut p)| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let status = p.wait_exit(left).unwrap_or_else(|| {
                panic!(
                    "{} still runs after {limit:?}:\n{}",
                    p.name,
                    tail(&p.log(), 40)
                )
            });
            (i, status, p.log())
        })
        .collect()
}

/// The validator public key (base64) a ceremony printed.
pub fn printed_key(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.strip_prefix("public key (base64): "))
        .map(|k| k.trim().to_string())
}

/// The files of a directory, names only (to show that nothing was written).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read a cosigner directory")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
