//! Test harness for end-to-end tests: builds and spawns the real `split-key`, `cosigner` and
//! `validator-sim` binaries on loopback, with free ports and per-test directories.
//!
//! Every process is killed when its handle drops, so a failing test leaves nothing running.
//! Process output goes to log files in the test directory; a failing assertion can print
//! them with [`Proc::log`]. Every wait has a deadline: a process that hangs or goes silent
//! fails the test instead of hanging it.
//!
//! - [`cluster`]: the one cluster fixture (a split key, its cosigners, the node they serve).
//! - [`ceremony`]: directories for a key ceremony, and the ceremony run on every host.
//! - [`sim`]: the validator simulator and its typed report.
//! - [`prereq`]: what a test does when the machine lacks something it needs.
//! - [`disk`], [`relay`]: loop-mounted filesystems and the UDP relay, for fault tests.
//! - [`operate`]: a running cosigner's `/metrics` and `cosigner status --json`.
//! - [`logs`], [`ports`]: reading cosigner logs; free loopback ports.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

pub mod ceremony;
pub mod cluster;
pub mod disk;
pub mod logs;
pub mod operate;
pub mod ports;
pub mod prereq;
pub mod relay;
pub mod sim;

// Not every test binary uses each of these.
#[allow(unused_imports)]
pub use disk::{disk_faults_unavailable, LoopFs};
#[allow(unused_imports)]
pub(crate) use prereq::{on_ci, require, skip_or_fail};
#[allow(unused_imports)]
pub use sim::{Outcome, Sim, SIM_FINISH, SIM_WAIT};

use base64::Engine;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

/// How long a one-shot command (`split-key`, `cosigner state …`, `mkfs.ext4`, `ip …`) may
/// run: each takes well under a second on a healthy machine.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// How long building `split-key` and `validator-sim` may take: a cold build of both on two
/// shared cores takes a few minutes; this only stops a wedged build from hanging the suite.
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Paths of the three binaries, built once per test process.
pub struct Bins {
    pub cosigner: PathBuf,
    pub split_key: PathBuf,
    pub validator_sim: PathBuf,
}

/// Builds `split-key` and `validator-sim` (the `cosigner` binary is built by cargo for us)
/// so that a test never runs a stale binary.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let cosigner = PathBuf::from(env!("CARGO_BIN_EXE_cosigner"));
        let dir = cosigner.parent().expect("binary directory").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // Only the basic environment: the test's CARGO_* variables would change build-script
        // fingerprints (ring watches CARGO_MANIFEST_DIR) and make this build and the next
        // `cargo test` rebuild each other's dependencies.
        let mut build = Command::new(cargo);
        build.env_clear();
        for var in [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "CARGO_TARGET_DIR",
            "TMPDIR",
        ] {
            if let Some(value) = std::env::var_os(var) {
                build.env(var, value);
            }
        }
        let mut child = build
            .args([
                "build",
                "-q",
                "-p",
                "split-key",
                "-p",
                "validator-sim",
                "--bins",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .spawn()
            .expect("run cargo build");
        let status = wait_exit(&mut child, BUILD_LIMIT).unwrap_or_else(|| {
            let _ = child.kill();
            reap(&mut child, "cargo build");
            panic!("building split-key and validator-sim took over {BUILD_LIMIT:?}")
        });
        assert!(
            status.success(),
            "building split-key and validator-sim failed"
        );
        Bins {
            cosigner,
            split_key: dir.join("split-key"),
            validator_sim: dir.join("validator-sim"),
        }
    })
}

