//! TEST ONLY: crash points, so that the fault tests can kill a cosigner at an exact step of a
//! signing or a refresh. With the `fault-injection` feature, `COSIGNER_TEST_CRASH=<point>:<n>` (points: see
//! [`CrashPoint::name`]) aborts the process, as kill -9 would end it, the n-th time it reaches
//! that point. Without the feature (every release build) [`test_crash`] does nothing and the
//! variable is ignored.

/// Points in a signing where the fault tests crash a cosigner on purpose.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CrashPoint {
    /// Coordinator: every share gathered, the node not yet answered (Horcrux issue 296).
    CoordinatorAfterShares,
    /// Participant: asked to sign, watermark not yet persisted.
    ParticipantBeforePersist,
    /// Participant: watermark persisted and share computed, share not yet released.
    ParticipantAfterPersist,
    /// Refresh: the new share staged (`key_share.json.next`), nothing switched.
    RefreshAfterStage,
    /// Refresh: every member staged (the rule says switch), this host not switched yet.
    RefreshBeforeSwitch,
    /// Join, a member: a repair delta taken from another helper, the refresh not begun.
    JoinRepair,
    /// Join, the new cosigner: its watermarks written and its share staged, not switched.
    JoinAfterStage,
}

impl CrashPoint {
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    fn name(self) -> &'static str {
        match self {
            CrashPoint::CoordinatorAfterShares => "coordinator-after-shares",
            CrashPoint::ParticipantBeforePersist => "participant-before-persist",
            CrashPoint::ParticipantAfterPersist => "participant-after-persist",
            CrashPoint::RefreshAfterStage => "refresh-after-stage",
            CrashPoint::RefreshBeforeSwitch => "refresh-before-switch",
            CrashPoint::JoinRepair => "join-repair",
            CrashPoint::JoinAfterStage => "join-after-stage",
        }
    }
}

#[cfg(feature = "fault-injection")]
pub(crate) fn test_crash(point: CrashPoint) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PLAN: std::sync::OnceLock<Option<(String, AtomicU64)>> = std::sync::OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let value = std::env::var("COSIGNER_TEST_CRASH").ok()?;
        let (name, n) = value.split_once(':')?;
        Some((name.to_string(), AtomicU64::new(n.parse().ok()?)))
    });
    if let Some((name, left)) = plan {
        if name == point.name() && left.fetch_sub(1, Ordering::SeqCst) <= 1 {
            tracing::warn!(
                "COSIGNER_TEST_CRASH: aborting at {} (test only)",
                point.name()
            );
            std::process::abort();
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn test_crash(_point: CrashPoint) {}
