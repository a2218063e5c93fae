//! Test harness for end-to-end tests: builds and spawns the real `split-key`, `cosigner` and
//! `validator-sim` binaries on loopback, with free ports and per-test directories.
//!
//! Every process is killed when its handle drops, so a failing test leaves nothing running.
//! Process output goes to log files in the test directory; a failing assertion can print
//! them with [`Proc::log`].
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod cluster;
pub mod logs;
pub mod ports;

use base64::Engine;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};

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
        let status = build
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
            .status()
            .expect("run cargo build");
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
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `split-key` and returns the cosigner directories.
pub fn split_key(
    dir: &Path,
    key: &Path,
    threshold: u16,
    shares: u16,
    nodes: &[String],
    chains: &[&str],
    protocol: &str,
) -> Vec<PathBuf> {
    let out = dir.join("cosigners");
    let mut cmd = Command::new(&bins().split_key);
    cmd.arg(key)
        .args(["--threshold", &threshold.to_string()])
        .args(["--shares", &shares.to_string()])
        .arg("--out")
        .arg(&out)
        .args(["--protocol", protocol]);
    for node in nodes {
        cmd.args(["--node", node]);
    }
    for chain in chains {
        cmd.args(["--chain-id", chain]);
    }
    for _ in 0..shares {
        cmd.args(["--cosigner", &format!("127.0.0.1:{}", free_udp_port())]);
    }
    let output = cmd.output().expect("run split-key");
    assert!(
        output.status.success(),
        "split-key failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (1..=shares)
        .map(|i| out.join(format!("cosigner-{i}")))
        .collect()
}

/// Runs `cosigner state init` for `chain` in a cosigner directory (for a key that never
/// signed on it: every test key is new).
pub fn state_init(cosigner_dir: &Path, chain: &str) -> std::process::Output {
    Command::new(&bins().cosigner)
        .args(["state", "init", "--config"])
        .arg(cosigner_dir.join("cosigner.toml"))
        .args(["--chain-id", chain])
        .output()
        .expect("run cosigner state init")
}

/// Starts `cosigner start` for a cosigner directory.
pub fn start_cosigner(cosigner_dir: &Path, name: &str, log_dir: &Path) -> Proc {
    start_cosigner_env(cosigner_dir, name, log_dir, &[])
}

/// A running validator simulator whose stdout is read line by line for progress.
pub struct Sim {
    pub child: Child,
    pub port: u16,
    pub report_path: PathBuf,
    lines: std::io::Lines<BufReader<ChildStdout>>,
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

    pub fn node_address(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Waits until the simulator has committed `height` (of any chain).
    pub fn wait_for_height(&mut self, height: u64) {
        self.wait_for_line(&format!("height {height} committed"));
    }

    /// Reads the simulator's output until a line contains `needle`; returns that line.
    /// Panics (with everything read so far) if the simulator exits first.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        for line in self.lines.by_ref() {
            let line = line.expect("read sim stdout");
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        panic!(
            "validator-sim exited before printing `{needle}`; output:\n{}",
            self.seen.join("\n")
        );
    }

    /// Waits for the simulator to finish (bounded) and returns its JSON report and output.
    pub fn finish(mut self, limit: Duration) -> (serde_json::Value, String) {
        let deadline = Instant::now() + limit;
        for line in self.lines.by_ref() {
            self.seen.push(line.unwrap_or_default());
            if Instant::now() > deadline {
                break;
            }
        }
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = self.seen.join("\n");
        assert!(
            status.is_some(),
            "validator-sim did not finish in time:\n{output}"
        );
        let report = std::fs::read_to_string(&self.report_path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null);
        (report, output)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The numbers of a simulator report that tests assert on.
pub struct Outcome {
    pub report: serde_json::Value,
    pub output: String,
}

impl Outcome {
    pub fn count(&self, field: &str) -> u64 {
        self.report[field].as_u64().unwrap_or(u64::MAX)
    }

    pub fn passed(&self) -> u64 {
        self.count("passed")
    }

    pub fn failed(&self) -> u64 {
        self.count("failed")
    }

    pub fn double_signs(&self) -> u64 {
        self.count("double_signs")
    }

    /// Refusal descriptions (RemoteSignerError texts) and how often each came.
    pub fn refusals(&self) -> Vec<(String, u64)> {
        self.report["refusals"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn refusals_containing(&self, needle: &str) -> u64 {
        self.refusals()
            .iter()
            .filter(|(k, _)| k.contains(needle))
            .map(|(_, n)| n)
            .sum()
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Sim {
    /// Finishes the run (at most two minutes) and returns what it reported.
    pub fn outcome(self) -> Outcome {
        let (report, output) = self.finish(Duration::from_secs(120));
        Outcome { report, output }
    }
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

/// A temporary directory for one test, kept (and printed) if the test fails.
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

impl Outcome {
    /// Signer connections the simulator accepted.
    pub fn connections_accepted(&self) -> u64 {
        self.report["connections"]["accepted"].as_u64().unwrap_or(0)
    }
}

impl Sim {
    /// Starts the simulator listening on `listen` (e.g. a bridge address in a namespace
    /// test); `port` is its port, `report_path` where its JSON report goes.
    pub fn start_listen(
        listen: &str,
        port: u16,
        report_path: &Path,
        protocol: &str,
        args: &[&str],
    ) -> Sim {
        let mut child = Command::new(&bins().validator_sim)
            .args(["--listen", listen])
            .args(["--protocol", protocol])
            .arg("--json")
            .arg(report_path)
            .arg("--progress")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn validator-sim");
        let stdout = child.stdout.take().expect("sim stdout");
        Sim {
            child,
            port,
            report_path: report_path.to_path_buf(),
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }
}

// ---- Disk faults: a small ext4 filesystem on a loop device (root only) ----

/// Runs a command; its stdout, or why it failed (with its stderr).
pub fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
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

/// Why the disk-fault tests cannot run on this machine, or `None` if they can. They mount
/// filesystems (root, loop devices, `mkfs.ext4`, `e2fsck`) and shut one down with an ioctl
/// that only `python3` can issue without unsafe code here.
pub fn disk_faults_unavailable() -> Option<String> {
    let uid = run_cmd("id", &["-u"]).unwrap_or_default();
    if uid.trim() != "0" {
        return Some("needs root (mount -o loop)".into());
    }
    for (program, args) in [
        ("mkfs.ext4", &["-V"][..]),
        ("e2fsck", &["-V"][..]),
        ("losetup", &["--version"][..]),
        ("python3", &["-c", "import fcntl, struct"][..]),
    ] {
        if let Err(why) = run_cmd(program, args) {
            return Some(format!("needs {program} ({why})"));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("needs loop devices (/dev/loop-control is missing)".into());
    }
    None
}

/// An ext4 filesystem in an image file, loop-mounted on a directory. Dropping it unmounts
/// it (lazily if something still holds it open), detaches its loop device and removes the
/// image, also when the test panics; declare it after the test directory and before the
/// processes that use it, so those are killed first and the directory removed last.
pub struct LoopFs {
    pub image: PathBuf,
    pub mount_point: PathBuf,
    mounted: bool,
}

impl LoopFs {
    /// Creates a `size_mib` MiB ext4 image at `image` and mounts it on `mount_point` (which
    /// must exist), mode 0700 like a cosigner's state directory. An error says why, for
    /// the caller to skip the test with.
    pub fn mount(image: &Path, mount_point: &Path, size_mib: u64) -> Result<LoopFs, String> {
        let file = std::fs::File::create(image).map_err(|e| format!("create image: {e}"))?;
        file.set_len(size_mib << 20)
            .map_err(|e| format!("size image: {e}"))?;
        drop(file);
        let image_arg = image.to_str().ok_or("image path is not UTF-8")?;
        run_cmd("mkfs.ext4", &["-q", "-F", image_arg])?;
        let mut fs = LoopFs {
            image: image.to_path_buf(),
            mount_point: mount_point.to_path_buf(),
            mounted: false,
        };
        fs.remount()?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(mount_point, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", mount_point.display()))?;
        Ok(fs)
    }

    fn mount_arg(&self) -> Result<&str, String> {
        self.mount_point
            .to_str()
            .ok_or_else(|| "mount point is not UTF-8".into())
    }

    /// Mounts the image again (after [`LoopFs::unmount`]).
    pub fn remount(&mut self) -> Result<(), String> {
        let image = self.image.to_str().ok_or("image path is not UTF-8")?;
        run_cmd("mount", &["-o", "loop", image, self.mount_arg()?])?;
        self.mounted = true;
        Ok(())
    }

    /// Makes every later write, fsync and open on the filesystem fail with EIO, as a dying
    /// disk does, file descriptors already open included: `EXT4_IOC_SHUTDOWN` with
    /// `EXT4_GOING_FLAGS_NOLOGFLUSH` (the journal is not flushed either).
    pub fn shut_down(&self) -> Result<(), String> {
        const SCRIPT: &str = "import os, fcntl, struct, sys\n\
             fd = os.open(sys.argv[1], os.O_RDONLY)\n\
             fcntl.ioctl(fd, 0x8004587D, struct.pack('I', 2))\n";
        run_cmd("python3", &["-c", SCRIPT, self.mount_arg()?]).map(|_| ())
    }

    /// Unmounts (the "repair" starts with taking the disk offline).
    pub fn unmount(&mut self) -> Result<(), String> {
        run_cmd("umount", &[self.mount_arg()?])?;
        self.mounted = false;
        Ok(())
    }

    /// Runs `e2fsck -fy` on the unmounted image; its report. Exit codes 1 and 2 mean errors
    /// were found and corrected, which is what a shut-down filesystem may need.
    pub fn fsck(&self) -> Result<String, String> {
        assert!(!self.mounted, "fsck of a mounted filesystem");
        let image = self.image.to_str().ok_or("image path is not UTF-8")?;
        let out = Command::new("e2fsck")
            .args(["-fy", image])
            .output()
            .map_err(|e| format!("e2fsck: {e}"))?;
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0..=2) => Ok(report),
            _ => Err(format!("e2fsck {image}: {}: {report}", out.status)),
        }
    }

    /// Fills the filesystem: writes `<mount>/filler` until the disk reports ENOSPC, then
    /// checks that not even one more block can be written. Returns the bytes written.
    pub fn fill(&self) -> Result<u64, String> {
        use std::io::Write;
        let enospc = |e: &std::io::Error| e.raw_os_error() == Some(28);
        let path = self.mount_point.join("filler");
        let mut file = std::fs::File::create(&path).map_err(|e| format!("filler: {e}"))?;
        let mut written = 0u64;
        // Large writes first, then single blocks to take the remainder.
        for chunk in [1usize << 20, 4096] {
            let buf = vec![0xa5u8; chunk];
            loop {
                match file.write(&buf) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) if enospc(&e) => break,
                    Err(e) => return Err(format!("filler: {e}")),
                }
            }
        }
        file.sync_all().map_err(|e| format!("fsync filler: {e}"))?;
        if self.is_full()? {
            Ok(written)
        } else {
            Err(format!(
                "{} is not full after {written} bytes",
                self.mount_point.display()
            ))
        }
    }

    /// Whether not even one more block can be written: a probe file's first 4 KiB fail
    /// with ENOSPC. The probe is removed again.
    pub fn is_full(&self) -> Result<bool, String> {
        use std::io::Write;
        let enospc = |e: &std::io::Error| e.raw_os_error() == Some(28);
        let probe = self.mount_point.join("probe");
        let full = match std::fs::File::create(&probe) {
            Err(e) if enospc(&e) => true,
            Err(e) => return Err(format!("probe: {e}")),
            Ok(mut f) => match f.write_all(&[0u8; 4096]).and_then(|()| f.sync_all()) {
                Err(e) if enospc(&e) => true,
                Err(e) => return Err(format!("probe: {e}")),
                Ok(()) => false,
            },
        };
        let _ = std::fs::remove_file(&probe);
        Ok(full)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let Ok(mount) = self.mount_arg().map(str::to_string) else {
                return;
            };
            if run_cmd("umount", &[&mount]).is_err() {
                // Still held open (a process not yet reaped): detach now, free when closed.
                let _ = run_cmd("umount", &["-l", &mount]);
            }
        }
        if let Some(image) = self.image.to_str() {
            // `mount -o loop` sets autoclear, so this normally finds nothing; it is for a
            // loop device left behind by an interrupted mount or a lazy unmount.
            if let Ok(list) = run_cmd("losetup", &["-j", image]) {
                for device in list.lines().filter_map(|l| l.split(':').next()) {
                    let _ = run_cmd("losetup", &["-d", device]);
                }
            }
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

impl Proc {
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
