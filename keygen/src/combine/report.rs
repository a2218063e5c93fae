//! What `split-key combine` wrote, and the warning that goes with it.

use std::fmt;
use std::path::PathBuf;

use super::{KEY_FILE, STATE_FILE};

/// What was written, for the operator.
#[derive(Debug)]
pub struct CombineReport {
    /// The directory written.
    pub out: PathBuf,
    /// The validator address (uppercase hex, as CometBFT prints it).
    pub address_hex: String,
    /// The validator public key, base64.
    pub public_key_base64: String,
    /// The cluster's threshold (`t`).
    pub threshold: u16,
    /// How many cosigners hold shares (`n`).
    pub shares: u16,
    /// Cosigner ids and the directories they came from.
    pub used: Vec<(u16, PathBuf)>,
    /// The key file, unless `--state-only`.
    pub key_file: Option<PathBuf>,
    /// The sign state written, one per chain.
    pub chains: Vec<ChainReport>,
}

/// One chain's state file.
#[derive(Debug)]
pub struct ChainReport {
    /// The chain.
    pub chain: String,
    /// The state file written for it.
    pub file: PathBuf,
    /// The watermark it holds, described.
    pub watermark: String,
    /// Whether the sign bytes and signature at the top were kept (see [`super::highest`]).
    pub with_sign_bytes: bool,
    /// The cosigners at the highest position.
    pub from: Vec<u16>,
}

impl fmt::Display for CombineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let used: Vec<String> = self
            .used
            .iter()
            .map(|(id, dir)| format!("cosigner {id} ({})", dir.display()))
            .collect();
        writeln!(
            f,
            "Combined {} of the {} shares ({}-of-{} split) of validator {}:",
            self.used.len(),
            self.shares,
            self.threshold,
            self.shares,
            self.address_hex
        )?;
        for u in &used {
            writeln!(f, "  {u}")?;
        }
        writeln!(f)?;
        writeln!(f, "public key (base64): {}", self.public_key_base64)?;
        if let Some(key_file) = &self.key_file {
            writeln!(
                f,
                "{}: the validator key, the original seed (from the seed escrow)",
                key_file.display()
            )?;
        }
        for c in &self.chains {
            let from: Vec<String> = c.from.iter().map(u16::to_string).collect();
            writeln!(
                f,
                "{}: chain `{}`, {} (the highest, held by cosigner {})",
                c.file.display(),
                c.chain,
                c.watermark,
                from.join(", ")
            )?;
            if c.with_sign_bytes {
                writeln!(
                    f,
                    "  with the sign bytes and the validator's signature there: a repeat of \
                     that request is answered"
                )?;
            } else {
                writeln!(
                    f,
                    "  without sign bytes (no signature of the validator there is known): \
                     FilePV refuses any request at exactly this height, round and step, and signs above it"
                )?;
            }
        }
        writeln!(f)?;
        if self.key_file.is_some() {
            writeln!(
                f,
                "WARNING: THE VALIDATOR KEY NOW EXISTS WHOLE, ON THIS MACHINE, IN {}.",
                self.out.display()
            )?;
            writeln!(
                f,
                "Whoever holds that file can sign as the validator, and if it signs while the \
                 cluster does, the validator double-signs and is slashed and tombstoned."
            )?;
            writeln!(
                f,
                "  - Move {KEY_FILE} to the validator node's config/ and the state file to its \
                 data/ (as {STATE_FILE}), mode 0600, then delete them here."
            )?;
        } else {
            writeln!(
                f,
                "Use the state file with the validator's original {KEY_FILE}: copy it to the \
                 node's data/ as {STATE_FILE}, mode 0600."
            )?;
        }
        writeln!(
            f,
            "  - Keep every cosigner stopped, and remove priv_validator_laddr from the nodes' \
             config.toml, so that the node signs with the file."
        )?;
        writeln!(
            f,
            "  - Destroy the cosigner directories (key_share.json) or lock them away offline: \
             any {} of them rebuild the key.",
            self.threshold
        )?;
        writeln!(
            f,
            "  - Never run the cluster and the single key at the same time."
        )
    }
}
