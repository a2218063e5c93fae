//! Reading a `cosigner.toml` and the checks that turn it into a [`Config`] or name what is
//! wrong with it.

use super::*;

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| match retired_key(&text) {
            Some((field, problem)) => ConfigError::Invalid {
                path: path.to_path_buf(),
                field,
                problem: problem.replace("COSIGNER_TOML", &crate::shell::quote(path)),
            },
            None => ConfigError::Parse {
                path: path.to_path_buf(),
                error: Box::new(source),
            },
        })?;
        config
            .validate()
            .map_err(|(field, problem)| ConfigError::Invalid {
                path: path.to_path_buf(),
                field,
                problem,
            })?;
        Ok(LoadedConfig {
            path: path.to_path_buf(),
            config,
        })
    }

    /// Renders the config as TOML.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks everything that can be checked without touching other files: the offending
    /// field and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, problem: String| Err((field.to_string(), problem));
        if self.chains.is_empty() {
            return bad(
                "chain",
                "at least one [[chain]] with an `id` is required".into(),
            );
        }
        for (i, chain) in self.chains.iter().enumerate() {
            if !ChainId::is_valid(&chain.id) {
                return bad(
                    &format!("chain[{i}].id"),
                    format!(
                        "`{}` is not a chain ID: 1 to 50 characters of A-Z a-z 0-9 . _ -",
                        chain.id
                    ),
                );
            }
            if chain.max_height_jump == Some(0) {
                return bad(
                    &format!("chain[{i}].max_height_jump"),
                    "0 would refuse every new height; leave it out for the default".into(),
                );
            }
            if self.chains[..i].iter().any(|c| c.id == chain.id) {
                return bad(
                    &format!("chain[{i}].id"),
                    format!("chain `{}` is listed twice", chain.id),
                );
            }
        }
        if self.nodes.is_empty() {
            return bad(
                "node",
                "at least one [[node]] with an `address` is required".into(),
            );
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if self.nodes[..i].iter().any(|n| n.address == node.address) {
                return bad(
                    &format!("node[{i}].address"),
                    format!("node `{}` is listed twice", node.address),
                );
            }
        }
        let t = &self.timeouts;
        for (field, value) in [
            ("timeouts.node_handshake_ms", t.node_handshake_ms),
            ("timeouts.node_idle_ms", t.node_idle_ms),
            ("timeouts.node_write_ms", t.node_write_ms),
            ("timeouts.redial_ms", t.redial_ms),
            ("timeouts.sign_attempt_ms", t.sign_attempt_ms),
            ("timeouts.sign_total_ms", t.sign_total_ms),
            ("timeouts.catch_up_ms", t.catch_up_ms),
        ] {
            if value == 0 || value > 60_000 {
                return bad(field, format!("{value} is outside 1..=60000"));
            }
        }
        if t.sign_attempt_ms > t.sign_total_ms {
            return bad(
                "timeouts.sign_attempt_ms",
                "must not exceed timeouts.sign_total_ms".into(),
            );
        }
        keys::validate(self)
    }
}

impl ThresholdConfig {
    /// Checks the section on its own; field names are relative to it (`peer[0].id`).
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, problem: String| Err((field.to_string(), problem));
        let Ok(n) = u16::try_from(self.peers.len() + 1) else {
            return bad("peer", "too many peers".into());
        };
        match check_threshold(self.threshold, n) {
            Ok(()) => {}
            Err(e @ ThresholdError::TooManyShares { .. }) => return bad("peer", e.to_string()),
            Err(e) => return bad("threshold", e.to_string()),
        }
        // Ids are 1..=n after a split or a DKG; a refresh that removed a cosigner leaves a
        // gap, so any distinct cosigner numbers are accepted here and the key share decides.
        let max = crate::threshold::key_share::MAX_COSIGNERS;
        if self.id == 0 || self.id > max {
            return bad("id", format!("{} is outside 1..={max}", self.id));
        }
        let mut seen = vec![self.id];
        let mut pins: Vec<&str> = Vec::new();
        for (i, peer) in self.peers.iter().enumerate() {
            check_peer(peer, &format!("peer[{i}]"), &seen, &pins)?;
            seen.push(peer.id);
            pins.push(&peer.cert_sha256);
        }
        if self.joining.len() > 1 {
            return bad(
                "joining",
                format!(
                    "{} cosigners are joining: add one at a time (`cosigner add-peer --cancel \
                     ID` removes one)",
                    self.joining.len()
                ),
            );
        }
        for (i, joining) in self.joining.iter().enumerate() {
            check_peer(joining, &format!("joining[{i}]"), &seen, &pins)?;
            seen.push(joining.id);
            pins.push(&joining.cert_sha256);
            joining_keeps_majority(self.threshold, n)
                .map_err(|problem| (format!("joining[{i}]"), problem))?;
        }
        Ok(())
    }
}

/// Whether a membership of `n` cosigners with threshold `t` can take one more: the new
/// membership must keep `t > (n + 1)/2`. Otherwise what to do instead.
pub(super) fn joining_keeps_majority(t: u16, n: u16) -> Result<(), String> {
    let grown = n.saturating_add(1);
    check_threshold(t, grown).map_err(|e| {
        format!(
            "adding a cosigner to this {t}-of-{n} cluster would make it {t}-of-{grown}, \
             and {e}. A refresh keeps the threshold, so first remove a cosigner (`cosigner \
             refresh --remove ID`, then add one to get back to {n}), or make a new key with \
             a larger threshold (`split-key --dkg`)"
        )
    })
}

/// One `[[threshold.peer]]` or `[[threshold.joining]]` entry: its id not among `seen`
/// (this cosigner and the entries before), its fingerprint not among `pins`.
fn check_peer(
    peer: &PeerConfig,
    field: &str,
    seen: &[u16],
    pins: &[&str],
) -> Result<(), (String, String)> {
    let max = crate::threshold::key_share::MAX_COSIGNERS;
    if peer.id == 0 || peer.id > max || seen.contains(&peer.id) {
        return Err((
            format!("{field}.id"),
            format!("{} is outside 1..={max} or used twice", peer.id),
        ));
    }
    split_host_port(&peer.address).map_err(|e| (format!("{field}.address"), e))?;
    if !is_fingerprint(&peer.cert_sha256) {
        return Err((
            format!("{field}.cert_sha256"),
            "expected 64 lowercase hex digits".into(),
        ));
    }
    if pins.contains(&peer.cert_sha256.as_str()) {
        return Err((
            format!("{field}.cert_sha256"),
            "is another cosigner's certificate too: every cosigner has its own".into(),
        ));
    }
    Ok(())
}

/// Whether `s` is a SHA-256 fingerprint as configs hold it: 64 lowercase hex digits.
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
