//! Pinning a cosigner that is being added (`cosigner add-peer`), as a pure edit of the config.
//!
//! A joining cosigner is listed in `[[threshold.joining]]`: its certificate is pinned, so
//! the join ceremony can authenticate it, but it is not a member (`start` refuses its
//! connections and never signs with it) until `cosigner refresh --add` makes it one. The edit
//! keeps the file's text: the entry is appended (or its block removed), and the result is
//! used only if it parses to exactly the edited config; otherwise the whole config is
//! rendered anew, which keeps every field but not comments.

use super::validate::joining_keeps_majority;
use super::{Config, Mode, PeerConfig};

/// Why a joining entry cannot be added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoiningError {
    /// The directory holds the whole key; there is no cluster to add to.
    #[error("this is a single-key signer's directory: it has no cluster to add a cosigner to")]
    Single,
    /// The directory holds shares of several keys.
    #[error(
        "this directory holds several keys ([[key]]): adding a cosigner to one of them is not \
         supported yet"
    )]
    SeveralKeys,
    /// The id is this cosigner's or a peer's.
    #[error(
        "cosigner {0} is already a member of this cluster: choose an unused id for the new \
         cosigner; to replace a lost host, first remove it with `cosigner refresh --remove {0}`"
    )]
    AlreadyMember(u16),
    /// Another cosigner is joining already.
    #[error(
        "cosigner {0} is already joining: cosigners are added one at a time; finish its join, \
         or cancel it with `cosigner add-peer --config FILE --cancel {0}`"
    )]
    AlreadyJoining(u16),
    /// The fingerprint is not 64 hex digits.
    #[error(
        "`{0}` is not a certificate fingerprint: give the 64 hex digits of the new host's \
         certificate SHA-256 (as `cosigner enroll` printed it on that host)"
    )]
    BadFingerprint(String),
    /// The fingerprint is a member's certificate.
    #[error(
        "that certificate is cosigner {0}'s: the new host needs a certificate of its own (run \
         `cosigner enroll` on it)"
    )]
    SameCertificate(u16),
    /// The membership with the new cosigner would not keep `t > n/2`.
    #[error("{0}")]
    NoMajority(String),
    /// `--cancel` named a cosigner that is not joining.
    #[error("cosigner {id} is not joining (joining: {joining}): nothing to cancel")]
    NotJoining {
        /// The id given.
        id: u16,
        /// The joining ids, as a list for the message.
        joining: String,
    },
    /// The edited config fails validation (an id or address out of range, ...).
    #[error("field `{field}`: {problem}")]
    Invalid {
        /// The offending key, as its TOML path.
        field: String,
        /// What is wrong with its value.
        problem: String,
    },
}

/// `cert_sha256` as configs hold it: 64 lowercase hex digits (colons and upper case, as some
/// tools print fingerprints, are accepted and dropped).
pub fn normalize_fingerprint(given: &str) -> Result<String, JoiningError> {
    let fp: String = given
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if super::is_fingerprint(&fp) {
        Ok(fp)
    } else {
        Err(JoiningError::BadFingerprint(given.to_string()))
    }
}

/// `config` with `peer` pinned as joining its one-key cluster. `peer.cert_sha256` must be
/// normalized ([`normalize_fingerprint`]).
pub fn add_joining(config: &Config, peer: PeerConfig) -> Result<Config, JoiningError> {
    let mut edited = config.clone();
    let th = match &mut edited.mode {
        Mode::Threshold(th) => th,
        Mode::Single(_) => return Err(JoiningError::Single),
        Mode::Keys(_) => return Err(JoiningError::SeveralKeys),
    };
    if peer.id == th.id || th.peers.iter().any(|p| p.id == peer.id) {
        return Err(JoiningError::AlreadyMember(peer.id));
    }
    if let Some(j) = th.joining.first() {
        return Err(JoiningError::AlreadyJoining(j.id));
    }
    if !super::is_fingerprint(&peer.cert_sha256) {
        return Err(JoiningError::BadFingerprint(peer.cert_sha256));
    }
    if let Some(p) = th.peers.iter().find(|p| p.cert_sha256 == peer.cert_sha256) {
        return Err(JoiningError::SameCertificate(p.id));
    }
    let n = u16::try_from(th.peers.len() + 1).unwrap_or(u16::MAX);
    joining_keeps_majority(th.threshold, n).map_err(JoiningError::NoMajority)?;
    th.joining.push(peer);
    edited
        .validate()
        .map_err(|(field, problem)| JoiningError::Invalid { field, problem })?;
    Ok(edited)
}

