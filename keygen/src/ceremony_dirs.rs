//! Directories without shares, for a key ceremony: `split-key --dkg` (the cosigners make a
//! new key, `cosigner dkg`) and `split-key --horcrux-pubkey` (each Horcrux host brings its
//! shard of an existing key, `cosigner import-horcrux`).
//!
//! Each directory is what a split writes (TLS identity, SecretConnection identity,
//! `cosigner.toml`, `state/`) with `ceremony.json` in place of `key_share.json`. The ceremony
//! file binds the directories to one ceremony and, for an import, holds the validator key the
//! shards must add up to, so a wrong shard is caught before anything is written. No key
//! exists here: nothing secret but the cluster identities is written.
//!
//! Sign states: a DKG key has never signed, so every chain starts empty, as a split without
//! `--state` does. An imported key has: its chains get a state only from `--state`, and
//! otherwise from the Horcrux host's own state at import; `cosigner start` refuses a chain
//! with none.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use cosigner::ceremony::horcrux::shard::decode_public_key;
use cosigner::ceremony::{CeremonyFile, CeremonyKind, CEREMONY_FILE};
use cosigner::cluster::identity::issue_cluster;
use cosigner::config::Config;
use cosigner::key_forms::PublicKeyForms;
use cosigner::sign_state::import::write_initial_states;
use cosigner::validator_key::address_of;
use rand_core::{CryptoRng, RngCore};

use crate::{
    check_identity_and_states, checked_configs, config_header, stage_output, write_identity,
    Deployment, Plan, Source, SplitError,
};
use cosigner::layout::{CONFIG_FILE, STATE_DIR};

/// The validator key given to `--horcrux-pubkey`: base64 or hex of the 32 bytes, or a
/// Horcrux shard file's `pubKey` (protobuf-encoded, base64).
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let raw = match text.len() {
        64 => hex::decode(text).ok(),
        _ => BASE64.decode(text).ok().filter(|b| b.len() == 32),
    };
    let key = match raw {
        Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).ok()?,
        None => decode_public_key(text).ok()?,
    };
    ed25519_dalek::VerifyingKey::from_bytes(&key).ok()?;
    Some(key)
}

/// What was written, for the operator.
#[derive(Debug)]
pub struct Report {
    /// Which ceremony the directories are made for.
    pub kind: CeremonyKind,
    /// The validator key, for an import.
    pub forms: Option<PublicKeyForms>,
    /// Where the directories went and what they sign.
    pub deployment: Deployment,
}

/// Writes the directories of a DKG or Horcrux-import plan atomically.
pub fn write<R: RngCore + CryptoRng>(plan: &Plan, rng: &mut R) -> Result<Report, SplitError> {
    let (t, n) = (plan.threshold, plan.shares);
    let (kind, key) = match &plan.source {
        Source::Dkg => (CeremonyKind::Dkg, None),
        Source::Horcrux { public_key } => (CeremonyKind::HorcruxImport, Some(*public_key)),
        Source::Split { .. } => {
            return Err(SplitError::Check("a key to split is not a ceremony".into()))
        }
    };
    let forms = key
        .map(|k| PublicKeyForms::new(&k, plan.bech32_prefix.as_deref()))
        .transpose()?;
    let ceremony = CeremonyFile::new(kind, t, n, key, plan.bech32_prefix.clone(), rng);
    let cluster_name = match key {
        Some(k) => format!("validator {}", hex::encode_upper(address_of(&k))),
        None => format!("DKG validator {}", &ceremony.nonce[..16]),
    };
    let cluster = issue_cluster(n, &cluster_name)?;
    let configs = checked_configs(plan, &cluster)?;
    // A key that has signed starts only from a state someone gave: --state now, or the
    // Horcrux host's at import.
    let chains: Vec<String> = match kind {
        // split-key never writes a join (`cosigner enroll` does).
        CeremonyKind::Dkg | CeremonyKind::Join => plan.chain_ids.clone(),
        CeremonyKind::HorcruxImport => plan.states.iter().map(|(c, _)| c.clone()).collect(),
    };
    let staged = stage_output(plan)?;
    for (identity, config) in cluster.identities.iter().zip(&configs) {
        let dir = PathBuf::from(format!("cosigner-{}", identity.id));
        staged.create_dir(&dir.join(STATE_DIR))?;
        write_initial_states(
            &staged.path().join(&dir).join(STATE_DIR),
            &chains,
            &plan.states,
        )
        .map_err(|e| SplitError::SeedState {
            chain: e.chain,
            error: e.error,
        })?;
        staged.write_file(&dir.join(CEREMONY_FILE), ceremony.to_json().as_bytes())?;
        let what = match kind {
            CeremonyKind::Dkg | CeremonyKind::Join => format!(
                "cosigner {} of a {t}-of-{n} cluster whose new key `cosigner dkg` makes",
                identity.id
            ),
            CeremonyKind::HorcruxImport => format!(
                "cosigner {} of a {t}-of-{n} cluster importing Horcrux shard {} of validator {}",
                identity.id,
                identity.id,
                key.map(|k| hex::encode_upper(address_of(&k)))
                    .unwrap_or_default()
            ),
        };
        let text = format!(
            "{}{}{}",
            config_header(identity.id, &what),
            config.to_toml(),
            crate::metrics_hint(config)
        );
        write_identity(&staged, &dir, identity, &cluster, &text, rng)?;
    }
    check_written(staged.path(), plan, &ceremony, &chains)?;
    staged.commit()?;
    Ok(Report {
        kind,
        forms,
        deployment: Deployment::of(plan),
    })
}

