//! The one cluster fixture: a key split by the real `split-key`, its cosigners started and
//! killed as real processes, and simulators playing the nodes they serve.
//!
//! [`Cluster::new`] is a loopback cluster serving one node. [`Cluster::builder`] sets up the
//! rest: several nodes, nodes and cosigners at other addresses (network namespaces), cosigners
//! started through a command prefix (`ip netns exec NS`), the UDP relay in front of every
//! cosigner, and state directories on loop-mounted filesystems. What a builder needs from
//! the machine (the relay's `python3`, root and loop devices) is checked in
//! [`ClusterBuilder::build`], whose error the caller hands to
//! [`require!`](crate::common::require).
//!
//! A test either lets the cluster hold its processes ([`Cluster::start`], [`Cluster::kill`],
//! [`Cluster::running`]) or holds them itself ([`Cluster::spawn`]); every start gets a log of
//! its own in the test directory.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::logs::{signings, Signing};
use super::relay::Relay;
use super::*;

/// The chain every cluster signs for.
pub const CHAIN: &str = "test-chain";

/// What a [`Cluster`] is to be; see the module documentation.
pub struct ClusterBuilder {
    name: String,
    threshold: u16,
    shares: u16,
    protocol: String,
    nodes: Option<Vec<(String, u16)>>,
    cosigners: Option<Vec<String>>,
    launchers: Option<Vec<Vec<String>>>,
    relay: bool,
    loop_mount_mib: Option<u64>,
}

