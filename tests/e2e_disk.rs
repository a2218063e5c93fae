//! End to end under disk faults: each cosigner of a real 2-of-3 cluster keeps its state
//! directory on its own small ext4 filesystem (a loop device), and the tests break one of
//! them under it while `validator-sim` drives signings and watches for double signs.
//!
//! - A dying disk: `EXT4_IOC_SHUTDOWN` makes every later write, fsync and open on that
//!   filesystem fail with EIO, the state file's open descriptor included.
//! - A full disk: a filler file takes every free block.
//!
//! The claim under test (issue "Disks"): a cosigner whose watermark cannot be stored refuses
//! to sign and says why, releases no share that its disk does not cover, and the others sign
//! on; a full disk does not stop a cosigner, since its state file is preallocated; and after
//! the disk is repaired, the cosigner resumes from a watermark no lower than its last share.
//!
//! Root only (mount, loop devices), with `mkfs.ext4`, `e2fsck` and `python3` (which issues
//! the shutdown ioctl). Without them a test fails when `CI` is set, and otherwise prints
//! why it is skipped and passes (`require!`).

mod common;

use std::time::Duration;

use cosigner::sign_state::StateFile;

use common::cluster::{Cluster, CHAIN};
use common::logs::*;
use common::*;

const PROTOCOL: &str = "v0.38";
/// Ample for every wait below; a healthy run needs a fraction of it.
const LIMIT: Duration = Duration::from_secs(15);

/// A 2-of-3 cluster whose cosigners each have their state directory on their own
/// loop-mounted ext4 (16 MiB: ext4's minimum comfortable size; filling it is quick), or the
/// prerequisite that is missing.
fn disk_cluster(name: &str) -> Result<Cluster, String> {
    Cluster::builder(name, 2, 3)
        .protocol(PROTOCOL)
        .state_on_loop_mounts(16)
        .build()
}

/// A simulator for `heights` heights from `start`, 10 ms apart.
fn start_sim(cluster: &Cluster, start: i64, heights: u64) -> Sim {
    let (start, heights) = (start.to_string(), heights.to_string());
    cluster.sim(&[
        "--start-height",
        &start,
        "--heights",
        &heights,
        "--block-time-ms",
        "10",
    ])
}

/// Cosigner `i`'s durable watermark, read as a restart would; it must not be running.
fn watermark_of(cluster: &Cluster, i: usize) -> Hrs {
    let (_, state) = StateFile::open(&cluster.state_dir(i), CHAIN)
        .unwrap_or_else(|e| panic!("cosigner {}: {e}", i + 1));
    (state.height, state.round, state.step)
}

/// Waits until `proc`'s log has a line containing every needle; its timestamp. Panics with
/// the log if none comes.
fn wait_for_line_with(proc: &Proc, needles: &[&str]) -> String {
    wait_for_line_after(proc, "", needles)
}

/// [`wait_for_line_with`] for a line stamped at or after `after`.
fn wait_for_line_after(proc: &Proc, after: &str, needles: &[&str]) -> String {
    wait_for_log_line(proc, after, needles, LIMIT)
}

/// The cosigner serving the node and the peer it signed with last (0-based indices). The
/// coordinator tends to keep the peer it has been using (it prefers the lowest measured
/// round-trip time, which traffic keeps fresh), so that peer usually gets the next request.
fn coordinator_and_peer(cluster: &Cluster) -> (usize, usize) {
    let coordinator = (0..3)
        .find(|&i| cluster.procs[i].as_ref().is_some_and(serves_node))
        .expect("a cosigner serves the node");
    let last = signings(&cluster.proc(coordinator).log())
        .pop()
        .expect("the coordinator has signed");
    let peer = last
        .participants
        .iter()
        .map(|id| id - 1)
        .find(|&i| i != coordinator)
        .expect("a signing has a second participant");
    (coordinator, peer)
}

/// The needles of a participant's refusal for a storage failure: the kind, the state file
/// and the operating system's error.
fn storage_refusal<'a>(state_file: &'a str, os_error: &'a str) -> [&'a str; 4] {
    ["refused to sign", "kind=Storage", state_file, os_error]
}

