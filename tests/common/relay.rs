//! `scripts/udp_relay.py` in front of every cosigner of a loopback cluster: peers dial the
//! relay's front port for a cosigner, which listens on its own port behind it, and the relay
//! drops or delays a cosigner's datagrams on command. Needs only `python3`: no root, no netem.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::reap;

/// How long the relay may take to report that it is ready or applied a change.
const RELAY_WAIT: Duration = Duration::from_secs(10);

/// The running relay; killed when dropped.
pub struct Relay {
    child: Child,
    /// The relay's stdout lines, read on a thread so that every wait for its word is
    /// bounded. (In a mutex only so that a cluster holding a relay can be shared.)
    lines: Mutex<Receiver<String>>,
    control: PathBuf,
    seq: u64,
}

impl Relay {
    /// Starts the relay for `(front, target)` port pairs, cosigner 1 first, and waits until
    /// it has bound every front; or says why it cannot run (a missing prerequisite).
    pub fn start(dir: &Path, ports: &[(u16, u16)]) -> Result<Relay, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/udp_relay.py");
        let control = dir.join("relay-control");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg("--control").arg(&control);
        for (front, target) in ports {
            cmd.arg(format!("{front}:{target}"));
        }
        let stderr = std::fs::File::create(dir.join("relay.err")).map_err(|e| e.to_string())?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run python3 for the relay: {e}"))?;
        let stdout = child.stdout.take().expect("relay stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut relay = Relay {
            child,
            lines: Mutex::new(lines),
            control,
            seq: 0,
        };
        relay.wait_for("ready");
        Ok(relay)
    }

    /// Reads the relay's output until a line starts with `prefix` (at most [`RELAY_WAIT`]).
    fn wait_for(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + RELAY_WAIT;
        let lines = self.lines.get_mut().expect("relay lines");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(line) => assert!(!line.starts_with("rejected"), "relay: {line}"),
                Err(e) => panic!(
                    "the relay did not say `{prefix}` ({e}); exit status {:?}",
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Replaces the relay's faults (control file lines such as `delay 2 100`, `drop 1`) and
    /// waits until it has applied them.
    pub fn set_faults(&mut self, faults: &str) {
        self.seq += 1;
        let staged = self.control.with_extension("tmp");
        std::fs::write(&staged, format!("seq {}\n{faults}\n", self.seq)).unwrap();
        // Renamed into place: the relay never reads a half-written file.
        std::fs::rename(&staged, &self.control).unwrap();
        let line = self.wait_for(&format!("applied seq {}:", self.seq));
        eprintln!("relay: {line}");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        reap(&mut self.child, "the relay");
    }
}
