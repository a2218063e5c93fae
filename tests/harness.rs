//! The test harness itself: a missing prerequisite fails under CI and skips (loudly)
//! elsewhere; a simulator that goes silent, or a command that hangs, fails its test within
//! the wait's deadline; the simulator's report is read through its own types, so a report
//! whose fields do not match fails to parse.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use validator_sim::report::Report;

/// Runs `f`, which must panic, within `limit` of starting; its panic message.
fn panics_within(limit: Duration, f: impl FnOnce()) -> String {
    let started = Instant::now();
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    let took = started.elapsed();
    assert!(took < limit, "took {took:?}, over {limit:?}");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// A process that stands in for the simulator: `script` run by `sh`.
fn fake_sim(dir: &std::path::Path, script: &str) -> Sim {
    let mut command = Command::new("sh");
    command.args(["-c", script]);
    Sim::spawn(command, 0, &dir.join("report.json"))
}

#[test]
fn a_silent_simulator_fails_the_wait_at_its_deadline() {
    let dir = test_dir("harness-silent");
    let mut sim = fake_sim(dir.path(), "exec sleep 600");
    let message = panics_within(Duration::from_secs(10), || {
        sim.wait_for_height_within(3, Duration::from_secs(1));
    });
    assert!(
        message.contains("printed no `height 3 committed` in 1s"),
        "{message}"
    );
}

#[test]
fn a_simulator_that_never_prints_the_line_fails_with_what_it_printed() {
    let dir = test_dir("harness-chatty");
    let mut sim = fake_sim(
        dir.path(),
        "while :; do echo height 1 committed; sleep 0.05; done",
    );
    let message = panics_within(Duration::from_secs(10), || {
        sim.wait_for_line_within("height 2 committed", Duration::from_secs(1));
    });
    assert!(message.contains("printed no"), "{message}");
    assert!(message.contains("height 1 committed"), "{message}");
}

#[test]
fn a_simulator_that_exits_early_fails_the_wait_at_once() {
    let dir = test_dir("harness-exits");
    let mut sim = fake_sim(dir.path(), "echo started");
    let message = panics_within(Duration::from_secs(10), || {
        sim.wait_for_line_within("committed", Duration::from_secs(60));
    });
    assert!(message.contains("exited before printing"), "{message}");
    assert!(message.contains("started"), "{message}");
}

#[test]
fn a_simulator_that_does_not_finish_fails_at_the_deadline() {
    let dir = test_dir("harness-no-finish");
    let sim = fake_sim(dir.path(), "exec sleep 600");
    let message = panics_within(Duration::from_secs(10), || {
        sim.finish(Duration::from_secs(1));
    });
    assert!(message.contains("did not finish in 1s"), "{message}");
}

#[test]
fn the_report_is_read_through_its_type() {
    let dir = test_dir("harness-report");
    let report = Report {
        passed: 7,
        heights_committed: 3,
        ..Report::default()
    };
    let path = dir.path().join("report.json");
    std::fs::write(&path, serde_json::to_string(&report).unwrap()).unwrap();
    let outcome = fake_sim(dir.path(), "echo done").finish(Duration::from_secs(10));
    assert_eq!((outcome.passed(), outcome.failed()), (7, 0));
    assert_eq!(outcome.report.heights_committed, 3);

    // A field by another name (as a rename on one side only would write it) does not parse.
    let renamed = serde_json::to_string(&report)
        .unwrap()
        .replace("\"double_signs\"", "\"doublesigns\"");
    std::fs::write(&path, renamed).unwrap();
    let message = panics_within(Duration::from_secs(10), || {
        fake_sim(dir.path(), "true").finish(Duration::from_secs(10));
    });
    assert!(message.contains("does not parse"), "{message}");
    assert!(message.contains("double_signs"), "{message}");

    // And no report at all is no report, not a report of zeros.
    std::fs::remove_file(&path).unwrap();
    let message = panics_within(Duration::from_secs(10), || {
        fake_sim(dir.path(), "true").finish(Duration::from_secs(10));
    });
    assert!(message.contains("left no report"), "{message}");
}

#[test]
fn a_hanging_command_is_killed_at_its_deadline() {
    let started = Instant::now();
    let err = Command::new("sleep")
        .arg("600")
        .output_within(Duration::from_secs(1))
        .expect_err("sleep 600 cannot finish in 1 s");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let out = Command::new("sh")
        .args(["-c", "echo out; echo err >&2; exit 3"])
        .output_bounded()
        .unwrap();
    assert_eq!(
        (out.status.code(), &out.stdout[..], &out.stderr[..]),
        (Some(3), &b"out\n"[..], &b"err\n"[..])
    );
}

/// The prerequisite check itself, run by the two tests below in a child process of this
/// test binary (so that they can set `CI` for it alone). Ignored in a normal run: run by
/// itself it fails under CI, which is its point.
#[test]
#[ignore = "run in a child process by the prerequisite tests"]
fn probe_missing_prerequisite() {
    require!(Err::<(), String>("the probe's prerequisite".into()));
    panic!("require! let a missing prerequisite through");
}

/// Runs [`probe_missing_prerequisite`] in a child process with `CI` set to `ci`.
fn run_probe(ci: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "--ignored",
        "--exact",
        "probe_missing_prerequisite",
        "--test-threads=1",
    ]);
    match ci {
        Some(value) => cmd.env("CI", value),
        None => cmd.env_remove("CI"),
    };
    cmd.output_bounded().expect("run the probe")
}

#[test]
fn a_missing_prerequisite_fails_the_test_under_ci() {
    let out = run_probe(Some("true"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("probe_missing_prerequisite: a prerequisite is missing on CI")
            && text.contains("the probe's prerequisite"),
        "{text}"
    );
}

#[test]
fn a_missing_prerequisite_skips_loudly_without_ci() {
    for ci in [None, Some("")] {
        let out = run_probe(ci);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "CI={ci:?}: {stderr}");
        // On the test's stderr although the harness captures what a passing test prints.
        assert!(
            stderr.contains("*** SKIPPED probe_missing_prerequisite: the probe's prerequisite"),
            "CI={ci:?}: {stderr}"
        );
    }
}
