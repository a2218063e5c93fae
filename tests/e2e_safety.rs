//! End to end, safety against an operator's slips: a cosigner whose state is lost or rolled
//! back, and a forward jump to an absurd height. Real `split-key` and `cosigner` processes
//! against `validator-sim`; signatures of every simulator of a test are written to one log
//! and checked together for double signs, since the conflicting requests of these scenarios
//! come through different simulated nodes.

mod common;

use std::path::Path;

use common::cluster::Cluster;
use common::logs::signings;

use validator_sim::doublesign::{conflicts, LoggedSignature};

/// Every signature the simulators of a test logged.
fn logged(path: &Path) -> Vec<LoggedSignature> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a signature log line"))
        .collect()
}

/// The participants of the last signing a coordinator's log reports, as indexes 0..n.
fn last_participants(log: &str) -> Vec<usize> {
    signings(log)
        .pop()
        .expect("a signing in the log")
        .participants
        .iter()
        .map(|id| id - 1)
        .collect()
}

/// With 2-of-3, {A, B} sign up to height X while C takes no part at X. Then A is killed and B
/// comes back with an old copy of its state. The node (a second simulator, asking for other
/// blocks) now asks for conflicting votes at X through the only quorum left, {B, C}. Without
/// the signatures shared among cosigners, C (which never saw X) and B (rolled back) would both
/// sign: a double sign. With them, C's watermark holds X and B learns X from C at start.
#[test]
fn a_rolled_back_state_cannot_form_a_second_quorum() {
    let mut cluster = Cluster::new("rollback", 2, 3, "v0.34");
    let signatures = cluster.dir.path().join("signatures.jsonl");
    let signatures_arg = signatures.to_str().unwrap().to_string();
    let mut sim = cluster.sim(&["--heights", "40", "--signatures", &signatures_arg]);
    cluster.start_all();
    sim.wait_for_height(10);
    let a = cluster.connected();
    // An old copy of every state (one will be "B"'s backup), taken while they run.
    let backups: Vec<Vec<u8>> = (0..3)
        .map(|i| std::fs::read(cluster.state_file(i)).expect("read a state file"))
        .collect();
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    let last = outcome.report.heights_committed;
    assert_eq!(last, 40);

    let log_a = cluster.procs[a].as_ref().unwrap().log();
    let participants = last_participants(&log_a);
    assert!(participants.contains(&a), "{participants:?}");
    let b = *participants.iter().find(|&&p| p != a).unwrap();
    let c = 3 - a - b;
    // C took no part in the last signing, so only the shared signature tells it of height X.
    cluster.kill(a);
    cluster.kill(b);
    std::fs::write(cluster.state_file(b), &backups[b]).unwrap();
    cluster.start(b);

    // The second node: the same heights, other blocks; whichever of B and C it reaches
    // coordinates, and the other is the only possible participant.
    let start_height = last.to_string();
    let conflicting = cluster.sim(&[
        "--start-height",
        &start_height,
        "--heights",
        "1",
        "--block-variant",
        "other-sentry",
        "--signatures",
        &signatures_arg,
    ]);
    let outcome = conflicting.outcome();
    let all = logged(&signatures);
    assert!(!all.is_empty());
    assert_eq!(
        conflicts(&all),
        vec![],
        "double sign across the two nodes:\n{}",
        outcome.output
    );
    assert_eq!(outcome.double_signs(), 0);
    assert!(
        outcome.refusals_containing("double signing refused") > 0,
        "the conflicting votes were refused: {:?}",
        outcome.refusals()
    );
    let logs: String = [b, c]
        .iter()
        .map(|&i| cluster.procs[i].as_ref().unwrap().log())
        .collect();
    assert!(
        logs.contains("watermark refused: double signing refused"),
        "a participant names the refusal:\n{logs}"
    );
}

/// A request at height 2^62 (which one compromised coordinator could send every participant,
/// leaving every real vote refused for ever) is refused by every participant's jump bound,
/// and the validator signs on at its real height.
#[test]
fn an_absurd_forward_jump_is_refused_and_signing_goes_on() {
    let mut cluster = Cluster::new("jump", 2, 3, "v0.38");
    let sim = cluster.sim(&["--heights", "20"]);
    cluster.start_all();
    sim.outcome().assert_clean(&cluster.running());

    let absurd = (1i64 << 62).to_string();
    let jump = cluster.sim(&["--start-height", &absurd, "--heights", "1"]);
    let outcome = jump.outcome();
    assert!(outcome.passed() > 0, "the pubkey request still passes");
    assert!(
        outcome.refusals_containing("max_height_jump") > 0,
        "{:?}",
        outcome.refusals()
    );
    let logs: String = cluster.running().iter().map(|p| p.log()).collect();
    assert!(
        logs.contains("watermark refused: refused to jump"),
        "the participants name the jump bound:\n{logs}"
    );

    // Nothing moved: the validator signs its next real height.
    let next = cluster.sim(&["--start-height", "21", "--heights", "20"]);
    next.outcome().assert_clean(&cluster.running());
}