impl ClusterBuilder {
    /// The privval protocol version (default `v0.38`).
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = protocol.to_string();
        self
    }

    /// Nodes on loopback at these ports (default: one at a free port); every cosigner
    /// dials each of them.
    pub fn node_ports(self, ports: &[u16]) -> Self {
        self.nodes(
            ports
                .iter()
                .map(|&p| ("127.0.0.1".to_string(), p))
                .collect(),
        )
    }

    /// Nodes at these `(ip, port)` addresses, where their simulators listen.
    pub fn nodes(mut self, nodes: Vec<(String, u16)>) -> Self {
        self.nodes = Some(nodes);
        self
    }

    /// The cosigners' addresses as their peers dial them (default: free loopback ports).
    pub fn cosigner_addresses(mut self, addresses: Vec<String>) -> Self {
        self.cosigners = Some(addresses);
        self
    }

    /// Starts cosigner `i` as `prefixes[i]` followed by the `cosigner` command (e.g.
    /// `ip netns exec NS`).
    pub fn launch_with(mut self, prefixes: Vec<Vec<String>>) -> Self {
        self.launchers = Some(prefixes);
        self
    }

    /// Puts `scripts/udp_relay.py` in front of every cosigner: peers dial the relay's front
    /// port for a cosigner, which listens on a port of its own behind it. Needs `python3`.
    pub fn behind_relay(mut self) -> Self {
        self.relay = true;
        self
    }

    /// Puts every cosigner's state directory on an ext4 filesystem of its own, `size_mib`
    /// MiB, loop-mounted (an empty state file is created on it, as an operator would for a
    /// key that never signed). Needs root, loop devices, `mkfs.ext4`, `e2fsck`, `python3`.
    pub fn state_on_loop_mounts(mut self, size_mib: u64) -> Self {
        self.loop_mount_mib = Some(size_mib);
        self
    }

    /// Splits the key and sets everything up; `Err` says which prerequisite is missing.
    /// Anything else that goes wrong fails the test.
    pub fn build(self) -> Result<Cluster, String> {
        if self.loop_mount_mib.is_some() {
            if let Some(why) = disk_faults_unavailable() {
                return Err(why);
            }
        }
        let dir = test_dir(&self.name);
        let key = write_validator_key(dir.path());
        let nodes = self
            .nodes
            .unwrap_or_else(|| vec![("127.0.0.1".to_string(), free_tcp_port())]);
        let node_urls: Vec<String> = nodes
            .iter()
            .map(|(ip, port)| format!("tcp://{ip}:{port}"))
            .collect();
        // With the relay, peers know each cosigner by its front; the cosigner is moved to
        // listen behind it once split.
        let relay_ports: Vec<(u16, u16)> = match self.relay {
            true => (0..self.shares)
                .map(|_| (free_udp_port(), free_udp_port()))
                .collect(),
            false => Vec::new(),
        };
        let addresses = match (&self.cosigners, self.relay) {
            (Some(_), true) => panic!("a cluster behind the relay has the relay's addresses"),
            (Some(addresses), false) => addresses.clone(),
            (None, true) => relay_ports
                .iter()
                .map(|(front, _)| format!("127.0.0.1:{front}"))
                .collect(),
            (None, false) => (0..self.shares)
                .map(|_| format!("127.0.0.1:{}", free_udp_port()))
                .collect(),
        };
        assert_eq!(addresses.len(), usize::from(self.shares));
        let cosigner_dirs = split_key_at(
            dir.path(),
            &key.path,
            self.threshold,
            &addresses,
            &node_urls,
            &[CHAIN],
            &self.protocol,
        );
        let relay = match self.relay {
            true => {
                for (dir, (front, target)) in cosigner_dirs.iter().zip(&relay_ports) {
                    let path = dir.join("cosigner.toml");
                    let config = std::fs::read_to_string(&path).unwrap();
                    let from = format!("listen = \"127.0.0.1:{front}\"");
                    assert!(config.contains(&from), "no `{from}` in {}", path.display());
                    let moved = config.replace(&from, &format!("listen = \"127.0.0.1:{target}\""));
                    std::fs::write(&path, moved).unwrap();
                }
                Some(Relay::start(dir.path(), &relay_ports)?)
            }
            false => None,
        };
        let mut disks = Vec::new();
        if let Some(size_mib) = self.loop_mount_mib {
            for (i, cosigner) in cosigner_dirs.iter().enumerate() {
                let image = dir.path().join(format!("disk-{}.img", i + 1));
                disks.push(LoopFs::mount(&image, &cosigner.join("state"), size_mib)?);
                // The new disk hides the state file split-key wrote; the key never signed,
                // so an operator would create an empty one on the new disk the same way.
                let out = state_init(cosigner, CHAIN);
                assert!(
                    out.status.success(),
                    "state init: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let shares = usize::from(self.shares);
        let launchers = self.launchers.unwrap_or_else(|| vec![Vec::new(); shares]);
        assert_eq!(launchers.len(), shares);
        Ok(Cluster {
            procs: (0..shares).map(|_| None).collect(),
            relay,
            disks,
            key,
            cosigner_dirs,
            nodes,
            protocol: self.protocol,
            launchers,
            starts: (0..shares).map(|_| AtomicU32::new(0)).collect(),
            dir,
        })
    }
}

/// A split key and its cosigners, serving one or more simulated nodes.
///
/// Field order is drop order: the cosigners are killed before the relay they talk through
/// stops and before their filesystems are unmounted, and those are unmounted before the
/// test directory (holding the images and the mount points) is removed, also when a test
/// panics.
pub struct Cluster {
    /// The cosigners the cluster holds (see [`Cluster::start`]), by index.
    pub procs: Vec<Option<Proc>>,
    pub relay: Option<Relay>,
    pub disks: Vec<LoopFs>,
    pub key: ValidatorKeyFile,
    pub cosigner_dirs: Vec<PathBuf>,
    /// The nodes' `(ip, port)`, where their simulators listen.
    pub nodes: Vec<(String, u16)>,
    pub protocol: String,
    launchers: Vec<Vec<String>>,
    /// How often each cosigner was started, to name its logs.
    starts: Vec<AtomicU32>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// A `threshold`-of-`shares` loopback cluster serving one node, speaking `protocol`.
    pub fn new(name: &str, threshold: u16, shares: u16, protocol: &str) -> Cluster {
        Cluster::builder(name, threshold, shares)
            .protocol(protocol)
            .build()
            .unwrap_or_else(|why| panic!("a loopback cluster needs nothing more: {why}"))
    }

    /// A loopback cluster of directories made elsewhere (by a key ceremony, see
    /// [`crate::common::ceremony`]), serving one node at `node_port`, whose validator key is
    /// `public_key`. No key file exists: `key.path` is empty.
    pub fn adopt(
        dir: tempfile::TempDir,
        cosigner_dirs: Vec<PathBuf>,
        public_key: [u8; 32],
        node_port: u16,
        protocol: &str,
    ) -> Cluster {
        let shares = cosigner_dirs.len();
        Cluster {
            procs: (0..shares).map(|_| None).collect(),
            relay: None,
            disks: Vec::new(),
            key: ValidatorKeyFile {
                path: PathBuf::new(),
                public_key,
            },
            cosigner_dirs,
            nodes: vec![("127.0.0.1".to_string(), node_port)],
            protocol: protocol.to_string(),
            launchers: vec![Vec::new(); shares],
            starts: (0..shares).map(|_| AtomicU32::new(0)).collect(),
            dir,
        }
    }

    /// Takes in a cosigner directory made after the split (a cosigner added by `cosigner
    /// enroll` and `cosigner join`); its index is the next one.
    pub fn add_cosigner(&mut self, dir: PathBuf) -> usize {
        self.cosigner_dirs.push(dir);
        self.procs.push(None);
        self.launchers.push(Vec::new());
        self.starts.push(AtomicU32::new(0));
        self.cosigner_dirs.len() - 1
    }

    /// A cluster to be set up; see [`ClusterBuilder`].
    pub fn builder(name: &str, threshold: u16, shares: u16) -> ClusterBuilder {
        ClusterBuilder {
            name: name.to_string(),
            threshold,
            shares,
            protocol: "v0.38".to_string(),
            nodes: None,
            cosigners: None,
            launchers: None,
            relay: false,
            loop_mount_mib: None,
        }
    }

    /// The test directory, where every log goes.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The first node's port.
    pub fn node_port(&self) -> u16 {
        self.nodes[0].1
    }

    /// Starts cosigner `index` (0-based) and returns it, for the caller to hold.
    pub fn spawn(&self, index: usize) -> Proc {
        self.spawn_with_env(index, &[])
    }

    /// [`Cluster::spawn`] with extra environment variables.
    pub fn spawn_with_env(&self, index: usize, env: &[(&str, &str)]) -> Proc {
        // A restarted cosigner gets a log of its own.
        let start = self.starts[index].fetch_add(1, Ordering::SeqCst);
        let name = format!("cosigner-{}-start-{start}", index + 1);
        let launcher = &self.launchers[index];
        let mut cmd = match launcher.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&bins().cosigner);
                cmd
            }
            None => Command::new(&bins().cosigner),
        };
        cmd.arg("start")
            .arg("--config")
            .arg(self.config(index))
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn(&name, &mut cmd, self.log_dir())
    }

    /// Starts every cosigner, for the caller to hold.
    pub fn spawn_all(&self) -> Vec<Proc> {
        (0..self.cosigner_dirs.len())
            .map(|i| self.spawn(i))
            .collect()
    }

    /// Starts cosigner `index` (0-based), held by the cluster.
    pub fn start(&mut self, index: usize) {
        self.procs[index] = Some(self.spawn(index));
    }

    pub fn start_all(&mut self) {
        for i in 0..self.procs.len() {
            self.start(i);
        }
    }

    /// Kills (SIGKILL) cosigner `index` and reaps it, so that its files are closed.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut p) = self.procs[index].take() {
            p.kill();
        }
    }

    /// Cosigner `index`, which the cluster holds running.
    pub fn proc(&self, index: usize) -> &Proc {
        self.procs[index].as_ref().expect("cosigner is running")
    }

    pub fn running(&self) -> Vec<&Proc> {
        self.procs.iter().flatten().collect()
    }

    /// The index of the cosigner that currently serves the node.
    pub fn connected(&self) -> usize {
        self.procs
            .iter()
            .position(|p| p.as_ref().is_some_and(serves_node))
            .expect("some cosigner serves the node")
    }

    /// A simulator for the first node, for [`CHAIN`], expecting the validator's key, with
    /// extra arguments.
    pub fn sim(&self, args: &[&str]) -> Sim {
        self.sim_for(0, args)
    }

    /// [`Cluster::sim`] for node `node`.
    pub fn sim_for(&self, node: usize, args: &[&str]) -> Sim {
        let (ip, port) = &self.nodes[node];
        let pubkey = self.key.public_key_base64();
        let mut all = vec!["--chain-id", CHAIN, "--expect-pubkey", &pubkey];
        all.extend_from_slice(args);
        let report = self.dir.path().join(format!("sim-{port}.json"));
        Sim::start_listen(
            &format!("{ip}:{port}"),
            *port,
            &report,
            &self.protocol,
            &all,
        )
    }

    pub fn config(&self, index: usize) -> PathBuf {
        self.cosigner_dirs[index].join("cosigner.toml")
    }

    pub fn state_dir(&self, index: usize) -> PathBuf {
        self.cosigner_dirs[index].join("state")
    }

    /// Cosigner `index`'s state file for [`CHAIN`].
    pub fn state_file(&self, index: usize) -> PathBuf {
        self.state_dir(index).join(format!("{CHAIN}.state"))
    }

    /// The log files of this test, sorted.
    fn log_files(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read test dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        paths
    }

    /// Every signing any cosigner coordinated, from every log of this test (all runs).
    pub fn signings(&self) -> Vec<Signing> {
        self.log_files()
            .iter()
            .flat_map(|path| signings(&std::fs::read_to_string(path).unwrap_or_default()))
            .collect()
    }

    /// Every log of this test, for a failure message.
    pub fn logs(&self) -> String {
        self.log_files()
            .iter()
            .map(|p| {
                format!(
                    "--- {} ---\n{}\n",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect()
    }

    /// Asserts that at least ten signings came after `since` (a log timestamp) and none of
    /// them used cosigner `victim` (0-based), which lost something (`what`: "its disk died");
    /// returns every signing.
    pub fn signed_on_without(&self, victim: usize, since: &str, what: &str) -> Vec<Signing> {
        let signings = self.signings();
        let after: Vec<&Signing> = signings.iter().filter(|s| s.at.as_str() > since).collect();
        assert!(
            after.len() >= 10,
            "too few signings after {since}:\n{}",
            self.logs()
        );
        for s in &after {
            assert!(
                !s.participants.contains(&(victim + 1)),
                "cosigner {} took part after {what}: {s:?}",
                victim + 1
            );
        }
        signings
    }
}
