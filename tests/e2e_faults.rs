//! End to end under real faults: the real `cosigner` processes of a threshold cluster
//! against `validator-sim`, with cosigners killed (SIGKILL) and restarted at chosen points,
//! a coordinator that loses its quorum, two sentry nodes, and damaged state files. Every
//! run must end with zero double signs; most must end with every request signed.
//!
//! The basic cluster cases (2-of-3, 3-of-5, one cosigner killed, conflicts, a restart) are
//! in `e2e_cluster.rs`; this file is about faults.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const CHAIN: &str = "test-chain";
const PROTOCOL: &str = "v0.38";

/// A split cluster: its directory, the cosigner directories and the validator key.
struct Split {
    dir: tempfile::TempDir,
    cosigners: Vec<PathBuf>,
    key: ValidatorKeyFile,
}

impl Split {
    fn new(name: &str, threshold: u16, shares: u16, node_ports: &[u16]) -> Split {
        let dir = test_dir(name);
        let key = write_validator_key(dir.path());
        let nodes: Vec<String> = node_ports
            .iter()
            .map(|p| format!("tcp://127.0.0.1:{p}"))
            .collect();
        let cosigners = split_key(
            dir.path(),
            &key.path,
            threshold,
            shares,
            &nodes,
            &[CHAIN],
            PROTOCOL,
        );
        Split {
            dir,
            cosigners,
            key,
        }
    }

    fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts cosigner `i` (0-based); `generation` keeps each run's log apart.
    fn start(&self, i: usize, generation: usize) -> Proc {
        self.start_env(i, generation, &[])
    }

    fn start_env(&self, i: usize, generation: usize, env: &[(&str, &str)]) -> Proc {
        start_cosigner_env(
            &self.cosigners[i],
            &format!("cosigner-{}-run{generation}", i + 1),
            self.log_dir(),
            env,
        )
    }

    fn sim(&self, port: u16, heights: u64, extra: &[&str]) -> Sim {
        let heights = heights.to_string();
        let mut args = vec![
            "--chain-id",
            CHAIN,
            "--heights",
            &heights,
            "--expect-pubkey",
        ];
        let pubkey = self.key.public_key_base64();
        args.push(&pubkey);
        args.extend_from_slice(extra);
        Sim::start_on(self.dir.path(), port, PROTOCOL, &args)
    }
}

fn median_and_worst(gaps: &mut [Duration]) -> (Duration, Duration) {
    gaps.sort();
    (
        gaps.get(gaps.len() / 2).copied().unwrap_or_default(),
        gaps.last().copied().unwrap_or_default(),
    )
}

/// A cosigner that starts alone cannot sign, so it must not take the node: it waits for a
/// quorum before dialing. Once its peers are up, the cluster signs everything.
#[test]
fn a_cosigner_without_quorum_does_not_hold_the_node() {
    let port = free_tcp_port();
    let split = Split::new("alone", 2, 3, &[port]);
    let sim = split.sim(port, 15, &[]);
    let first = split.start(0, 0);
    assert!(
        wait_for_log(
            &first,
            "not dialing: waiting until a quorum",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        first.log()
    );
    // An observation window: nothing is expected to happen in it.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !first.log().contains("connected to node"),
        "a cosigner without quorum took the node:\n{}",
        first.log()
    );
    let others = [split.start(1, 0), split.start(2, 0)];
    let outcome = sim.outcome();
    outcome.assert_clean(&[&first, &others[0], &others[1]]);
    assert!(
        first.log().contains("quorum reachable: dialing"),
        "{}",
        first.log()
    );
}

