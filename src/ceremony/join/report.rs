//! What `cosigner join` tells the operator once it switched.

use std::fmt;
use std::path::PathBuf;

use crate::cluster::PeerId;
use crate::key_forms::PublicKeyForms;
use crate::threshold::epoch::KeyEpoch;
use crate::threshold::key_share::members_list;

/// What a join did on this host.
pub struct Report {
    pub(super) me: PeerId,
    pub(super) threshold: u16,
    pub(super) members: Vec<PeerId>,
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
            "cosigner {}: joined, a share of the validator key, {} ({}-of-{}, cosigners {}); {}",
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
            "  {} written, every chain's watermark set to the highest a member had",
            self.key_share.display()
        )?;
        writeln!(
            f,
            "next: back up {} as every share, then `cosigner start --config {}`",
            self.key_share.display(),
            crate::shell::quote(&self.config)
        )
    }
}