/// Re-loads every directory as a ceremony would: the config, the ceremony file, no share.
fn check_written(
    root: &Path,
    plan: &Plan,
    ceremony: &CeremonyFile,
    chains: &[String],
) -> Result<(), SplitError> {
    let check = |what: String| SplitError::Check(what);
    for id in 1..=plan.shares {
        let dir = root.join(format!("cosigner-{id}"));
        let loaded = Config::load(&dir.join(CONFIG_FILE)).map_err(|e| check(e.to_string()))?;
        let threshold = loaded
            .config
            .threshold()
            .ok_or_else(|| check(format!("cosigner-{id}: no [threshold]")))?;
        let written = CeremonyFile::load(&loaded.resolve(Path::new(CEREMONY_FILE)))
            .map_err(|e| check(e.to_string()))?;
        if written != *ceremony || threshold.id != id || threshold.threshold != plan.threshold {
            return Err(check(format!(
                "cosigner-{id}: the ceremony file or config differs from what was planned"
            )));
        }
        if loaded.resolve(&threshold.key_share).exists() {
            return Err(check(format!("cosigner-{id}: a key share exists")));
        }
        check_identity_and_states(&loaded, threshold, plan, id, chains)?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, n) = (self.deployment.threshold, self.deployment.shares);
        match (&self.kind, &self.forms) {
            (CeremonyKind::HorcruxImport, Some(forms)) => {
                writeln!(
                    f,
                    "Wrote {n} cosigner directories to import the {t}-of-{n} Horcrux shards of \
                     this validator key (no shard or key was read here):"
                )?;
                writeln!(f)?;
                write!(f, "{forms}")?;
            }
            _ => writeln!(
                f,
                "Wrote {n} cosigner directories for a new {t}-of-{n} validator key, made by the \
                 cosigners themselves (`cosigner dkg`): it exists nowhere yet, and never will \
                 whole."
            )?,
        }
        write!(f, "{}", self.deployment)?;
        self.deployment.write_seeded(f)?;
        let out = self.deployment.out.display();
        match self.kind {
            CeremonyKind::Dkg | CeremonyKind::Join => writeln!(
                f,
                "Next: copy each directory to its host, then on every host, all within 120 s \
                 of each other (--timeout): `cosigner dkg --config DIR/cosigner.toml` (DIR: \
                 where {out}/cosigner-i went). Every host prints the same validator public \
                 key, for the genesis or `create-validator`; then back up each host's \
                 key_share.json and `cosigner start` every host."
            ),
            CeremonyKind::HorcruxImport => writeln!(
                f,
                "Next: stop Horcrux on every host for good; copy {out}/cosigner-i to the \
                 Horcrux host with shard id i; then on every host, all within 120 s of each \
                 other (--timeout): `cosigner import-horcrux --config DIR/cosigner.toml \
                 [--horcrux-home ~/.horcrux]`. Each host reads only its own shard and sign \
                 state; then `cosigner start` every host."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_in_every_accepted_form() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32])
            .verifying_key()
            .to_bytes();
        assert_eq!(parse_public_key(&BASE64.encode(key)), Some(key));
        assert_eq!(parse_public_key(&hex::encode(key)), Some(key));
        let mut protobuf = vec![0x0a, 0x20];
        protobuf.extend_from_slice(&key);
        assert_eq!(parse_public_key(&BASE64.encode(&protobuf)), Some(key));
        assert_eq!(parse_public_key("not a key"), None);
        assert_eq!(parse_public_key(&BASE64.encode([1; 31])), None);
    }
}