/// The coordinator's two peers die: it cannot sign, so it releases the node and stops
/// dialing; when the peers return the cluster signs again, and no request failed.
#[test]
fn a_coordinator_that_loses_its_quorum_gives_way() {
    let port = free_tcp_port();
    let split = Split::new("give-way", 2, 3, &[port]);
    let mut sim = split.sim(port, 30, &["--block-time-ms", "20"]);
    let mut procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    sim.wait_for_height(3);
    let coordinator = connected_cosigner(&procs).expect("a cosigner serves the node");
    let killed_at = Instant::now();
    for (i, p) in procs.iter_mut().enumerate() {
        if i != coordinator {
            p.kill();
        }
    }
    assert!(
        wait_for_log(
            &procs[coordinator],
            "no quorum reachable: giving way",
            1,
            Duration::from_secs(15)
        ),
        "{}",
        procs[coordinator].log()
    );
    let gave_way = killed_at.elapsed();
    assert!(
        wait_for_log(
            &procs[coordinator],
            "node connection ended",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        procs[coordinator].log()
    );
    eprintln!("coordinator gave way {gave_way:?} after losing both peers");
    for (i, p) in procs.iter_mut().enumerate() {
        if i != coordinator {
            *p = split.start(i, 1);
        }
    }
    let outcome = sim.outcome();
    let refs: Vec<&Proc> = procs.iter().collect();
    outcome.assert_clean(&refs);
}

/// Kills whichever cosigner serves the node, five times; the node's retry reaches another
/// cosigner each time. Prints the fail-over gaps.
#[test]
fn coordinator_killed_repeatedly_fails_over() {
    const BLOCK_MS: u64 = 100;
    let port = free_tcp_port();
    let split = Split::new("kill-coordinator", 2, 3, &[port]);
    let mut sim = split.sim(port, 50, &["--block-time-ms", &BLOCK_MS.to_string()]);
    let mut procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    let mut gaps = Vec::new();
    for round in 0..5usize {
        let height = 4 + 8 * round as u64;
        sim.wait_for_height(height);
        let coordinator = connected_cosigner(&procs).expect("a cosigner serves the node");
        procs[coordinator].kill();
        let killed_at = Instant::now();
        // The sim idles BLOCK_MS after a commit: the next height starts after the kill.
        sim.wait_for_height(height + 1);
        gaps.push(
            killed_at
                .elapsed()
                .saturating_sub(Duration::from_millis(BLOCK_MS)),
        );
        procs[coordinator] = split.start(coordinator, round + 1);
    }
    // FAULTS_KEEP=1 keeps the logs of a passing run, to study the gaps.
    if std::env::var_os("FAULTS_KEEP").is_some() {
        let _ = split.dir.keep();
    }
    let (median, worst) = median_and_worst(&mut gaps);
    eprintln!(
        "fail-over gap after a coordinator kill: median {median:?}, worst {worst:?} ({gaps:?})"
    );
    let outcome = sim.outcome();
    let refs: Vec<&Proc> = procs.iter().collect();
    outcome.assert_clean(&refs);
    assert!(worst < Duration::from_secs(10), "fail-over took {worst:?}");
}

/// A participant killed and restarted, then every cosigner killed and restarted at once:
/// signing resumes with no operator action.
#[test]
fn participant_and_whole_cluster_restarts_resume_signing() {
    let port = free_tcp_port();
    let split = Split::new("restarts", 2, 3, &[port]);
    let mut sim = split.sim(port, 30, &["--block-time-ms", "20"]);
    let mut procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    sim.wait_for_height(4);
    let coordinator = connected_cosigner(&procs).expect("a cosigner serves the node");
    let participant = (coordinator + 1) % 3;
    procs[participant].kill();
    sim.wait_for_height(8);
    procs[participant] = split.start(participant, 1);
    sim.wait_for_height(12);
    for p in procs.iter_mut() {
        p.kill();
    }
    procs = (0..3).map(|i| split.start(i, 2)).collect();
    sim.wait_for_height(16);
    let outcome = sim.outcome();
    let refs: Vec<&Proc> = procs.iter().collect();
    outcome.assert_clean(&refs);
}

/// Every cosigner aborts (as kill -9 would end it) the second time it reaches `point` of a
/// signing (a test-only hook, `COSIGNER_TEST_CRASH`); a watcher thread restarts a crashed
/// cosigner at once, without the hook. The node's retries must get valid signatures and
/// nothing may double-sign.
fn crash_at(name: &str, point: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let port = free_tcp_port();
    let split = Arc::new(Split::new(name, 2, 3, &[port]));
    let sim = split.sim(port, 24, &["--block-time-ms", "10"]);
    let plan = format!("{point}:2");
    let crash = [("COSIGNER_TEST_CRASH", plan.as_str())];
    let procs: Arc<Mutex<Vec<Proc>>> = Arc::new(Mutex::new(
        (0..3).map(|i| split.start_env(i, 0, &crash)).collect(),
    ));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (procs, split, done) = (procs.clone(), split.clone(), done.clone());
        std::thread::spawn(move || {
            let mut crashes = 0;
            while !done.load(Ordering::SeqCst) {
                for (i, p) in procs.lock().unwrap().iter_mut().enumerate() {
                    if let Ok(Some(_)) = p.child.try_wait() {
                        assert!(
                            p.log().contains("COSIGNER_TEST_CRASH: aborting"),
                            "cosigner {} exited without the test crash:\n{}",
                            i + 1,
                            p.log()
                        );
                        crashes += 1;
                        *p = split.start(i, crashes);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            crashes
        })
    };
    let outcome = sim.outcome();
    done.store(true, Ordering::SeqCst);
    let crashes = watcher.join().expect("watcher");
    let procs = procs.lock().unwrap();
    outcome.assert_clean(&procs.iter().collect::<Vec<_>>());
    assert!(
        crashes >= 1,
        "nothing crashed at {point}: the test tested nothing"
    );
    eprintln!(
        "{point}: {crashes} crashes, {}",
        outcome.output.lines().last().unwrap_or("")
    );
}

/// Horcrux issue 296: the coordinator dies after its participants released (and persisted)
/// their shares but before the node got the signature. The node's identical retry must be
/// signed by whoever coordinates next; the cluster must not halt.
#[test]
fn coordinator_dies_after_gathering_shares_issue_296() {
    crash_at("issue-296", "coordinator-after-shares");
}

#[test]
fn participant_dies_before_persisting() {
    crash_at("participant-before-persist", "participant-before-persist");
}

#[test]
fn participant_dies_after_persisting_before_releasing() {
    crash_at("participant-after-persist", "participant-after-persist");
}

/// Runs a cluster briefly so state files exist, then damages cosigner 1's state file in
/// `damage` and checks it refuses to start with a message naming the file.
fn damaged_state_stops_start(name: &str, damage: impl Fn(&Path)) {
    let port = free_tcp_port();
    let split = Split::new(name, 2, 3, &[port]);
    let sim = split.sim(port, 3, &[]);
    let procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    sim.outcome()
        .assert_clean(&procs.iter().collect::<Vec<_>>());
    drop(procs);
    let state = split.cosigners[0]
        .join("state")
        .join(format!("{CHAIN}.state"));
    assert!(state.exists(), "no state file at {}", state.display());
    damage(&state);
    let mut restarted = split.start(0, 1);
    let status = restarted
        .wait_exit(Duration::from_secs(20))
        .expect("a cosigner with a damaged state file must exit");
    let log = restarted.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("{CHAIN}.state")) && log.contains("sign state"),
        "the error does not name the state file:\n{log}"
    );
}

#[test]
fn truncated_state_file_stops_the_cosigner_at_start() {
    damaged_state_stops_start("truncated-state", |path| {
        let len = std::fs::metadata(path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(len / 3).unwrap();
    });
}

#[test]
fn corrupted_state_file_stops_the_cosigner_at_start() {
    damaged_state_stops_start("corrupted-state", |path| {
        let mut bytes = std::fs::read(path).unwrap();
        for b in bytes.iter_mut() {
            *b ^= 0x5a;
        }
        std::fs::write(path, bytes).unwrap();
    });
}

/// Two sentry nodes of one validator: every cosigner dials both, and both drive the same
/// chain and heights (same blocks, their own timestamps) at the same time, so requests for
/// one height/round/step reach two coordinators at nearly the same moment, with identical or
/// timestamp-only-different bytes, and at the end conflicting blocks.
///
/// The two simulators are not in lockstep: when one is already past a step, the other's
/// request for it is refused as a regression (what a lagging sentry gets from FilePV too).
/// Anything else that is not a valid signature fails the test, and every conflict must be
/// refused.
#[test]
fn two_sentries_no_double_sign() {
    const HEIGHTS: u64 = 30;
    let ports = [free_tcp_port(), free_tcp_port()];
    let split = Split::new("sentries", 2, 3, &ports);
    let sims: Vec<Sim> = ports
        .iter()
        .map(|&p| split.sim(p, HEIGHTS, &["--block-time-ms", "20", "--conflicts", "2"]))
        .collect();
    let procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    let outcomes: Vec<Outcome> = sims.into_iter().map(Sim::outcome).collect();
    let logs: String = procs
        .iter()
        .map(|p| format!("--- {} ---\n{}", p.name, p.log()))
        .collect();
    for (i, o) in outcomes.iter().enumerate() {
        eprintln!(
            "sentry {i}: passed {} failed {} refusals {:?}",
            o.passed(),
            o.failed(),
            o.refusals()
        );
        assert_eq!(o.double_signs(), 0, "sentry {i}:\n{}", o.output);
        assert_eq!(
            o.report["by_type"]["conflict"]["passed"], 2,
            "sentry {i}: a conflict was not refused:\n{}",
            o.output
        );
        // Every failure is a refusal for a step the validator has already passed.
        let failures = o.report["failures"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let unexpected: u64 = failures
            .iter()
            .filter(|(k, _)| k.as_str() != "unexpected_refusal")
            .map(|(_, v)| v.as_u64().unwrap_or(0))
            .sum();
        assert_eq!(unexpected, 0, "sentry {i}:\n{}\n{logs}", o.output);
        let regressions: u64 = o
            .refusals()
            .iter()
            .filter(|(k, _)| k.contains("regression"))
            .map(|(_, n)| n)
            .sum();
        // Conflicts are refused as conflicts and count as passed; a failure must be a
        // regression refusal.
        assert!(
            o.failed() <= regressions,
            "sentry {i}: a failure that is not a regression:\n{}",
            o.output
        );
        // A sentry that falls behind has its requests for passed steps refused until it
        // catches up, so only a floor is certain: both get signatures throughout.
        assert!(
            o.passed() >= HEIGHTS,
            "sentry {i} got too few signatures:\n{}",
            o.output
        );
    }
}

// ---- Partitions and slow links: network namespaces (root only) ----

/// One cosigner per network namespace, all on a bridge in the test's namespace, where the
/// simulator listens. Torn down on drop.
struct Netns {
    bridge: String,
    namespaces: Vec<String>,
    /// The bridge-side ends of the veth pairs.
    links: Vec<String>,
    /// `10.A.B.` prefix; the bridge is `.1`, cosigner `i` (0-based) is `.(11 + i)`.
    prefix: String,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Netns {
    /// Sets up `n` namespaces, or says why not (the caller skips the test with that text).
    fn new(test: u8, n: usize) -> Result<Netns, String> {
        if !is_root() {
            return Err("needs root (ip netns)".into());
        }
        let pid = std::process::id();
        let tag = format!("{}{test}", pid % 100_000);
        let prefix = format!("10.{}.{}.", 100 + test, pid % 250);
        let mut net = Netns {
            bridge: format!("fb{tag}"),
            namespaces: Vec::new(),
            links: Vec::new(),
            prefix,
        };
        sh(&["ip", "link", "add", &net.bridge, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}1/24", net.prefix),
            "dev",
            &net.bridge,
        ])?;
        sh(&["ip", "link", "set", &net.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("cosigner-faults-{tag}-{i}");
            sh(&["ip", "netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let host = format!("fv{tag}{i}");
            sh(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            sh(&["ip", "link", "set", &host, "master", &net.bridge, "up"])?;
            let addr = format!("{}/24", net.addr(i));
            sh(&[
                "ip", "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", "eth0",
            ])?;
            sh(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up",
            ])?;
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn addr(&self, i: usize) -> String {
        format!("{}{}", self.prefix, 11 + i)
    }

    fn node_ip(&self) -> String {
        format!("{}1", self.prefix)
    }

    /// Runs a command inside cosigner `i`'s namespace.
    fn exec(&self, i: usize, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["ip", "netns", "exec", &self.namespaces[i]];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Cuts cosigner `i` off from everything (its link goes down).
    fn isolate(&self, i: usize) {
        self.exec(i, &["ip", "link", "set", "eth0", "down"])
            .unwrap();
    }

    fn reconnect(&self, i: usize) {
        self.exec(i, &["ip", "link", "set", "eth0", "up"]).unwrap();
    }

    /// Cuts cosigner `i` off from the other cosigners, but not from the node.
    fn isolate_from_peers(&self, i: usize) {
        for j in 0..self.namespaces.len() {
            if j != i {
                let peer = format!("{}/32", self.addr(j));
                self.exec(i, &["ip", "route", "add", "blackhole", &peer])
                    .unwrap();
            }
        }
    }

    fn start_cosigner(&self, split: &Split, i: usize, generation: usize) -> Proc {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.namespaces[i]])
            .arg(&bins().cosigner)
            .arg("start")
            .arg("--config")
            .arg(split.cosigners[i].join("cosigner.toml"))
            .env("RUST_LOG", "info");
        Proc::spawn(
            &format!("cosigner-{}-run{generation}", i + 1),
            &mut cmd,
            split.log_dir(),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace frees its end of a veth pair only once the kernel has torn the
        // namespace down, which can lag; deleting our end removes both now.
        for link in &self.links {
            let _ = sh(&["ip", "link", "del", link]);
        }
        for ns in &self.namespaces {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let _ = sh(&["ip", "link", "del", &self.bridge]);
    }
}

/// Splits a key for cosigners at the namespace addresses and a node on the bridge.
fn split_in_netns(name: &str, net: &Netns, threshold: u16, shares: u16, node_port: u16) -> Split {
    let dir = test_dir(name);
    let key = write_validator_key(dir.path());
    let out = dir.path().join("cosigners");
    let mut cmd = std::process::Command::new(&bins().split_key);
    cmd.arg(&key.path)
        .args(["--threshold", &threshold.to_string()])
        .args(["--shares", &shares.to_string()])
        .arg("--out")
        .arg(&out)
        .args(["--protocol", PROTOCOL, "--chain-id", CHAIN])
        .args(["--node", &format!("tcp://{}:{node_port}", net.node_ip())]);
    for i in 0..usize::from(shares) {
        cmd.args(["--cosigner", &format!("{}:7101", net.addr(i))]);
    }
    let output = cmd.output().expect("run split-key");
    assert!(
        output.status.success(),
        "split-key failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cosigners = (1..=shares)
        .map(|i| out.join(format!("cosigner-{i}")))
        .collect();
    Split {
        dir,
        cosigners,
        key,
    }
}

fn sim_on(split: &Split, ip: &str, port: u16, heights: u64, extra: &[&str]) -> Sim {
    let report_path = split.dir.path().join(format!("sim-{port}.json"));
    let heights = heights.to_string();
    let pubkey = split.key.public_key_base64();
    let mut args = vec![
        "--chain-id",
        CHAIN,
        "--heights",
        &heights,
        "--expect-pubkey",
        &pubkey,
    ];
    args.extend_from_slice(extra);
    Sim::start_listen(&format!("{ip}:{port}"), port, &report_path, PROTOCOL, &args)
}

macro_rules! netns_or_skip {
    ($test:expr, $n:expr) => {
        match Netns::new($test, $n) {
            Ok(net) => net,
            Err(why) => {
                eprintln!("SKIPPED {}: {why}", module_path!());
                return;
            }
        }
    };
}

/// One cosigner loses its network (whichever it is, coordinator included); the others sign
/// on, and when it returns it takes part again.
#[test]
fn netns_isolated_cosigner() {
    let net = netns_or_skip!(1, 3);
    let port = free_tcp_port();
    let split = split_in_netns("netns-isolate", &net, 2, 3, port);
    let mut sim = sim_on(&split, &net.node_ip(), port, 40, &["--block-time-ms", "20"]);
    let procs: Vec<Proc> = (0..3).map(|i| net.start_cosigner(&split, i, 0)).collect();
    sim.wait_for_height(4);
    let coordinator = connected_cosigner(&procs).expect("a cosigner serves the node");
    net.isolate(coordinator);
    sim.wait_for_height(20);
    // It noticed, instead of holding on to the node.
    assert!(
        procs[coordinator]
            .log()
            .contains("no quorum reachable: giving way"),
        "{}",
        procs[coordinator].log()
    );
    net.reconnect(coordinator);
    let outcome = sim.outcome();
    outcome.assert_clean(&procs.iter().collect::<Vec<_>>());
}

/// The coordinator loses its peers but not the node: it gives way, and a cosigner that can
/// sign takes the node over.
#[test]
fn netns_coordinator_cut_off_from_peers_gives_way() {
    let net = netns_or_skip!(2, 3);
    let port = free_tcp_port();
    let split = split_in_netns("netns-cut-peers", &net, 2, 3, port);
    let mut sim = sim_on(&split, &net.node_ip(), port, 40, &["--block-time-ms", "20"]);
    let procs: Vec<Proc> = (0..3).map(|i| net.start_cosigner(&split, i, 0)).collect();
    sim.wait_for_height(4);
    let coordinator = connected_cosigner(&procs).expect("a cosigner serves the node");
    net.isolate_from_peers(coordinator);
    assert!(
        wait_for_log(
            &procs[coordinator],
            "no quorum reachable: giving way",
            1,
            Duration::from_secs(15)
        ),
        "{}",
        procs[coordinator].log()
    );
    let outcome = sim.outcome();
    outcome.assert_clean(&procs.iter().collect::<Vec<_>>());
    let others_served = procs
        .iter()
        .enumerate()
        .any(|(i, p)| i != coordinator && p.log().contains("connected to node"));
    assert!(others_served, "no other cosigner took the node over");
}

/// 200 ms on one peer's link: the coordinator signs with the fast peer instead.
#[test]
fn netns_slow_peer_is_routed_around() {
    let net = netns_or_skip!(3, 3);
    let port = free_tcp_port();
    let split = split_in_netns("netns-slow", &net, 2, 3, port);
    let mut sim = sim_on(&split, &net.node_ip(), port, 60, &[]);
    let procs: Vec<Proc> = (0..3).map(|i| net.start_cosigner(&split, i, 0)).collect();
    sim.wait_for_height(3);
    let coordinator = connected_cosigner(&procs).expect("a cosigner serves the node");
    let slow = (coordinator + 1) % 3;
    if let Err(why) = net.exec(
        slow,
        &[
            "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "200ms",
        ],
    ) {
        eprintln!("SKIPPED netns_slow_peer_is_routed_around: tc netem unavailable ({why})");
        return;
    }
    let outcome = sim.outcome();
    outcome.assert_clean(&procs.iter().collect::<Vec<_>>());
    let p90 = outcome.report["by_type"]["prevote"]["latency"]["p90_ms"]
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(
        p90 < 150.0,
        "p90 prevote latency {p90} ms: the slow peer was waited for\n{}",
        outcome.output
    );
}