/// The longest a signing request took the node, retries and reconnections included.
fn worst_latency_ms(outcome: &Outcome) -> f64 {
    ["proposal", "prevote", "precommit"]
        .iter()
        .filter_map(|t| outcome.report.by_type.get(*t))
        .map(|t| t.total_latency.max_ms)
        .fold(0.0, f64::max)
}

const EIO: &str = "Input/output error (os error 5)";
const GAVE_WAY_FOR_GOOD: &str = "giving way for good";

/// A participant's disk dies while the cluster signs: it refuses (saying why), releases no
/// share beyond what its disk holds, and the coordinator signs on with the third cosigner.
/// Then the disk is repaired (unmounted, checked, mounted again): the restarted cosigner's
/// watermark is no lower than the last share it released, and it signs again.
#[test]
fn dead_disk_on_a_participant_refuses_and_the_others_sign_on() {
    let mut cluster = require!(disk_cluster("dead-disk-participant"));
    let mut sim = start_sim(&cluster, 1, 40);
    cluster.start_all();
    sim.wait_for_height(5);
    let (coordinator, victim) = coordinator_and_peer(&cluster);
    let other = 3 - coordinator - victim;
    let state_file = cluster.state_file(victim).display().to_string();

    // The coordinator chooses its peer itself; to be sure a request meets the dead disk,
    // the third cosigner hangs (SIGSTOP) until the victim has refused one. A request the
    // coordinator sent it meanwhile is answered once it continues, within the attempt's time.
    cluster.proc(other).signal("STOP");
    cluster.disks[victim]
        .shut_down()
        .expect("shut down the disk");
    let refused_at = wait_for_line_with(cluster.proc(victim), &storage_refusal(&state_file, EIO));
    cluster.proc(other).signal("CONT");
    // It also left the node's accept queue: its dialer stopped.
    let gave_way_at = wait_for_line_with(cluster.proc(victim), &[GAVE_WAY_FOR_GOOD]);
    wait_for_line_after(cluster.proc(victim), &gave_way_at, &["not dialing"]);
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    eprintln!(
        "cosigner {} (participant) lost its disk; first refusal at {refused_at}; worst \
         request {:.1} ms; node connections accepted {}",
        victim + 1,
        worst_latency_ms(&outcome),
        outcome.connections_accepted()
    );

    // Every later request was refused for the disk too, naming the file each time.
    let log = cluster.proc(victim).log();
    let later = log
        .lines()
        .filter(|l| l.contains("refused to sign") && timestamp(l) >= refused_at.as_str());
    for line in later {
        assert!(
            line.contains("kind=Storage") && line.contains(&state_file),
            "a refusal after the failure that is not a storage refusal: {line}"
        );
    }

    // No signing after its first refusal used it; the cluster signed on without it.
    let signings = cluster.signed_on_without(victim, &refused_at, "its disk died");
    let last_with_victim = signings
        .iter()
        .filter(|s| s.participants.contains(&(victim + 1)))
        .map(|s| s.hrs)
        .max()
        .expect("the victim took part before the failure");
    let last_signed = signings.iter().map(|s| s.hrs).max().expect("signings");

    // Repair: take the disk offline, check it, mount it again, and restart the cosigner.
    cluster.kill(victim);
    let disk = &mut cluster.disks[victim];
    disk.unmount().expect("unmount the dead disk");
    let report = disk.fsck().expect("e2fsck");
    disk.remount().expect("mount the repaired disk");
    let watermark = watermark_of(&cluster, victim);
    eprintln!(
        "after repair: watermark {watermark:?}, last share released {last_with_victim:?}, \
         cluster at {last_signed:?}; e2fsck: {}",
        report.lines().find(|l| l.contains(" files ")).unwrap_or("")
    );
    assert!(
        watermark >= last_with_victim,
        "the repaired watermark {watermark:?} is below a share it released at \
         {last_with_victim:?}: a share left without its watermark on disk"
    );
    assert!(
        watermark < last_signed,
        "the dead disk's watermark {watermark:?} moved on with the cluster ({last_signed:?})"
    );

    // Restarted, it signs again: with the third cosigner gone, nothing signs without it.
    let connected_before = cluster
        .proc(coordinator)
        .log()
        .matches(&format!("cluster peer connected peer={}", victim + 1))
        .count();
    cluster.start(victim);
    wait_for_line_with(cluster.proc(victim), &["threshold cosigner ready"]);
    assert!(
        wait_for_log(
            cluster.proc(coordinator),
            &format!("cluster peer connected peer={}", victim + 1),
            connected_before + 1,
            LIMIT
        ),
        "{}",
        cluster.logs()
    );
    cluster.kill(other);
    let start = last_signed.0 + 1;
    let sim = start_sim(&cluster, start, 10);
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    let resumed: Vec<Signing> = cluster
        .signings()
        .into_iter()
        .filter(|s| s.hrs.0 >= start)
        .collect();
    assert!(
        !resumed.is_empty()
            && resumed
                .iter()
                .all(|s| s.participants.contains(&(victim + 1))),
        "the repaired cosigner did not take part: {resumed:?}"
    );
    let final_signed = resumed.iter().map(|s| s.hrs).max();
    cluster.kill(victim);
    assert_eq!(Some(watermark_of(&cluster, victim)), final_signed);
}