/// Waits for `child` to exit, at most `limit`; its status, or `None` if it still runs.
/// (std has no wait with a timeout; the exit is polled, finely, up to the deadline.)
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reaps a child that was sent SIGKILL, for at most 10 s: one that is still there then (in
/// the kernel's uninterruptible sleep) is reported and left, rather than hanging the test.
pub fn reap(child: &mut Child, name: &str) {
    if wait_exit(child, Duration::from_secs(10)).is_none() {
        eprintln!(
            "{name} (pid {}) has not exited 10 s after SIGKILL; left behind",
            child.id()
        );
    }
}

/// Runs `cosigner ARGS… --config CONFIG` to completion (bounded by [`COMMAND_LIMIT`]).
pub fn cosigner(args: &[&str], config: &Path) -> Output {
    Command::new(&bins().cosigner)
        .args(args)
        .arg("--config")
        .arg(config)
        .output_bounded()
        .expect("run cosigner")
}

/// A finished command's stdout then stderr, as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `Command::output` with a deadline.
pub trait BoundedOutput {
    /// Runs the command to completion and collects its output, like `Command::output`; a
    /// command still running after `limit` is killed, and the result is a `TimedOut` error.
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output>;

    /// [`BoundedOutput::output_within`] with [`COMMAND_LIMIT`].
    fn output_bounded(&mut self) -> std::io::Result<Output> {
        self.output_within(COMMAND_LIMIT)
    }
}

impl BoundedOutput for Command {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output> {
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // Both pipes are read on threads (a full pipe would block the command), and their
        // ends are the signal that it is done.
        let (tx, rx) = mpsc::channel();
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child.stdout.take().map(|p| Box::new(p) as _),
            child.stderr.take().map(|p| Box::new(p) as _),
        ];
        for (which, pipe) in pipes.into_iter().enumerate() {
            let tx = tx.clone();
            let mut pipe = pipe.expect("piped");
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                let _ = tx.send((which, bytes));
            });
        }
        drop(tx);
        let deadline = Instant::now() + limit;
        let mut out: [Option<Vec<u8>>; 2] = [None, None];
        while out.iter().any(Option::is_none) {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((which, bytes)) => out[which] = Some(bytes),
                Err(_) => break,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let status = match out.iter().all(Option::is_some) {
            true => wait_exit(&mut child, left.max(Duration::from_secs(1))),
            false => None,
        };
        match status {
            Some(status) => {
                let [stdout, stderr] = out.map(Option::unwrap_or_default);
                Ok(Output {
                    status,
                    stdout,
                    stderr,
                })
            }
            None => {
                let _ = child.kill();
                reap(&mut child, "a command");
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{self:?} did not finish in {limit:?}"),
                ))
            }
        }
    }
}

/// Runs a command (at most [`COMMAND_LIMIT`]); its stdout, or why it failed (with its
/// stderr).
pub fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output_bounded()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A free TCP port on loopback (the port is released again; a tiny race is acceptable on a
/// test machine, and binding failures show up as clear errors).
pub fn free_tcp_port() -> u16 {
    ports::free_port()
}

/// A free UDP port on loopback, for a cosigner's QUIC listener.
pub fn free_udp_port() -> u16 {
    ports::free_port()
}

/// A fresh validator key written as a CometBFT `priv_validator_key.json`.
pub struct ValidatorKeyFile {
    pub path: PathBuf,
    pub public_key: [u8; 32],
}

impl ValidatorKeyFile {
    pub fn public_key_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.public_key)
    }
}

/// Writes a fresh key as CometBFT does (`cmtjson.MarshalIndent`: fields in struct order,
/// two-space indent, no trailing newline), so a test can compare a key written back with it
/// byte for byte.
pub fn write_validator_key(dir: &Path) -> ValidatorKeyFile {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let public = key.verifying_key().to_bytes();
    let mut private = key.to_bytes().to_vec();
    private.extend_from_slice(&public);
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = format!(
        "{{\n  \"address\": \"{}\",\n  \"pub_key\": {{\n    \"type\": \"tendermint/PubKeyEd25519\",\n    \"value\": \"{}\"\n  }},\n  \"priv_key\": {{\n    \"type\": \"tendermint/PrivKeyEd25519\",\n    \"value\": \"{}\"\n  }}\n}}",
        hex::encode_upper(&Sha256::digest(public)[..20]),
        b64.encode(public),
        b64.encode(&private)
    );
    let path = dir.join("priv_validator_key.json");
    std::fs::write(&path, text).unwrap();
    ValidatorKeyFile {
        path,
        public_key: public,
    }
}

