//! The commit rule of a refresh, pure: from what every other member says about its files
//! ([`RefreshStatus`]), a cosigner that has staged the new generation `new` decides to
//! switch to it, to drop it, or to wait.
//!
//! - **Commit** if a member already holds `new` as its share (it switched), or if every
//!   member has staged `new`. A cosigner switches only after it has seen every member's
//!   staged file (this very rule), so by the time anyone holds `new`, every member has it
//!   on disk and can switch too: none is left with a share nobody else signs with.
//! - **Abort** (drop the staged file, keep the old share) if a member still holds `old`
//!   and has neither staged `new` nor is making it (`pending`): a process without the
//!   ceremony in memory can never stage `new` (its shares of zero were random and are
//!   gone), so nobody can ever have seen every member staged, and nobody switched. The
//!   first abort always comes from such a member, so a commit and an abort can never both
//!   happen.
//! - **Wait** otherwise (a member unreachable, or still making `new`): the decision
//!   depends on it. A cosigner that times out waiting keeps both files and says so; running
//!   `cosigner refresh` again settles it once the member answers.

use std::collections::BTreeMap;

use crate::ceremony::messages::RefreshStatus;
use crate::cluster::PeerId;
use crate::threshold::epoch::EpochId;

/// What a cosigner with a staged share does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Switch to the staged share; `because` says which member made it certain.
    Commit {
        /// The member whose answer made it certain.
        because: String,
    },
    /// Drop the staged share and keep the old one.
    Abort {
        /// The member whose answer made it certain.
        because: String,
    },
    /// Not decided yet: one line per member the decision waits for.
    Wait(Vec<String>),
}

/// Decides from the statuses heard from every other member (`None`: not heard yet).
pub fn decide(
    old: EpochId,
    new: EpochId,
    heard: &BTreeMap<PeerId, Option<RefreshStatus>>,
) -> Decision {
    for (peer, status) in heard {
        if status.is_some_and(|s| s.current == new) {
            return Decision::Commit {
                because: format!("cosigner {peer} has switched to the new shares"),
            };
        }
    }
    for (peer, status) in heard {
        if let Some(s) = status {
            // A cosigner being added holds no share yet ([`EpochId::NONE`]): like a member
            // with the old share, once it neither staged nor makes `new` it never will.
            let before = s.current == old || s.current == EpochId::NONE;
            if before && s.staged != Some(new) && s.pending != Some(new) {
                return Decision::Abort {
                    because: format!(
                        "cosigner {peer} holds the old share and did not stage the new one \
                         (its refresh stopped, or it was never part of this one)"
                    ),
                };
            }
        }
    }
    let mut waiting = Vec::new();
    for (peer, status) in heard {
        match status {
            Some(s) if s.staged == Some(new) => {}
            Some(s) if s.current == EpochId::NONE => waiting.push(format!(
                "cosigner {peer} (joining) is still making its share"
            )),
            Some(s) if s.current != old => waiting.push(format!(
                "cosigner {peer} holds shares of another generation ({}) than this refresh \
                 started from ({old}) or makes ({new})",
                s.current
            )),
            Some(_) => waiting.push(format!("cosigner {peer} is still making the new shares")),
            None => waiting.push(format!("cosigner {peer} has not answered")),
        }
    }
    if waiting.is_empty() {
        return Decision::Commit {
            because: "every cosigner staged the new shares".into(),
        };
    }
    Decision::Wait(waiting)
}

