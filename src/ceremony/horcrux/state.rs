//! Horcrux's sign state files, read into our [`SignState`], and the choice of the watermark
//! an imported cosigner starts from (pure, but for reading the files).
//!
//! A Horcrux state records the sign bytes it signed last; we keep them (parsed strictly, on
//! the right chain, at the stated position), so a request for those very bytes may be signed
//! again, and anything else at that position is refused. Its `signature` is not kept: in the
//! share state it is a partial signature, and a threshold participant stores none.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::consensus::canonical::{self, same_except_timestamp};
use crate::consensus::Step;
use crate::sign_state::{LastSigned, Position, SignState};

/// A state file is a few hundred bytes.
const MAX_STATE_FILE_BYTES: u64 = 64 * 1024;

/// Which of Horcrux's two state files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HorcruxStateKind {
    /// `<chain-id>_share_sign_state.json`: what this cosigner released a share for.
    ShareSignState,
    /// `<chain-id>_priv_validator_state.json`: what the cluster signed.
    PrivValidatorState,
}

impl HorcruxStateKind {
    pub(crate) const ALL: [HorcruxStateKind; 2] = [
        HorcruxStateKind::ShareSignState,
        HorcruxStateKind::PrivValidatorState,
    ];

    /// The file's path in Horcrux's state directory (`signer/config.go`).
    pub(crate) fn path(self, state_dir: &Path, chain_id: &str) -> PathBuf {
        state_dir.join(match self {
            HorcruxStateKind::ShareSignState => format!("{chain_id}_share_sign_state.json"),
            HorcruxStateKind::PrivValidatorState => {
                format!("{chain_id}_priv_validator_state.json")
            }
        })
    }
}

/// Horcrux's `SignState` as CometBFT's `libs/json` writes it (int64 as strings); numbers are
/// accepted too, as Horcrux's docs show hand-written files with them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateJson {
    height: serde_json::Value,
    round: serde_json::Value,
    step: i64,
    /// Horcrux's nonce bookkeeping: no meaning here.
    #[serde(default, rename = "nonce_public")]
    _nonce_public: serde::de::IgnoredAny,
    /// Not kept (see the module docs).
    #[serde(default, rename = "signature")]
    _signature: serde::de::IgnoredAny,
    #[serde(default)]
    signbytes: Option<String>,
    #[serde(default, rename = "vote_ext_signature")]
    _vote_ext_signature: serde::de::IgnoredAny,
}

fn integer(field: &str, value: &serde_json::Value) -> Result<i64, String> {
    let parsed = match value {
        serde_json::Value::String(s) => s.parse::<i64>().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    };
    match parsed {
        Some(v) if v >= 0 => Ok(v),
        _ => Err(format!("{field}: `{value}` is not a non-negative integer")),
    }
}

/// Parses a Horcrux state file's contents for `chain_id`.
pub(crate) fn parse(json: &str, chain_id: &str) -> Result<SignState, String> {
    let raw: StateJson =
        serde_json::from_str(json).map_err(|e| format!("not a Horcrux sign state: {e}"))?;
    let height = integer("height", &raw.height)?;
    let round = integer("round", &raw.round)?;
    if round > i64::from(i32::MAX) {
        return Err(format!("round: {round} is out of range"));
    }
    let step = u8::try_from(raw.step)
        .ok()
        .filter(|s| *s <= Step::Precommit.number())
        .ok_or_else(|| format!("step: {} is not 0..=3", raw.step))?;
    let stated = Position {
        height,
        round,
        step,
    };
    let last = match raw.signbytes.filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => {
            let bytes = hex::decode(&text).map_err(|e| format!("signbytes: not hex: {e}"))?;
            let doc = canonical::parse(&bytes)
                .map_err(|e| format!("signbytes are not vote or proposal sign bytes: {e}"))?;
            if doc.chain_id != chain_id {
                return Err(format!(
                    "signbytes are for chain `{}`, not `{chain_id}`",
                    doc.chain_id
                ));
            }
            let found = Position::of(&doc.hrs);
            if found != stated {
                return Err(format!(
                    "signbytes are for {found}, but the state says {stated}"
                ));
            }
            Some(LastSigned {
                doc,
                signature: None,
            })
        }
    };
    let state = SignState {
        height,
        round,
        step,
        last,
    };
    state.validate()?;
    Ok(state)
}