/// The disk of the cosigner serving the node dies: its own share cannot be recorded, so it
/// signs nothing, drops the node at once (the node's retry reaches a cosigner that can sign:
/// an answered error would be final for the node) and stops dialing for good, so later
/// fail-overs never land on it.
#[test]
fn dead_disk_on_the_coordinator_gives_way_to_the_others() {
    let mut cluster = require!(disk_cluster("dead-disk-coordinator"));
    let mut sim = start_sim(&cluster, 1, 40);
    cluster.start_all();
    sim.wait_for_height(5);
    let (victim, _) = coordinator_and_peer(&cluster);
    let state_file = cluster.state_file(victim).display().to_string();

    cluster.disks[victim]
        .shut_down()
        .expect("shut down the disk");
    let refused_at = wait_for_line_with(cluster.proc(victim), &storage_refusal(&state_file, EIO));
    let gave_way_at = wait_for_line_with(cluster.proc(victim), &[GAVE_WAY_FOR_GOOD]);
    // Its dialer noticed and stopped.
    wait_for_line_after(cluster.proc(victim), &gave_way_at, &["not dialing"]);
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());

    let log = cluster.proc(victim).log();
    assert!(
        log.contains("not signed, giving way so the node retries elsewhere")
            && log.contains(&state_file),
        "the coordinator did not give the node up for its disk:\n{log}"
    );
    let reconnected = log
        .lines()
        .any(|l| l.contains("connected to node") && timestamp(l) > gave_way_at.as_str());
    assert!(
        !reconnected,
        "the cosigner with a dead disk took a node again:\n{log}"
    );
    cluster.signed_on_without(victim, &refused_at, "its disk died");
    let took_over: Vec<usize> = (0..3)
        .filter(|&i| i != victim && cluster.proc(i).log().contains("connected to node"))
        .map(|i| i + 1)
        .collect();
    assert!(
        !took_over.is_empty(),
        "no other cosigner took the node over"
    );
    // The node's wait for the request that met the dead disk: one retry, not a timeout.
    let worst = worst_latency_ms(&outcome);
    eprintln!(
        "coordinator {} lost its disk; cosigners {took_over:?} took over; worst request \
         {worst:.1} ms; node connections accepted {}",
        victim + 1,
        outcome.connections_accepted()
    );
    assert!(
        worst < 3000.0,
        "the node waited {worst} ms:\n{}",
        outcome.output
    );
}

