//! What a refresh tells the operator once it switched.

use std::fmt;
use std::path::PathBuf;

use crate::cluster::PeerId;
use crate::key_forms::PublicKeyForms;
use crate::threshold::epoch::KeyEpoch;
use crate::threshold::key_share::members_list;

/// What a refresh did on this host.
pub struct Report {
    pub(super) me: PeerId,
    pub(super) threshold: u16,
    pub(super) members: Vec<PeerId>,
    pub(super) removed: Vec<PeerId>,
    pub(super) added: Option<PeerId>,
    pub(super) epoch: KeyEpoch,
    pub(super) forms: PublicKeyForms,
    pub(super) key_share: PathBuf,
    pub(super) config: PathBuf,
    pub(super) because: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cosigner {}: new share of the same validator key, {} ({}-of-{}, cosigners {}); \
             {}",
            self.me,
            self.epoch,
            self.threshold,
            self.members.len(),
            members_list(&self.members),
            self.because
        )?;
        writeln!(f, "  validator public key: {}", self.forms.base64)?;
        writeln!(
            f,
            "  {} replaced: the old share is gone from this host (no copy kept)",
            self.key_share.display()
        )?;
        if let Some(added) = self.added {
            writeln!(
                f,
                "  {} lists cosigner {added} as a member: it signs with the others from now on",
                self.config.display()
            )?;
        }
        if !self.removed.is_empty() {
            writeln!(
                f,
                "  {} no longer lists cosigner(s) {}: their identities are refused",
                self.config.display(),
                members_list(&self.removed)
            )?;
        }
        writeln!(
            f,
            "next: `cosigner start --config {}` (the watermarks were not touched)",
            crate::shell::quote(&self.config)
        )
    }
}
