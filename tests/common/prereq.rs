//! What a test does when the machine lacks something it needs (root, loop devices,
//! `mkfs.ext4`, `ip netns`, `python3`): on CI it fails, saying what is missing, since a CI
//! machine that quietly skips the disk and partition tests is green without running them;
//! elsewhere it skips, loudly.
#![allow(dead_code)]

use std::io::Write;

/// Whether this run is CI's: the `CI` environment variable is set and not empty
/// (`.ci/run` exports `CI=true`).
pub fn on_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The test this thread runs (libtest names each test's thread after it), for messages.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string()
}

/// A prerequisite of the calling test is missing, for `reason`. Under CI this panics, so
/// the test fails with the reason; otherwise it writes a SKIPPED notice and returns, and the
/// caller returns from the test (use [`require!`](crate::common::require) for both).
///
/// The notice goes to the process's stderr directly, not through `eprintln!`, which the
/// test harness captures and shows only for failing tests: a skip is not to go unseen.
pub fn skip_or_fail(reason: &str) {
    let test = test_name();
    if on_ci() {
        panic!(
            "{test}: a prerequisite is missing on CI (CI is set): {reason}\n\
             CI needs root, loop devices, mkfs.ext4, e2fsck, python3 and ip netns; see the \
             README's Tests section"
        );
    }
    let notice = format!(
        "\n*** SKIPPED {test}: {reason}\n*** (this passes without running; with CI set it \
         fails)\n"
    );
    let _ = std::io::stderr().lock().write_all(notice.as_bytes());
}

/// `require!(expr)`: the `Ok` value of `expr` (a `Result<T, String>` whose error says which
/// prerequisite is missing), or [`skip_or_fail`] with its error and return from the test.
#[allow(unused_macros)]
macro_rules! require {
    ($setup:expr) => {
        match $setup {
            Ok(value) => value,
            Err(why) => {
                $crate::common::prereq::skip_or_fail(&why);
                return;
            }
        }
    };
}
pub(crate) use require;
