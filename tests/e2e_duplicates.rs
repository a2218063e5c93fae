//! End to end with real processes: two live copies of one cosigner directory (the operator
//! slip of issue 10), and a flood of replayed QUIC Initials while a peer restarts.
//!
//! - `a_copied_cosigner_directory_never_double_signs`: cosigner 1's directory copied and
//!   both copies running, each serving its own sentry, the sentries asking for conflicting
//!   votes at the same heights and rounds. Every signature either sentry received is checked
//!   here, independently of the simulators and the cosigners: it verifies under the
//!   validator key, and no chain/height/round/step has two signed documents that differ in
//!   more than the timestamp.
//! - `a_restarted_peer_gets_through_a_flood_of_replayed_initials`: Initials built by the
//!   cosigner's own QUIC client configuration are replayed at thousands of datagrams a second
//!   at a cosigner while its peer restarts; the peer must be connected and signing within a
//!   second of its start.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use prost::Message;

const CHAIN: &str = "dup-chain";
const PROTOCOL: &str = "v0.38";
const LIMIT: Duration = Duration::from_secs(20);

// ---- Config and directory surgery ----

fn edit_config(dir: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let path = dir.join("cosigner.toml");
    let mut table: toml::Table = std::fs::read_to_string(&path)
        .expect("read cosigner.toml")
        .parse()
        .expect("parse cosigner.toml");
    edit(&mut table);
    std::fs::write(&path, toml::to_string(&table).expect("write toml")).expect("write config");
}

fn threshold(table: &mut toml::Table) -> &mut toml::Table {
    table["threshold"].as_table_mut().expect("[threshold]")
}

fn set_nodes(table: &mut toml::Table, address: &str) {
    let nodes = table["node"].as_array_mut().expect("[[node]]");
    nodes.truncate(1);
    nodes[0].as_table_mut().expect("node")["address"] = address.into();
}

fn set_listen(table: &mut toml::Table, addr: &str) {
    threshold(table)["listen"] = addr.into();
}

fn listen_of(dir: &Path) -> String {
    let mut listen = String::new();
    edit_config(dir, |t| {
        listen = threshold(t)["listen"].as_str().expect("listen").to_string();
    });
    listen
}

fn set_peer_address(table: &mut toml::Table, peer: i64, addr: &str) {
    let peers = threshold(table)["peer"].as_array_mut().expect("peers");
    let entry = peers
        .iter_mut()
        .filter_map(|p| p.as_table_mut())
        .find(|p| p["id"].as_integer() == Some(peer))
        .expect("peer entry");
    entry["address"] = addr.into();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("type");
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
        // Else the running original's admin socket (state/cosigner.sock): not a file.
    }
}

// ---- Signatures as the simulators received them ----

struct SignedDoc {
    key: (String, i64, i32, u8),
    /// The canonical document with its timestamp removed: what must not differ.
    without_timestamp: Vec<u8>,
}

/// Reads a simulator's `--signatures` file and checks each line on its own terms: the
/// signature verifies under the validator key over the exact bytes, and those bytes are the
/// canonical document of the chain, height, round and step the line claims.
fn signed_docs(path: &Path, validator: &[u8; 32]) -> Vec<SignedDoc> {
    use tendermint_proto::v0_38::types::{CanonicalProposal, CanonicalVote};
    let key = ed25519_dalek::VerifyingKey::from_bytes(validator).expect("validator key");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("signature line");
            let bytes = hex::decode(v["sign_bytes"].as_str().unwrap()).unwrap();
            let sig: [u8; 64] = hex::decode(v["signature"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            key.verify_strict(&bytes, &ed25519_dalek::Signature::from_bytes(&sig))
                .unwrap_or_else(|e| panic!("a signature that does not verify: {line}: {e}"));
            let claimed = (
                v["chain_id"].as_str().unwrap().to_string(),
                v["height"].as_i64().unwrap(),
                v["round"].as_i64().unwrap() as i32,
                v["step"].as_u64().unwrap() as u8,
            );
            let (decoded, without_timestamp) = if claimed.3 == 1 {
                let mut p = CanonicalProposal::decode_length_delimited(&bytes[..]).unwrap();
                assert_eq!(p.r#type, 32, "{line}");
                let d = (p.chain_id.clone(), p.height, p.round as i32, 1u8);
                p.timestamp = None;
                (d, p.encode_to_vec())
            } else {
                let mut c = CanonicalVote::decode_length_delimited(&bytes[..]).unwrap();
                let step = match c.r#type {
                    1 => 2u8,
                    2 => 3u8,
                    t => panic!("vote type {t}: {line}"),
                };
                let d = (c.chain_id.clone(), c.height, c.round as i32, step);
                c.timestamp = None;
                (d, c.encode_to_vec())
            };
            assert_eq!(decoded, claimed, "sign bytes of another position: {line}");
            SignedDoc {
                key: claimed,
                without_timestamp,
            }
        })
        .collect()
}

