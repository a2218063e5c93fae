//! The one cluster fixture: a key split by the real `split-key`, its cosigners started and
//! killed as real processes, and simulators playing the node they serve.

use std::path::PathBuf;

use super::*;

/// A split key and its running cosigners, all serving one simulated node.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub key: ValidatorKeyFile,
    pub cosigner_dirs: Vec<PathBuf>,
    pub procs: Vec<Option<Proc>>,
    starts: Vec<u32>,
    pub node_port: u16,
    pub protocol: String,
}

impl Cluster {
    pub fn new(name: &str, threshold: u16, shares: u16, protocol: &str) -> Cluster {
        let dir = test_dir(name);
        let key = write_validator_key(dir.path());
        let node_port = free_tcp_port();
        let cosigner_dirs = split_key(
            dir.path(),
            &key.path,
            threshold,
            shares,
            &[format!("tcp://127.0.0.1:{node_port}")],
            &["test-chain"],
            protocol,
        );
        let procs = (0..shares).map(|_| None).collect();
        Cluster {
            dir,
            key,
            cosigner_dirs,
            procs,
            starts: vec![0; shares as usize],
            node_port,
            protocol: protocol.to_string(),
        }
    }

    pub fn start(&mut self, index: usize) {
        // A restarted cosigner gets a log of its own.
        let starts = self.starts[index];
        self.starts[index] += 1;
        let name = format!("cosigner-{}-start-{starts}", index + 1);
        self.procs[index] = Some(start_cosigner(
            &self.cosigner_dirs[index],
            &name,
            self.dir.path(),
        ));
    }

    pub fn start_all(&mut self) {
        for i in 0..self.procs.len() {
            self.start(i);
        }
    }

    pub fn kill(&mut self, index: usize) {
        if let Some(mut p) = self.procs[index].take() {
            p.kill();
        }
    }

    pub fn sim(&self, args: &[&str]) -> Sim {
        let pubkey = self.key.public_key_base64();
        let mut all = vec!["--chain-id", "test-chain", "--expect-pubkey", &pubkey];
        all.extend_from_slice(args);
        Sim::start_on(self.dir.path(), self.node_port, &self.protocol, &all)
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
}