/// The rule for the cosigner being added, which holds no share of its own to call old (and
/// after a restart does not know the members' generation): a member's generation other than
/// `new` is the one the join started from.
pub fn decide_joining(new: EpochId, heard: &BTreeMap<PeerId, Option<RefreshStatus>>) -> Decision {
    let old = heard
        .values()
        .flatten()
        .map(|s| s.current)
        .find(|c| *c != new && *c != EpochId::NONE)
        .unwrap_or(EpochId::NONE);
    decide(old, new, heard)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: EpochId = EpochId([1; 32]);
    const NEW: EpochId = EpochId([2; 32]);
    const OTHER: EpochId = EpochId([3; 32]);

    fn status(
        current: EpochId,
        staged: Option<EpochId>,
        pending: Option<EpochId>,
    ) -> RefreshStatus {
        RefreshStatus {
            current,
            staged,
            pending,
        }
    }

    fn heard(list: &[(PeerId, Option<RefreshStatus>)]) -> BTreeMap<PeerId, Option<RefreshStatus>> {
        list.iter().copied().collect()
    }

    #[test]
    fn every_member_staged_commits() {
        let h = heard(&[
            (2, Some(status(OLD, Some(NEW), None))),
            (3, Some(status(OLD, Some(NEW), None))),
        ]);
        assert!(matches!(decide(OLD, NEW, &h), Decision::Commit { .. }));
    }

    #[test]
    fn one_switched_member_commits_whatever_the_others_say() {
        let h = heard(&[(2, None), (3, Some(status(NEW, None, None)))]);
        assert!(matches!(decide(OLD, NEW, &h), Decision::Commit { .. }));
    }

    #[test]
    fn a_member_that_will_never_stage_aborts() {
        // Restarted without the ceremony in memory, or signing with the old share.
        let h = heard(&[
            (2, Some(status(OLD, Some(NEW), None))),
            (3, Some(status(OLD, None, None))),
        ]);
        assert!(matches!(decide(OLD, NEW, &h), Decision::Abort { .. }));
        // Staged something else: a later attempt, never ours.
        let h = heard(&[(2, Some(status(OLD, Some(OTHER), Some(OTHER))))]);
        assert!(matches!(decide(OLD, NEW, &h), Decision::Abort { .. }));
    }

    #[test]
    fn a_joining_cosigner_commits_when_staged_and_aborts_when_it_never_will() {
        let none = EpochId::NONE;
        let h = heard(&[
            (2, Some(status(OLD, Some(NEW), None))),
            (4, Some(status(none, Some(NEW), None))),
        ]);
        assert!(matches!(decide(OLD, NEW, &h), Decision::Commit { .. }));
        // Restarted before staging: it has no share and will not make this one.
        let h = heard(&[(4, Some(status(none, None, None)))]);
        assert!(matches!(decide(OLD, NEW, &h), Decision::Abort { .. }));
        let h = heard(&[(4, Some(status(none, None, Some(NEW))))]);
        assert!(matches!(decide(OLD, NEW, &h), Decision::Wait(w) if w[0].contains("joining")));
    }

    #[test]
    fn the_joining_cosigner_decides_without_knowing_the_old_generation() {
        let h = heard(&[
            (1, Some(status(OLD, Some(NEW), None))),
            (2, Some(status(OLD, Some(NEW), None))),
        ]);
        assert!(matches!(decide_joining(NEW, &h), Decision::Commit { .. }));
        let h = heard(&[(1, Some(status(OLD, None, None))), (2, None)]);
        assert!(matches!(decide_joining(NEW, &h), Decision::Abort { .. }));
        let h = heard(&[(1, Some(status(OLD, None, Some(NEW)))), (2, None)]);
        assert!(matches!(decide_joining(NEW, &h), Decision::Wait(_)));
        let h = heard(&[(1, Some(status(NEW, None, None))), (2, None)]);
        assert!(matches!(decide_joining(NEW, &h), Decision::Commit { .. }));
    }

    #[test]
    fn an_unheard_or_unfinished_member_waits() {
        let h = heard(&[(2, Some(status(OLD, Some(NEW), None))), (3, None)]);
        assert_eq!(
            decide(OLD, NEW, &h),
            Decision::Wait(vec!["cosigner 3 has not answered".into()])
        );
        let h = heard(&[(2, Some(status(OLD, None, Some(NEW))))]);
        assert!(matches!(decide(OLD, NEW, &h), Decision::Wait(w) if w[0].contains("still making")));
        let h = heard(&[(2, Some(status(OTHER, None, None)))]);
        assert!(
            matches!(decide(OLD, NEW, &h), Decision::Wait(w) if w[0].contains("another generation"))
        );
    }
}