/// Positions at which two different documents were signed.
fn conflicts(docs: &[SignedDoc]) -> Vec<(String, i64, i32, u8)> {
    let mut by_key: BTreeMap<&(String, i64, i32, u8), &[u8]> = BTreeMap::new();
    let mut out = Vec::new();
    for d in docs {
        match by_key.get(&d.key) {
            Some(first) if *first != &d.without_timestamp[..] => out.push(d.key.clone()),
            Some(_) => {}
            None => {
                by_key.insert(&d.key, &d.without_timestamp);
            }
        }
    }
    out
}

fn logs(procs: &[&Proc]) -> String {
    procs
        .iter()
        .map(|p| format!("--- {} ---\n{}", p.name, p.log()))
        .collect()
}

fn last_height(sim: &Sim) -> i64 {
    sim.seen
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("height ")?.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// The setup: cosigner-1's directory copied; the original listens where cosigner 2
/// looks for peer 1, the copy where cosigner 3 does. Each copy serves its own sentry, and
/// the copy's sentry asks for nil votes at heights where the original's asks for a block.
/// Without duplicate detection, {copy, 3} signs the nil votes and {original, 2} the block
/// votes: a double sign. Cosigners 2 and 3 serve no node, so every signature comes from one
/// of the copies coordinating.
#[test]
fn a_copied_cosigner_directory_never_double_signs() {
    let dir = test_dir("duplicates");
    let key = write_validator_key(dir.path());
    let (node_a, node_b, nowhere) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let cosigners = split_key(
        dir.path(),
        &key.path,
        2,
        3,
        &[format!("tcp://127.0.0.1:{node_a}")],
        &[CHAIN],
        PROTOCOL,
    );
    let twin_listen = format!("127.0.0.1:{}", free_udp_port());
    let original_listen = listen_of(&cosigners[0]);
    for d in &cosigners[1..] {
        edit_config(d, |t| set_nodes(t, &format!("tcp://127.0.0.1:{nowhere}")));
    }
    edit_config(&cosigners[2], |t| set_peer_address(t, 1, &twin_listen));
    let pubkey = key.public_key_base64();
    let sigs_a = dir.path().join("signatures-a.jsonl");
    let sigs_b = dir.path().join("signatures-b.jsonl");
    let mut sim_a = Sim::start_on(
        dir.path(),
        node_a,
        PROTOCOL,
        &[
            "--chain-id",
            CHAIN,
            "--duration",
            "120",
            "--block-time-ms",
            "50",
            "--expect-pubkey",
            &pubkey,
            "--signatures",
            sigs_a.to_str().unwrap(),
        ],
    );
    let two = start_cosigner(&cosigners[1], "cosigner-2", dir.path());
    let three = start_cosigner(&cosigners[2], "cosigner-3", dir.path());
    let original = start_cosigner(&cosigners[0], "cosigner-1", dir.path());
    sim_a.wait_for_height(5);

    // The copy, made while the original runs (its watermark included), as in a host move.
    let copy_dir_path = dir.path().join("cosigner-1-copy");
    copy_dir(&cosigners[0], &copy_dir_path);
    edit_config(&copy_dir_path, |t| {
        set_listen(t, &twin_listen);
        set_nodes(t, &format!("tcp://127.0.0.1:{node_b}"));
    });
    // Ahead of the original's sentry, so that these positions are still free when the copy
    // asks for them, and the original's sentry reaches them later.
    let start_b = last_height(&sim_a) + 30;
    let start_b_arg = start_b.to_string();
    let sim_b = Sim::start_on(
        dir.path(),
        node_b,
        PROTOCOL,
        &[
            "--chain-id",
            CHAIN,
            "--start-height",
            &start_b_arg,
            "--heights",
            "3",
            "--nil-round-every",
            "1",
            "--block-time-ms",
            "50",
            "--expect-pubkey",
            &pubkey,
            "--signatures",
            sigs_b.to_str().unwrap(),
        ],
    );
    let copy = start_cosigner(&copy_dir_path, "cosigner-1-copy", dir.path());
    let all = || logs(&[&original, &copy, &two, &three]);

    // Cosigners 2 and 3 each see both processes and name both addresses.
    for p in [&two, &three] {
        assert!(
            wait_for_log(p, "two live instances of cosigner 1", 1, LIMIT),
            "{} did not flag the duplicate:\n{}",
            p.name,
            all()
        );
        let log = p.log();
        let line = log
            .lines()
            .find(|l| l.contains("two live instances of cosigner 1"))
            .unwrap();
        assert!(
            line.contains(&original_listen) && line.contains(&twin_listen),
            "{}: the duplicate line does not name both {original_listen} and {twin_listen}: {line}",
            p.name
        );
    }
    // The copy, asked to sign for its sentry, learns that it has a twin.
    assert!(
        wait_for_log(&copy, "this cosigner has a twin", 1, LIMIT),
        "the copy was not told it has a twin:\n{}",
        all()
    );

    // One copy gone: the other is served again and its sentry signs through the heights the
    // copy's sentry asked for. With cosigner 3 gone too, it can sign only with cosigner 2,
    // which never saw what the copy asked for: without duplicate detection, {copy, 3} would
    // have signed the copy's nil votes and {original, 2} now signs the block votes.
    copy.signal("KILL");
    three.signal("KILL");
    assert!(
        wait_for_log(&two, "down to one live instance", 1, LIMIT),
        "cosigner 2 still refuses cosigner 1:\n{}",
        all()
    );
    sim_a.wait_for_height((start_b + 3) as u64);
    drop(sim_a);
    drop(sim_b);

    let validator = key.public_key;
    let a = signed_docs(&sigs_a, &validator);
    let b = signed_docs(&sigs_b, &validator);
    let mut every: Vec<SignedDoc> = a;
    let from_a_at_b: usize = every
        .iter()
        .filter(|d| (start_b..start_b + 3).contains(&d.key.1))
        .count();
    every.extend(b);
    let total = every.len();
    let conflicting = conflicts(&every);
    eprintln!(
        "signatures: {total} verified; original's sentry {from_a_at_b} at the heights the \
         copy's sentry asked for; conflicts {conflicting:?}"
    );
    assert!(
        conflicting.is_empty(),
        "DOUBLE SIGN at {conflicting:?}:\n{}",
        all()
    );
    assert!(
        from_a_at_b > 0,
        "the original's sentry never signed at the contested heights, so the test proved nothing"
    );
    assert_eq!(
        std::fs::read_to_string(&sigs_b)
            .unwrap_or_default()
            .lines()
            .count(),
        0,
        "the copy got signatures while its twin lived:\n{}",
        all()
    );
}

// ---- A flood of replayed Initials while a peer restarts ----

/// Seconds since the epoch of a log line's RFC 3339 UTC timestamp
/// (`2026-12-02T04:02:15.315923Z`).
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let s = t.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The time of the first line of `proc`'s log at or after `after` containing every needle.
fn wait_for_line_after(proc: &Proc, after: f64, needles: &[&str], limit: Duration) -> Option<f64> {
    let deadline = Instant::now() + limit;
    loop {
        let found = proc.log().lines().find_map(|l| {
            let t = log_time(l)?;
            (t >= after && needles.iter().all(|n| l.contains(n))).then_some(t)
        });
        if found.is_some() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sums the `count=` fields of one rate-limited notice (lines containing `needle`).
fn logged_count(log: &str, needle: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("count="))?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Distinct QUIC Initials (first datagram of each connection) that the cosigner's own
/// client configuration sends: 80 connection attempts towards a socket that never answers.
fn capture_initials(cosigner_dir: &Path, count: usize) -> Vec<Vec<u8>> {
    let tls = cosigner::cluster::TlsPaths {
        cert: cosigner_dir.join("tls/cert.pem"),
        key: cosigner_dir.join("tls/key.pem"),
        ca: Some(cosigner_dir.join("tls/cluster-ca.pem")),
    };
    let config = cosigner::cluster::tls::TlsIdentity::load(&tls)
        .unwrap()
        .client_config(&cosigner::cluster::tls::PeerPins::default())
        .unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let target = sink.local_addr().unwrap();
    // Its worker sends while this thread reads the sink.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut pending = Vec::new();
    for _ in 0..count {
        let connecting = endpoint
            .connect_with(config.clone(), target, "cosigner-1")
            .unwrap();
        pending.push(rt.spawn(async move {
            let _ = connecting.await;
        }));
    }
    let mut seen_dcids = std::collections::BTreeSet::new();
    let mut initials = Vec::new();
    let mut buf = [0u8; 2048];
    while initials.len() < count {
        let Ok(n) = sink.recv(&mut buf) else { break };
        let d = &buf[..n];
        // A long-header Initial (QUIC v1): form and fixed bits set, type 0.
        if d.len() < 7 || d[0] & 0xf0 != 0xc0 {
            continue;
        }
        let dcid_len = d[5] as usize;
        let Some(dcid) = d.get(6..6 + dcid_len) else {
            continue;
        };
        if seen_dcids.insert(dcid.to_vec()) {
            initials.push(d.to_vec());
        }
    }
    for p in pending {
        p.abort();
    }
    initials
}

/// Sends `initials` round robin at about `rate` datagrams a second, each round alternately
/// from a peer's IP (127.0.0.1, any port) and from one that is no peer's (127.0.0.2), until
/// `stop`; counts what it sent. (Rounds, not datagrams, alternate: quinn files a copy of an
/// Initial that arrives while the first is still undecided under the first.)
fn flood(
    initials: Vec<Vec<u8>>,
    target: SocketAddr,
    rate: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let sockets = [
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.2:0").unwrap(),
        ];
        let started = Instant::now();
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while n < due {
                let len = initials.len() as u64;
                let d = &initials[(n % len) as usize];
                let _ = sockets[((n / len) % 2) as usize].send_to(d, target);
                n += 1;
            }
            sent.store(n, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// The attack of issue 10: captured Initials replayed at thousands a second at cosigner 1
/// while cosigner 2 restarts. Cosigner 3 is down and cosigner 1 serves no node, so the
/// sentry is signed for only once the restarted cosigner 2 has got through to 1.
#[test]
fn a_restarted_peer_gets_through_a_flood_of_replayed_initials() {
    const RATE: u64 = 8_000;
    let dir = test_dir("flood");
    let key = write_validator_key(dir.path());
    let node = free_tcp_port();
    let cosigners = split_key(
        dir.path(),
        &key.path,
        2,
        3,
        &[format!("tcp://127.0.0.1:{node}")],
        &[CHAIN],
        PROTOCOL,
    );
    edit_config(&cosigners[0], |t| {
        set_nodes(t, &format!("tcp://127.0.0.1:{}", free_tcp_port()))
    });
    // Cosigner 3 stays down: a starting cosigner does not wait for a peer it cannot connect
    // to once one (t - 1) has told it what the validator signed, so the restarted
    // cosigner's first signature measures the transport (getting through the flood to
    // cosigner 1).
    let target: SocketAddr = listen_of(&cosigners[0]).parse().unwrap();
    let pubkey = key.public_key_base64();
    let mut sim = Sim::start_on(
        dir.path(),
        node,
        PROTOCOL,
        &[
            "--chain-id",
            CHAIN,
            "--duration",
            "120",
            "--expect-pubkey",
            &pubkey,
        ],
    );
    let one = start_cosigner(&cosigners[0], "cosigner-1", dir.path());
    let mut two = start_cosigner(&cosigners[1], "cosigner-2", dir.path());
    let mut three = start_cosigner(&cosigners[2], "cosigner-3", dir.path());
    sim.wait_for_height(3);
    three.kill();

    let initials = capture_initials(&cosigners[2], 80);
    assert_eq!(initials.len(), 80, "captured {} Initials", initials.len());
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = flood(initials, target, RATE, stop.clone(), sent.clone());
    // In full swing before the restart.
    let swing = Instant::now() + LIMIT;
    while sent.load(Ordering::Relaxed) < RATE / 2 {
        assert!(Instant::now() < swing, "the flood did not start");
        std::thread::sleep(Duration::from_millis(5));
    }

    two.kill();
    let started = now_secs();
    let two = start_cosigner(&cosigners[1], "cosigner-2-restarted", dir.path());
    let all = || logs(&[&one, &two]);
    let connected = wait_for_line_after(&one, started, &["cluster peer connected peer=2"], LIMIT)
        .unwrap_or_else(|| panic!("cosigner 2 never got through:\n{}", all()));
    let signed = wait_for_line_after(&two, started, &[" signed chain="], LIMIT)
        .unwrap_or_else(|| panic!("the restarted cosigner 2 never signed:\n{}", all()));
    let ready = wait_for_line_after(&two, started, &["threshold cosigner ready"], LIMIT);
    // Let the flood run on a little, so that it is not only the restart's first second.
    let more = sent.load(Ordering::Relaxed) + RATE;
    let deadline = Instant::now() + LIMIT;
    while sent.load(Ordering::Relaxed) < more && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let ended = now_secs();
    let total_sent = sent.load(Ordering::Relaxed);
    // The last window of each notice is logged within its interval after the flood ends.
    for needle in ["not configured peers", "address validations"] {
        let _ = wait_for_line_after(&one, ended, &[needle], Duration::from_secs(8));
    }
    let log = one.log();
    let ignored = logged_count(&log, "from addresses that are not configured peers");
    let retried = logged_count(&log, "address validations (QUIC Retry)");
    // The transport's refusal lines begin so (a node's "Connection refused" does not).
    let refused = logged_count(&log, "WARN refused ");
    let failed = logged_count(&log, "cluster handshake(s) failed");
    eprintln!(
        "flood: {total_sent} datagrams sent at {RATE}/s; cosigner 1: {ignored} ignored (not a \
         peer), {retried} answered with a Retry, {refused} refused, {failed} handshakes \
         failed; restarted cosigner 2: ready after {:.3} s, connected after {:.3} s, signing \
         after {:.3} s",
        ready.map_or(f64::NAN, |r| r - started),
        connected - started,
        signed - started
    );
    assert!(
        signed - started < 1.0 && connected - started < 1.0,
        "the restarted peer was back only after {:.3} s (connected) / {:.3} s (signing):\n{}",
        connected - started,
        signed - started,
        all()
    );
    // Both halves of the flood were seen for what they are, and cost no handshake slot.
    assert!(ignored > 0 && retried > 0, "{}", all());
    assert_eq!(refused, 0, "{}", all());
    drop(sim);
}
