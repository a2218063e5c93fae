//! `cosigner enroll`, on the host being added: a cosigner directory without a key share,
//! ready for `cosigner join`. It takes only public data from a member's `cosigner.toml`
//! (`--like`: nodes, chains, threshold, timeouts, metrics) and trusts exactly the members
//! whose pins their operators gave (`--peer ID=HOST:PORT=SHA256`, one per member); it makes
//! its own identities (a self-signed cluster certificate, which the members pin by
//! `cosigner add-peer`, and a SecretConnection key).

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rand_core::{CryptoRng, RngCore};

use crate::ceremony::file::{CeremonyFile, CeremonyKind, CEREMONY_FILE};
use crate::cluster::identity::issue_self_signed;
use crate::config::{Config, Mode, PeerConfig, ThresholdConfig};
use crate::layout::{
    CONFIG_FILE, IDENTITY_KEY_FILE, KEY_SHARE_FILE, STATE_DIR, TLS_CERT_FILE, TLS_KEY_FILE,
};
use crate::staged_dir::StagedDir;
use crate::threshold::key_share::members_list;
use crate::threshold::quorum::check_threshold;
use crate::validator_key::identity_key_file_contents;

/// What the operator asked for.
pub struct EnrollPlan {
    /// The new cosigner's id: a number no member has (nor had: see the README).
    pub id: u16,
    /// Where it listens for its peers.
    pub listen: SocketAddr,
    /// `HOST:PORT` the members dial (default: `listen`).
    pub address: String,
    /// A copy of any member's `cosigner.toml`.
    pub like: PathBuf,
    /// One `ID=HOST:PORT=SHA256` per member, as each member's `cosigner add-peer` printed.
    pub peers: Vec<String>,
    /// The directory to write; must not exist.
    pub out: PathBuf,
}

/// Why `cosigner enroll` refused or failed; nothing is left behind.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnrollError(String);

fn err(m: impl Into<String>) -> EnrollError {
    EnrollError(m.into())
}

/// Parses `ID=HOST:PORT=SHA256`.
pub fn parse_peer(spec: &str) -> Result<PeerConfig, EnrollError> {
    let bad = |why: &str| {
        err(format!(
            "--peer {spec}: {why}; expected ID=HOST:PORT=SHA256, the line `cosigner add-peer` \
             printed on that member's host"
        ))
    };
    let mut parts = spec.splitn(3, '=');
    let (Some(id), Some(address), Some(pin)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not three parts"));
    };
    let id: u16 = id
        .parse()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| bad("the id is not a cosigner number"))?;
    crate::host_port::split_host_port(address).map_err(|e| bad(&e))?;
    let pin = pin.to_ascii_lowercase();
    if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the fingerprint is not 64 hex digits"));
    }
    Ok(PeerConfig {
        id,
        address: address.to_string(),
        cert_sha256: pin,
    })
}

/// What `enroll` wrote, and what each member's operator runs next.
#[derive(Debug)]
pub struct EnrollReport {
    id: u16,
    address: String,
    config: PathBuf,
    fingerprint: String,
    members: Vec<u16>,
    threshold: u16,
}

impl fmt::Display for EnrollReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.members.len() + 1;
        writeln!(
            f,
            "Wrote cosigner {}'s directory ({}), to join cosigners {} as {}-of-{n}; it holds \
             no key share yet.",
            self.id,
            self.config.display(),
            members_list(&self.members),
            self.threshold
        )?;
        writeln!(f, "cluster certificate SHA-256: {}", self.fingerprint)?;
        writeln!(f)?;
        writeln!(
            f,
            "1. On every member's host ({}), its operator checks this fingerprint with you \
             (another channel than the one it came by) and runs:",
            members_list(&self.members)
        )?;
        writeln!(
            f,
            "     cosigner add-peer --config MEMBER_DIR/cosigner.toml --id {} --address {} \
             --cert-sha256 {}",
            self.id, self.address, self.fingerprint
        )?;
        writeln!(
            f,
            "2. With every member's cosigner stopped, at about the same time: `cosigner refresh \
             --config MEMBER_DIR/cosigner.toml --add {}` on every member's host, and here:",
            self.id
        )?;
        writeln!(
            f,
            "     cosigner join --config {}",
            crate::shell::quote(&self.config)
        )
    }
}

