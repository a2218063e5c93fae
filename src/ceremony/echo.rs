//! The echo check that turns point-to-point sends into a consistent broadcast: after round 1
//! every host reports a digest of each contribution it received, and every host compares the
//! reports with its own copies (pure).
//!
//! The same comparison checks the test signature's commitments, which every host also
//! reports with its share ([`super::test_sign`]).

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::abort::Abort;
use super::file::SessionId;
use super::messages::Digest;
use crate::cluster::PeerId;

/// The digest of `sender`'s contribution, as canonically re-encoded after decoding (so two
/// encodings of one value cannot differ), bound to the session and the sender.
pub(crate) fn digest(session: &SessionId, sender: PeerId, canonical: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(b"cosigner ceremony echo v1\x00");
    h.update(session);
    h.update(sender.to_be_bytes());
    h.update((canonical.len() as u64).to_be_bytes());
    h.update(canonical);
    h.finalize().into()
}

/// Compares `reporter`'s report (`theirs`, one entry per cosigner `1..=n` in order) with our
/// own copies (`ours`, every cosigner, ourselves `me` included), naming who is inconsistent:
/// - a reporter whose report of its own value differs from what it sent us sent different
///   values to different hosts: it is named alone;
/// - a reporter that reports a value of ours that we did not send misreports: named alone;
/// - otherwise the sender or the reporter lies, and both are named.
///
/// `what` says what the values are ("round-1 package").
pub(crate) fn compare<T: PartialEq>(
    me: PeerId,
    ours: &BTreeMap<PeerId, T>,
    reporter: PeerId,
    theirs: &[T],
    what: &str,
) -> Result<(), Abort> {
    if theirs.len() != ours.len() {
        return Err(Abort::culprit(
            reporter,
            format!(
                "it reported {} {what}s, for a cluster of {}",
                theirs.len(),
                ours.len()
            ),
        ));
    }
    for ((&sender, mine), reported) in ours.iter().zip(theirs) {
        if mine == reported {
            continue;
        }
        return Err(if sender == reporter {
            Abort::culprit(
                reporter,
                format!(
                    "the {what} it reports having sent differs from the one it sent \
                     cosigner {me}: it sent different ones to different cosigners"
                ),
            )
        } else if sender == me {
            Abort::culprit(
                reporter,
                format!(
                    "it reports a {what} from cosigner {me} that cosigner {me} never sent \
                     (it sends one to every cosigner alike)"
                ),
            )
        } else {
            Abort::Disagreement {
                sender,
                reporter,
                what: what.to_string(),
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> BTreeMap<PeerId, Digest> {
        (1..=4).map(|i| (i, [i as u8; 32])).collect()
    }

    fn report(changed: Option<PeerId>) -> Vec<Digest> {
        (1..=4u16)
            .map(|i| match changed == Some(i) {
                true => [0xee; 32],
                false => [i as u8; 32],
            })
            .collect()
    }

    #[test]
    fn agreeing_reports_pass() {
        assert_eq!(compare(1, &ours(), 2, &report(None), "package"), Ok(()));
    }

    #[test]
    fn a_sender_that_sent_two_packages_is_named_by_its_own_echo() {
        // Cosigner 3 sent us one package and reports having sent another.
        let err = compare(1, &ours(), 3, &report(Some(3)), "round-1 package").unwrap_err();
        assert_eq!(err.named(), vec![3]);
        assert!(err.to_string().contains("sent different ones"), "{err}");
    }

    #[test]
    fn a_reporter_that_misquotes_us_is_named() {
        let err = compare(1, &ours(), 2, &report(Some(1)), "round-1 package").unwrap_err();
        assert_eq!(err.named(), vec![2]);
        assert!(err.to_string().contains("never sent"), "{err}");
    }

    #[test]
    fn a_third_party_disagreement_names_both() {
        let err = compare(1, &ours(), 2, &report(Some(4)), "round-1 package").unwrap_err();
        assert_eq!(
            err,
            Abort::Disagreement {
                sender: 4,
                reporter: 2,
                what: "round-1 package".into()
            }
        );
        assert_eq!(err.named(), vec![4, 2]);
    }

    #[test]
    fn a_short_report_is_the_reporters_fault() {
        let err = compare(1, &ours(), 2, &report(None)[..3], "package").unwrap_err();
        assert_eq!(err.named(), vec![2]);
    }

    #[test]
    fn digests_bind_the_sender_and_the_session() {
        let a = digest(&[1; 32], 1, b"x");
        assert_ne!(a, digest(&[1; 32], 2, b"x"));
        assert_ne!(a, digest(&[2; 32], 1, b"x"));
        assert_ne!(a, digest(&[1; 32], 1, b"y"));
        assert_eq!(a, digest(&[1; 32], 1, b"x"));
    }
}