/// Reads one Horcrux state file; `Ok(None)` if it does not exist.
pub(crate) fn load(path: &Path, chain_id: &str) -> Result<Option<SignState>, String> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
    };
    if len > MAX_STATE_FILE_BYTES {
        return Err(format!("{}: {len} bytes; not a sign state", path.display()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(&text, chain_id)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The higher of Horcrux's two states. At one position, the one that records sign bytes
/// wins; two that record sign bytes differing beyond the timestamp are a contradiction.
pub(crate) fn higher(a: SignState, b: SignState) -> Result<SignState, String> {
    match a.position().cmp(&b.position()) {
        std::cmp::Ordering::Greater => Ok(a),
        std::cmp::Ordering::Less => Ok(b),
        std::cmp::Ordering::Equal => match (&a.last, &b.last) {
            (Some(x), Some(y))
                if x.doc.sign_bytes != y.doc.sign_bytes
                    && !same_except_timestamp(&x.doc, &y.doc) =>
            {
                Err(format!(
                    "Horcrux's share and cluster states record different signatures at {}: \
                     do not import this host before finding out why",
                    a.position()
                ))
            }
            (None, Some(_)) => Ok(b),
            _ => Ok(a),
        },
    }
}

/// What to write for a chain: `Some(state)` to raise our watermark to, or `None` if the
/// existing one is already as high (a watermark is never lowered).
pub(crate) fn to_write(existing: Option<&SignState>, imported: SignState) -> Option<SignState> {
    match existing {
        Some(have) if have.position() >= imported.position() => None,
        _ => Some(imported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::Step::{Precommit, Prevote};
    use crate::consensus::{BlockId, Hrs, SignDoc, Timestamp};

    const CHAIN: &str = "test-chain";

    /// A document with real canonical sign bytes, as Horcrux's files hold them.
    fn doc(height: i64, round: i64, step: Step, block: Option<u8>, ts: i64) -> SignDoc {
        let block_id = block.map(|b| BlockId {
            hash: vec![b; 32],
            part_set_total: 1,
            part_set_hash: vec![b ^ 0xff; 32],
        });
        let hrs = Hrs {
            height,
            round,
            step,
        };
        let timestamp = Timestamp {
            seconds: 1_700_000_000 + ts,
            nanos: 0,
        };
        let bytes = canonical::vote_bytes(CHAIN, hrs, block_id.as_ref(), timestamp);
        canonical::parse(&bytes).unwrap()
    }

    fn hex_bytes(state: &SignState) -> String {
        hex::encode_upper(&state.last.as_ref().unwrap().doc.sign_bytes)
    }

    #[test]
    fn reads_what_horcrux_writes() {
        let signed = SignState::after(&doc(12, 1, Precommit, Some(1), 5), None);
        // CometBFT libs/json: int64 as strings, int8 as a number.
        let json = format!(
            r#"{{
  "height": "12",
  "round": "1",
  "step": 3,
  "nonce_public": null,
  "signature": "AAAA",
  "signbytes": "{}",
  "vote_ext_signature": "AAAA"
}}"#,
            hex_bytes(&signed)
        );
        assert_eq!(parse(&json, CHAIN).unwrap(), signed);
        // As Horcrux's migration guide has the operator write it.
        let bare = parse(r#"{"height": "361402", "round": "0", "step": 3}"#, CHAIN).unwrap();
        assert_eq!(bare.position().to_string(), "361402/0/precommit");
        assert!(bare.last.is_none());
        let numbers = parse(r#"{"height": 5, "round": 0, "step": 0}"#, CHAIN).unwrap();
        assert_eq!(numbers.height, 5);
    }

    #[test]
    fn refuses_what_does_not_add_up() {
        let signed = SignState::after(&doc(12, 1, Precommit, Some(1), 5), None);
        let with = |h: &str, s: u8| {
            format!(
                r#"{{"height": "{h}", "round": "1", "step": {s}, "signbytes": "{}"}}"#,
                hex_bytes(&signed)
            )
        };
        assert!(parse(&with("13", 3), CHAIN)
            .unwrap_err()
            .contains("but the state says"));
        assert!(parse(&with("12", 3), "other")
            .unwrap_err()
            .contains("not `other`"));
        for bad in [
            r#"{"height": "-1", "round": "0", "step": 0}"#,
            r#"{"height": "1", "round": "0", "step": 4}"#,
            r#"{"height": "x", "round": "0", "step": 0}"#,
            r#"{"height": "1", "round": "0", "step": 1, "signbytes": "zz"}"#,
            r#"{"height": "1", "round": "0", "step": 1, "block_id": null}"#,
        ] {
            assert!(parse(bad, CHAIN).is_err(), "{bad}");
        }
    }

    #[test]
    fn takes_the_higher_state_and_never_lowers() {
        let low = SignState::after(&doc(10, 0, Prevote, Some(1), 1), None);
        let high = SignState::after(&doc(10, 0, Precommit, Some(1), 1), None);
        assert_eq!(higher(low.clone(), high.clone()).unwrap(), high);
        assert_eq!(higher(high.clone(), low.clone()).unwrap(), high);
        let bare = SignState {
            last: None,
            ..high.clone()
        };
        assert_eq!(higher(bare.clone(), high.clone()).unwrap(), high);
        assert_eq!(higher(high.clone(), bare).unwrap(), high);
        let other_block = SignState::after(&doc(10, 0, Precommit, Some(2), 1), None);
        assert!(higher(high.clone(), other_block)
            .unwrap_err()
            .contains("different signatures"));
        let later_stamp = SignState::after(&doc(10, 0, Precommit, Some(1), 9), None);
        assert!(higher(high.clone(), later_stamp).is_ok());

        assert_eq!(to_write(None, low.clone()), Some(low.clone()));
        assert_eq!(to_write(Some(&low), high.clone()), Some(high.clone()));
        assert_eq!(to_write(Some(&high), low.clone()), None);
        assert_eq!(to_write(Some(&high), high.clone()), None);
    }

    #[test]
    fn a_missing_file_is_none_and_names_the_file_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = HorcruxStateKind::ShareSignState.path(dir.path(), CHAIN);
        assert!(path.ends_with(format!("{CHAIN}_share_sign_state.json")));
        assert_eq!(load(&path, CHAIN).unwrap(), None);
        std::fs::write(&path, "{").unwrap();
        assert!(load(&path, CHAIN)
            .unwrap_err()
            .contains("share_sign_state.json"));
    }
}