/// `config` without the joining cosigner `id`.
pub fn cancel_joining(config: &Config, id: u16) -> Result<Config, JoiningError> {
    let mut edited = config.clone();
    let th = match &mut edited.mode {
        Mode::Threshold(th) => th,
        Mode::Single(_) => return Err(JoiningError::Single),
        Mode::Keys(_) => return Err(JoiningError::SeveralKeys),
    };
    if !th.joining.iter().any(|j| j.id == id) {
        let ids: Vec<String> = th.joining.iter().map(|j| j.id.to_string()).collect();
        return Err(JoiningError::NotJoining {
            id,
            joining: if ids.is_empty() {
                "none".into()
            } else {
                ids.join(", ")
            },
        });
    }
    th.joining.retain(|j| j.id != id);
    Ok(edited)
}

/// `config` with the joining cosigner `id` made a member: its entry moved from the joining
/// entries to the peers, as a join that committed leaves it.
pub fn promote_joining(config: &Config, id: u16) -> Result<Config, JoiningError> {
    let mut edited = cancel_joining(config, id)?;
    let entry = config
        .threshold()
        .and_then(|th| th.joining.iter().find(|j| j.id == id))
        .cloned();
    match (&mut edited.mode, entry) {
        (Mode::Threshold(th), Some(entry)) => {
            th.peers.push(entry);
            th.peers.sort_by_key(|p| p.id);
        }
        _ => {
            return Err(JoiningError::NotJoining {
                id,
                joining: "none".into(),
            })
        }
    }
    edited
        .validate()
        .map_err(|(field, problem)| JoiningError::Invalid { field, problem })?;
    Ok(edited)
}

const HEADER: &str = "[[threshold.joining]]";

/// The text of `edited` made from `original` (the file `from` was parsed from): the joining
/// entries appended or their blocks cut out when that gives exactly `edited`, else `edited`
/// rendered whole.
pub fn edited_text(original: &str, edited: &Config) -> String {
    let candidate = match edited.threshold() {
        Some(th) if th.joining.is_empty() => without_joining_blocks(original),
        Some(th) => {
            let mut text = without_joining_blocks(original);
            for j in &th.joining {
                if !text.ends_with('\n') && !text.is_empty() {
                    text.push('\n');
                }
                // toml renders the strings with their quoting and escapes.
                let entry = toml::to_string(j).unwrap_or_default();
                text.push_str(&format!("\n{HEADER}\n{entry}"));
            }
            text
        }
        None => String::new(),
    };
    match toml::from_str::<Config>(&candidate) {
        Ok(parsed) if &parsed == edited => candidate,
        _ => edited.to_toml(),
    }
}