/// A running child process, killed (SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log_path: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with its output appended to `<log_dir>/<name>.log`, so that a process
    /// restarted under the same name keeps its history.
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> Proc {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log_path,
        }
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        reap(&mut self.child, &self.name);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, limit)
    }

    /// Sends `signal` (a `kill` name: `STOP`, `CONT`, …) to the process. A stopped process
    /// keeps its sockets but answers nothing, as a hung host does; SIGKILL on drop still
    /// ends it.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        if let Err(why) = run_cmd("kill", &[&format!("-{signal}"), &pid]) {
            panic!("signal {signal} to {}: {why}", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `split-key` for cosigners at free loopback ports and returns the cosigner
/// directories.
pub fn split_key(
    dir: &Path,
    key: &Path,
    threshold: u16,
    shares: u16,
    nodes: &[String],
    chains: &[&str],
    protocol: &str,
) -> Vec<PathBuf> {
    let cosigners: Vec<String> = (0..shares)
        .map(|_| format!("127.0.0.1:{}", free_udp_port()))
        .collect();
    split_key_at(dir, key, threshold, &cosigners, nodes, chains, protocol)
}

/// Runs `split-key` for cosigners at `cosigners` (their addresses as their peers dial them)
/// and returns the cosigner directories.
pub fn split_key_at(
    dir: &Path,
    key: &Path,
    threshold: u16,
    cosigners: &[String],
    nodes: &[String],
    chains: &[&str],
    protocol: &str,
) -> Vec<PathBuf> {
    let out = dir.join("cosigners");
    let mut cmd = Command::new(&bins().split_key);
    cmd.arg(key)
        .args(["--threshold", &threshold.to_string()])
        .args(["--shares", &cosigners.len().to_string()])
        .arg("--out")
        .arg(&out)
        .args(["--protocol", protocol]);
    for node in nodes {
        cmd.args(["--node", node]);
    }
    for chain in chains {
        cmd.args(["--chain-id", chain]);
    }
    for address in cosigners {
        cmd.args(["--cosigner", address]);
    }
    let output = cmd.output_bounded().expect("run split-key");
    assert!(
        output.status.success(),
        "split-key failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (1..=cosigners.len())
        .map(|i| out.join(format!("cosigner-{i}")))
        .collect()
}

/// Runs `cosigner state init` for `chain` in a cosigner directory (for a key that never
/// signed on it: every test key is new).
pub fn state_init(cosigner_dir: &Path, chain: &str) -> Output {
    Command::new(&bins().cosigner)
        .args(["state", "init", "--config"])
        .arg(cosigner_dir.join("cosigner.toml"))
        .args(["--chain-id", chain])
        .output_bounded()
        .expect("run cosigner state init")
}

/// Starts `cosigner start` for a cosigner directory.
pub fn start_cosigner(cosigner_dir: &Path, name: &str, log_dir: &Path) -> Proc {
    start_cosigner_env(cosigner_dir, name, log_dir, &[])
}

/// Starts `cosigner start` with extra environment variables.
pub fn start_cosigner_env(
    cosigner_dir: &Path,
    name: &str,
    log_dir: &Path,
    env: &[(&str, &str)],
) -> Proc {
    let mut cmd = Command::new(&bins().cosigner);
    cmd.arg("start")
        .arg("--config")
        .arg(cosigner_dir.join("cosigner.toml"))
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Appends, so a restarted cosigner's log keeps its history.
    Proc::spawn(name, &mut cmd, log_dir)
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether this cosigner currently serves the node: its log's last node event is a connection.
pub fn serves_node(proc: &Proc) -> bool {
    let log = proc.log();
    match (
        log.rfind("connected to node"),
        log.rfind("node connection ended"),
    ) {
        (Some(at), ended) => ended.is_none_or(|e| at > e),
        (None, _) => false,
    }
}

/// The cosigner (by index into `procs`) that currently serves the node.
pub fn connected_cosigner(procs: &[Proc]) -> Option<usize> {
    procs.iter().position(serves_node)
}

/// A temporary directory for one test, removed when dropped (`TempDir::keep` keeps it).
pub fn test_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("cosigner-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// Waits until `proc`'s log contains `needle` `count` times, at most `limit`; whether it did.
/// The log is the cosigner's own report of what it did, so this waits on a signal.
pub fn wait_for_log(proc: &Proc, needle: &str, count: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if proc.log().matches(needle).count() >= count {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