/// A participant's disk fills up while it signs: its state file is preallocated and written
/// in place, so it signs on, and after a restart on the still full disk its watermark is
/// the last thing the cluster signed.
#[test]
fn full_disk_on_a_participant_keeps_signing_and_restarts() {
    let mut cluster = require!(disk_cluster("full-disk"));
    let mut sim = start_sim(&cluster, 1, 30);
    cluster.start_all();
    sim.wait_for_height(5);
    let (coordinator, victim) = coordinator_and_peer(&cluster);
    let other = 3 - coordinator - victim;
    // With the third cosigner gone, every signing needs the one whose disk fills up.
    cluster.kill(other);
    sim.wait_for_height(8);
    let filled = cluster.disks[victim].fill().expect("fill the disk");
    let before_full = cluster.signings().iter().map(|s| s.hrs).max();
    eprintln!(
        "cosigner {}'s disk filled with {filled} bytes at {before_full:?}",
        victim + 1
    );
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    // It signed on the full disk: everything signed after the fill has its share.
    let on_full: Vec<Signing> = cluster
        .signings()
        .into_iter()
        .filter(|s| Some(s.hrs) > before_full)
        .collect();
    assert!(
        on_full.len() >= 10
            && on_full
                .iter()
                .all(|s| s.participants.contains(&(victim + 1))),
        "signings after the disk filled: {on_full:?}"
    );
    let last_signed = cluster.signings().iter().map(|s| s.hrs).max();
    assert_eq!(last_signed, Some((30, 0, 3)), "{}", cluster.logs());

    // Restart on the full disk: it starts, from the latest watermark.
    cluster.kill(victim);
    assert_eq!(cluster.disks[victim].is_full(), Ok(true));
    assert_eq!(Some(watermark_of(&cluster, victim)), last_signed);
    cluster.start(victim);
    wait_for_line_with(cluster.proc(victim), &["threshold cosigner ready"]);
    let sim = start_sim(&cluster, 31, 10);
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    cluster.kill(victim);
    assert_eq!(watermark_of(&cluster, victim), (40, 0, 3));
    let log = cluster.logs();
    assert!(!log.contains("kind=Storage"), "{log}");
}

/// A cosigner whose disk is full before its state file exists, or dead when it starts,
/// does not start, and the error names the file and the operating system's reason; and a
/// state file cannot be created on a full disk, which leaves nothing behind.
#[test]
fn a_cosigner_does_not_start_on_a_full_or_dead_disk() {
    let cluster = require!(disk_cluster("start-on-bad-disk"));
    let state_file = |i: usize| cluster.state_file(i).display().to_string();
    // The message names the state file itself, and gives the reason once.
    let assert_names = |text: &str, named: &str, why: &str| {
        assert!(
            text.contains("sign state") && text.contains(named),
            "the error does not name the file and the reason ({why}):\n{text}"
        );
        assert_eq!(
            text.matches(why).count(),
            1,
            "the reason is repeated:\n{text}"
        );
    };
    let start_and_fail = |i: usize| -> String {
        let mut p = cluster.spawn(i);
        let status = p.wait_exit(LIMIT).expect("the cosigner must exit");
        let log = p.log();
        assert!(!status.success(), "{log}");
        log
    };

    // A new, full disk for the state directory: the state file cannot be created (it is
    // written in full and synced before it is linked into place), and nothing is left.
    std::fs::remove_file(cluster.state_file(0)).expect("remove the state file");
    cluster.disks[0].fill().expect("fill the disk");
    let out = state_init(&cluster.cosigner_dirs[0], CHAIN);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let enospc = "No space left on device (os error 28)";
    assert_names(&stderr, &format!("{}: {enospc}", state_file(0)), enospc);
    eprintln!("full disk, state init: {}", stderr.trim());
    let leftovers: Vec<_> = std::fs::read_dir(cluster.state_dir(0))
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains(CHAIN))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    // And without it the cosigner does not start.
    let log = start_and_fail(0);
    assert!(
        log.contains(&format!("no sign state at {}", state_file(0)))
            && log.contains("cosigner state init"),
        "{log}"
    );

    // Dead at start: the existing state file cannot be opened.
    cluster.disks[1].shut_down().expect("shut down the disk");
    let log = start_and_fail(1);
    assert_names(&log, &format!("{}: {EIO}", state_file(1)), EIO);
    eprintln!("dead disk: {}", log.lines().last().unwrap_or(""));
}

/// The parser the assertions above rely on reads the coordinator's `signed` line as the
/// cosigner writes it (a copied line), and leaves other lines alone.
#[test]
fn signing_lines_parse() {
    let log = "2026-11-22T05:30:58.845575Z  INFO signed chain=test-chain height=19 round=0 \
               step=proposal participants=[2, 1] extra_shares=1 micros=3048\n\
               2026-11-22T05:30:58.845575Z  INFO cosigner started";
    let parsed = signings(log);
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].hrs, (19, 0, 1));
    assert_eq!(parsed[0].participants, vec![2, 1]);
    assert_eq!(parsed[0].extra_shares, 1);
    assert_eq!(parsed[0].at, "2026-11-22T05:30:58.845575Z");
}