/// Checks the plan and writes the directory (staged: all of it or nothing).
pub fn enroll<R: RngCore + CryptoRng>(
    plan: &EnrollPlan,
    rng: &mut R,
) -> Result<EnrollReport, EnrollError> {
    let like = Config::load(&plan.like).map_err(|e| err(format!("--like: {e}")))?;
    let Some(th) = like.config.threshold() else {
        return Err(err(format!(
            "--like {}: not a threshold cosigner with one key ([threshold]); give a copy of a \
             member's cosigner.toml of the cluster to join",
            plan.like.display()
        )));
    };
    let mut members: Vec<u16> = th.peers.iter().map(|p| p.id).collect();
    members.push(th.id);
    members.sort_unstable();
    if !th.joining.is_empty() {
        // Harmless, but the joining entries are the member's, not the cluster's.
        tracing::debug!("--like lists joining cosigners; they are not taken");
    }
    let peers: Vec<PeerConfig> = plan
        .peers
        .iter()
        .map(|s| parse_peer(s))
        .collect::<Result<_, _>>()?;
    let given: BTreeSet<u16> = peers.iter().map(|p| p.id).collect();
    if given.len() != peers.len() {
        return Err(err("--peer: one id is given twice"));
    }
    if given.contains(&plan.id) || members.contains(&plan.id) {
        return Err(err(format!(
            "--id {}: that is a member's id; a new cosigner takes a number no member has \
             (and none had: a removed cosigner's number is not reused)",
            plan.id
        )));
    }
    if plan.id == 0 {
        return Err(err("--id 0: cosigner ids start at 1"));
    }
    if !given.iter().copied().eq(members.iter().copied()) {
        return Err(err(format!(
            "--peer gives cosigners {}, but {} lists the members {}: give exactly one --peer \
             per member (each member's operator prints its line with `cosigner add-peer`)",
            members_list(&given.iter().copied().collect::<Vec<_>>()),
            plan.like.display(),
            members_list(&members)
        )));
    }
    for p in &peers {
        if let Some(known) = th.peers.iter().find(|k| k.id == p.id) {
            if known.cert_sha256.to_ascii_lowercase() != p.cert_sha256 {
                return Err(err(format!(
                    "--peer {}: its fingerprint differs from the one {} pins for cosigner {}; \
                     check both with that member's operator",
                    p.id,
                    plan.like.display(),
                    p.id
                )));
            }
        }
    }
    let n = u16::try_from(members.len() + 1).unwrap_or(u16::MAX);
    check_threshold(th.threshold, n).map_err(|e| {
        err(format!(
            "adding a cosigner makes {}-of-{n}: {e}",
            th.threshold
        ))
    })?;
    crate::host_port::split_host_port(&plan.address)
        .map_err(|e| err(format!("--address {}: {e}", plan.address)))?;

    let identity = issue_self_signed(plan.id).map_err(|e| err(e.to_string()))?;
    let config = Config {
        state_dir: STATE_DIR.into(),
        identity_key: IDENTITY_KEY_FILE.into(),
        mode: Mode::Threshold(ThresholdConfig {
            id: plan.id,
            threshold: th.threshold,
            listen: plan.listen,
            key_share: KEY_SHARE_FILE.into(),
            tls_cert: TLS_CERT_FILE.into(),
            tls_key: TLS_KEY_FILE.into(),
            cluster_ca: None,
            peers,
            joining: Vec::new(),
            allowed_sources: Vec::new(),
        }),
        ..like.config.clone()
    };
    config
        .validate()
        .map_err(|(field, problem)| err(format!("the new config: {field}: {problem}")))?;
    let ceremony = CeremonyFile::new(CeremonyKind::Join, th.threshold, n, None, None, rng);
    let staged = StagedDir::create(&plan.out).map_err(|e| err(e.to_string()))?;
    let write = |path: &str, bytes: &[u8]| {
        staged
            .write_file(Path::new(path), bytes)
            .map_err(|e| err(e.to_string()))
    };
    staged
        .create_dir(Path::new(STATE_DIR))
        .map_err(|e| err(e.to_string()))?;
    write(TLS_CERT_FILE, identity.cert_pem.as_bytes())?;
    write(TLS_KEY_FILE, identity.key_pem.as_bytes())?;
    let session_key = ed25519_dalek::SigningKey::generate(rng);
    write(
        IDENTITY_KEY_FILE,
        identity_key_file_contents(&session_key).as_bytes(),
    )?;
    write(CEREMONY_FILE, ceremony.to_json().as_bytes())?;
    let header = format!(
        "# cosigner {}: joining cosigners {} ({}-of-{n}); written by `cosigner enroll`.\n",
        plan.id,
        members_list(&members),
        th.threshold
    );
    write(
        CONFIG_FILE,
        format!("{header}{}", config.to_toml()).as_bytes(),
    )?;
    let out = staged.commit().map_err(|e| err(e.to_string()))?;
    Ok(EnrollReport {
        id: plan.id,
        address: plan.address.clone(),
        config: out.join(CONFIG_FILE),
        fingerprint: identity.cert_sha256,
        members,
        threshold: th.threshold,
    })
}

#[cfg(test)]
mod tests;