/// `text` without any `[[threshold.joining]]` block (its header up to the next table
/// header), and without the blank line appended before it.
fn without_joining_blocks(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        let header = line.trim_start().starts_with('[');
        if header {
            skipping = line.trim() == HEADER;
            if skipping {
                while out.last().is_some_and(|l| l.trim().is_empty()) {
                    out.pop();
                }
            }
        }
        if !skipping {
            out.push(line);
        }
    }
    out.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(peers: u16, t: u16) -> Config {
        let text = format!(
            "# a comment that stays\nstate_dir = \"state\"\nidentity_key = \"identity.key\"\n\n\
             [[chain]]\nid = \"c\"\n\n[[node]]\naddress = \"tcp://127.0.0.1:26659\"\n\
             protocol = \"v0.38\"\n\n[threshold]\nid = 1\nthreshold = {t}\n\
             listen = \"127.0.0.1:7101\"\nkey_share = \"key_share.json\"\n\
             tls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n\
             cluster_ca = \"tls/cluster-ca.pem\"\n{}\n[metrics]\nlisten = \"127.0.0.1:9000\"\n",
            (2..=peers + 1)
                .map(|id| format!(
                    "\n[[threshold.peer]]\nid = {id}\naddress = \"127.0.0.1:710{id}\"\n\
                     cert_sha256 = \"{}\"\n",
                    format!("{id:02x}").repeat(32)
                ))
                .collect::<String>()
        );
        toml::from_str(&text).unwrap()
    }

    fn text_of(peers: u16, t: u16) -> String {
        // The same config as written with a comment, to see that the text is kept.
        format!("# a comment that stays\n{}", sample(peers, t).to_toml())
    }

    fn newcomer(id: u16) -> PeerConfig {
        PeerConfig {
            id,
            address: "10.0.0.9:7104".into(),
            cert_sha256: "ee".repeat(32),
        }
    }

    #[test]
    fn adding_changes_only_the_joining_entry_and_cancelling_restores_the_text() {
        let original = text_of(3, 3);
        let config: Config = toml::from_str(&original).unwrap();
        let added = add_joining(&config, newcomer(5)).unwrap();
        let Mode::Threshold(th) = &added.mode else {
            unreachable!()
        };
        assert_eq!(th.joining, vec![newcomer(5)]);
        // Every other field is the same.
        let mut back = added.clone();
        if let Mode::Threshold(th) = &mut back.mode {
            th.joining.clear();
        }
        assert_eq!(back, config);
        let text = edited_text(&original, &added);
        assert!(text.starts_with(&original), "{text}");
        assert!(text.contains("[[threshold.joining]]\nid = 5\n"), "{text}");
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), added);
        let cancelled = cancel_joining(&added, 5).unwrap();
        assert_eq!(cancelled, config);
        assert_eq!(edited_text(&text, &cancelled), original);
    }

    #[test]
    fn refuses_what_would_not_be_a_sound_membership() {
        let config = sample(3, 3);
        for (peer, expected) in [
            (newcomer(1), JoiningError::AlreadyMember(1)),
            (newcomer(3), JoiningError::AlreadyMember(3)),
            (
                PeerConfig {
                    cert_sha256: "03".repeat(32),
                    ..newcomer(5)
                },
                JoiningError::SameCertificate(3),
            ),
        ] {
            assert_eq!(add_joining(&config, peer), Err(expected));
        }
        let added = add_joining(&config, newcomer(5)).unwrap();
        assert_eq!(
            add_joining(
                &added,
                PeerConfig {
                    cert_sha256: "dd".repeat(32),
                    ..newcomer(6)
                }
            ),
            Err(JoiningError::AlreadyJoining(5))
        );
        let Err(JoiningError::Invalid { field, .. }) = add_joining(
            &config,
            PeerConfig {
                address: "no port".into(),
                ..newcomer(5)
            },
        ) else {
            panic!("a bad address was accepted")
        };
        assert_eq!(field, "threshold.joining[0].address");
        // 2-of-3 plus one is 2-of-4: two disjoint pairs could sign.
        let Err(JoiningError::NoMajority(msg)) = add_joining(&sample(2, 2), newcomer(4)) else {
            panic!("2-of-4 was accepted")
        };
        for needle in ["2-of-3", "2-of-4", "refresh --remove", "split-key --dkg"] {
            assert!(msg.contains(needle), "`{needle}` missing: {msg}");
        }
        assert!(matches!(
            cancel_joining(&config, 5),
            Err(JoiningError::NotJoining { id: 5, .. })
        ));
    }

    #[test]
    fn promoting_moves_the_joining_entry_to_the_peers() {
        let config = add_joining(&sample(1, 2), newcomer(4)).unwrap();
        let promoted = promote_joining(&config, 4).unwrap();
        let th = promoted.threshold().unwrap();
        assert!(th.joining.is_empty());
        assert_eq!(th.peers.iter().map(|p| p.id).collect::<Vec<_>>(), [2, 4]);
        assert!(matches!(
            promote_joining(&sample(1, 2), 4),
            Err(JoiningError::NotJoining { id: 4, .. })
        ));
    }

    #[test]
    fn fingerprints_are_normalized_or_refused() {
        let fp = "AB:".repeat(31) + "AB";
        assert_eq!(normalize_fingerprint(&fp).unwrap(), "ab".repeat(32));
        assert!(matches!(
            normalize_fingerprint("abc"),
            Err(JoiningError::BadFingerprint(_))
        ));
        assert!(normalize_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_config_loaded_with_a_joining_entry_is_checked() {
        let mut config = sample(3, 3);
        let Mode::Threshold(th) = &mut config.mode else {
            unreachable!()
        };
        th.joining = vec![
            newcomer(5),
            PeerConfig {
                cert_sha256: "dd".repeat(32),
                ..newcomer(6)
            },
        ];
        assert_eq!(config.validate().unwrap_err().0, "threshold.joining");
        let Mode::Threshold(th) = &mut config.mode else {
            unreachable!()
        };
        th.joining = vec![PeerConfig {
            cert_sha256: "02".repeat(32),
            ..newcomer(5)
        }];
        assert_eq!(
            config.validate().unwrap_err().0,
            "threshold.joining[0].cert_sha256"
        );
        let Mode::Threshold(th) = &mut config.mode else {
            unreachable!()
        };
        th.joining = vec![newcomer(2)];
        assert_eq!(config.validate().unwrap_err().0, "threshold.joining[0].id");
        let mut small = sample(2, 2);
        let Mode::Threshold(th) = &mut small.mode else {
            unreachable!()
        };
        th.joining = vec![newcomer(4)];
        let (field, problem) = small.validate().unwrap_err();
        assert_eq!(field, "threshold.joining[0]");
        assert!(problem.contains("2-of-4"), "{problem}");
    }
}
