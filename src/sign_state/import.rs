//! Bringing a validator's existing watermark in: parsing CometBFT's
//! `priv_validator_state.json`, writing it into a state file without ever lowering what is
//! already there, and describing a state for `cosigner state show`.

use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use super::rules::{LastSigned, Position, SignState};
use super::store::{StateError, StateFile};
use crate::consensus::canonical::{self, SignBytesError};
use crate::consensus::{SignDoc, Step, Timestamp};

/// Why a state cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not the JSON FilePV writes; carries the parser's reason.
    #[error("not a CometBFT priv_validator_state.json: {0}")]
    Json(String),
    /// One field's value cannot be used.
    #[error("invalid {field}: {reason}")]
    Field {
        /// The JSON field.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The `signbytes` field holds no vote or proposal.
    #[error("signbytes are not vote or proposal sign bytes: {0}")]
    SignBytes(SignBytesError),
    /// The `signbytes` are at another position than the `height`/`round`/`step` fields.
    #[error("signbytes are for {found}, but the state says {stated}")]
    Disagrees {
        /// The position the fields give.
        stated: Position,
        /// The position the sign bytes encode.
        found: Position,
    },
    /// The `signbytes` are for another chain than the one imported into.
    #[error("the state is for chain `{found}`, not `{expected}`")]
    WrongChain {
        /// The chain imported into.
        expected: String,
        /// The chain the sign bytes name.
        found: String,
    },
    /// Importing would lower the watermark; refused without `--force`.
    #[error(
        "the existing state is at {existing}, above the imported {imported}; importing would \
         lower the watermark (use --force only if you are sure the existing state is wrong)"
    )]
    WouldLower {
        /// The watermark on disk.
        existing: Position,
        /// The watermark in the imported file.
        imported: Position,
    },
    /// Same position, another signature: one of the two is not the validator's last; refused
    /// without `--force`.
    #[error(
        "the existing state is at the same position {0} but records a different signature; \
         refusing to replace it without --force"
    )]
    DiffersAtSamePosition(Position),
    /// The state file cannot be opened, read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

// By hand rather than `#[from]`: the message includes the cause, so it is not a `source`.
impl From<SignBytesError> for ImportError {
    fn from(e: SignBytesError) -> Self {
        ImportError::SignBytes(e)
    }
}

/// What [`import_into`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// There was no state file; it now holds the imported state.
    Created,
    /// The state file already held the imported state.
    Unchanged,
    /// The state file held another state, now replaced.
    Replaced {
        /// The state that was replaced, for the operator's record.
        previous: Box<SignState>,
    },
}

/// `priv_validator_state.json` as FilePV writes it: height a string, round and step numbers,
/// signature base64 and signbytes hex, both omitted when empty.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePvState {
    height: String,
    round: i64,
    step: u8,
    #[serde(default)]
    signature: Option<String>,
    #[serde(default)]
    signbytes: Option<String>,
}

/// Parses CometBFT's `priv_validator_state.json`. The sign bytes are parsed strictly and
/// must agree with the stated height, round and step.
pub fn import_cometbft_state(json: &str) -> Result<SignState, ImportError> {
    import_with(json, canonical::parse)
}

fn import_with(
    json: &str,
    parse: impl FnOnce(&[u8]) -> Result<SignDoc, SignBytesError>,
) -> Result<SignState, ImportError> {
    let raw: FilePvState = serde_json::from_str(json).map_err(|e| {
        let hint = if json.contains("\"block_id\"") {
            " (this looks like a tmkms state file, which has no sign bytes; import the \
             node's priv_validator_state.json instead)"
        } else {
            ""
        };
        ImportError::Json(format!("{e}{hint}"))
    })?;
    let field = |field: &'static str, reason: String| ImportError::Field { field, reason };
    let height: i64 = raw
        .height
        .parse()
        .map_err(|e| field("height", format!("`{}`: {e}", raw.height)))?;
    if height < 0 {
        return Err(field("height", format!("{height} is negative")));
    }
    if !(0..=i64::from(i32::MAX)).contains(&raw.round) {
        return Err(field("round", format!("{} is out of range", raw.round)));
    }
    if raw.step > Step::Precommit.number() {
        return Err(field("step", format!("{} is not 0..=3", raw.step)));
    }
    let stated = Position {
        height,
        round: raw.round,
        step: raw.step,
    };
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let last = match (nonempty(raw.signbytes), nonempty(raw.signature)) {
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(field(
                "signature",
                "signature and signbytes must be present together".into(),
            ))
        }
        (Some(hex_bytes), Some(sig)) => {
            let bytes =
                hex::decode(&hex_bytes).map_err(|e| field("signbytes", format!("not hex: {e}")))?;
            let sig = base64::engine::general_purpose::STANDARD
                .decode(&sig)
                .map_err(|e| field("signature", format!("not base64: {e}")))?;
            let signature = <[u8; 64]>::try_from(sig.as_slice())
                .map_err(|_| field("signature", format!("{} bytes, not 64", sig.len())))?;
            let doc = parse(&bytes)?;
            let found = Position::of(&doc.hrs);
            if found != stated {
                return Err(ImportError::Disagrees { stated, found });
            }
            Some(LastSigned {
                doc,
                signature: Some(signature),
            })
        }
    };
    let state = SignState {
        height,
        round: raw.round,
        step: raw.step,
        last,
    };
    state.validate().map_err(|reason| field("state", reason))?;
    Ok(state)
}

/// `state` as FilePV writes `priv_validator_state.json` (`cmtjson.MarshalIndent` with a
/// two-space indent, no trailing newline): the exact inverse of [`import_cometbft_state`].
/// Sign bytes and signature are written together or not at all, because FilePV panics on
/// sign bytes without a signature; without them (no signature stored, as a threshold
/// participant keeps it), FilePV refuses anything at exactly this position and signs above
/// it.
pub fn cometbft_state_json(state: &SignState) -> String {
    let mut out = format!(
        "{{\n  \"height\": \"{}\",\n  \"round\": {},\n  \"step\": {}",
        state.height, state.round, state.step
    );
    if let Some((last, signature)) = state
        .last
        .as_ref()
        .and_then(|l| l.signature.map(|s| (l, s)))
    {
        out.push_str(&format!(
            ",\n  \"signature\": \"{}\",\n  \"signbytes\": \"{}\"",
            base64::engine::general_purpose::STANDARD.encode(signature),
            hex::encode_upper(&last.doc.sign_bytes)
        ));
    }
    out.push_str("\n}");
    out
}

/// A `--state CHAIN_ID=PATH` argument (of `split-key` or `init-single`) that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--state `{arg}`: {problem}")]
pub struct StateArgError {
    /// The argument as given.
    pub arg: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Reads each `--state CHAIN_ID=PATH` (a CometBFT `priv_validator_state.json` for one of
/// `chain_ids`, at most one per chain): the states a new cosigner directory starts from.
pub fn read_state_args(
    args: &[String],
    chain_ids: &[String],
) -> Result<Vec<(String, SignState)>, StateArgError> {
    let mut states: Vec<(String, SignState)> = Vec::new();
    for arg in args {
        let bad = |problem: String| StateArgError {
            arg: arg.clone(),
            problem,
        };
        let (chain, path) = arg
            .split_once('=')
            .ok_or_else(|| bad("expected CHAIN_ID=PATH".into()))?;
        if !chain_ids.iter().any(|c| c == chain) {
            return Err(bad(format!("chain `{chain}` is not given with --chain-id")));
        }
        if states.iter().any(|(c, _)| c == chain) {
            return Err(bad(format!("chain `{chain}` has two --state files")));
        }
        let json = std::fs::read_to_string(path).map_err(|e| bad(format!("{path}: {e}")))?;
        let state = import_cometbft_state(&json).map_err(|e| bad(format!("{path}: {e}")))?;
        states.push((chain.to_string(), state));
    }
    Ok(states)
}

/// Writes the initial state file of every chain of a new cosigner directory into
/// `state_dir`: the `seeded` state where one is given, an empty one otherwise. This is the
/// one moment an empty state is written without an operator asking for it by name.
pub fn write_initial_states(
    state_dir: &Path,
    chain_ids: &[String],
    seeded: &[(String, SignState)],
) -> Result<(), InitialStateError> {
    for chain in chain_ids {
        let initial = seeded
            .iter()
            .find(|(c, _)| c == chain)
            .map_or_else(SignState::fresh, |(_, s)| s.clone());
        import_into(state_dir, chain, initial, false).map_err(|error| InitialStateError {
            chain: chain.clone(),
            error,
        })?;
    }
    Ok(())
}

/// Why [`write_initial_states`] failed, and for which chain.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the initial sign state of chain `{chain}`: {error}")]
pub struct InitialStateError {
    /// The chain whose state could not be written.
    pub chain: String,
    /// Why it could not be written.
    pub error: ImportError,
}

/// Writes `imported` as the state of `chain_id`, durably. Refuses to lower an existing
/// watermark, or to replace a different signature at the same position, unless `force`.
/// Fails with [`StateError::Locked`] while a cosigner holds the state.
pub fn import_into(
    state_dir: &Path,
    chain_id: &str,
    imported: SignState,
    force: bool,
) -> Result<ImportOutcome, ImportError> {
    if let Some(last) = &imported.last {
        if last.doc.chain_id != chain_id {
            return Err(ImportError::WrongChain {
                expected: chain_id.to_string(),
                found: last.doc.chain_id.clone(),
            });
        }
    }
    imported.validate().map_err(|reason| ImportError::Field {
        field: "state",
        reason,
    })?;
    let (mut file, existing) = match StateFile::open(state_dir, chain_id) {
        Ok(opened) => opened,
        Err(StateError::Missing { .. }) => {
            StateFile::create(state_dir, chain_id, &imported)?;
            return Ok(ImportOutcome::Created);
        }
        Err(e) => return Err(e.into()),
    };
    if existing == imported {
        return Ok(ImportOutcome::Unchanged);
    }
    if !force {
        let (have, new) = (existing.position(), imported.position());
        if have > new {
            return Err(ImportError::WouldLower {
                existing: have,
                imported: new,
            });
        }
        if have == new && existing.last.is_some() {
            return Err(ImportError::DiffersAtSamePosition(have));
        }
    }
    file.persist(&imported)?;
    Ok(ImportOutcome::Replaced {
        previous: Box::new(existing),
    })
}

/// A human-readable account of a state, for `cosigner state show`.
pub fn describe(state: &SignState) -> String {
    let pos = state.position();
    if pos == SignState::fresh().position() && state.last.is_none() {
        return "nothing signed yet (height 0, round 0, step 0)".to_string();
    }
    let mut out = format!(
        "watermark: height {}, round {}, step {}",
        state.height,
        state.round,
        Step::from_number(state.step)
            .map_or("none (0)".to_string(), |s| format!("{s} ({})", s.number()))
    );
    match &state.last {
        None => out.push_str(
            "\nlast signed: no sign bytes stored (a replay at this position will be refused)",
        ),
        Some(last) => {
            let d = &last.doc;
            let what = match &d.block_id {
                None => "nil".to_string(),
                Some(b) => format!(
                    "block {} (parts {}, {})",
                    hex::encode_upper(&b.hash),
                    b.part_set_total,
                    hex::encode_upper(&b.part_set_hash)
                ),
            };
            out.push_str(&format!("\nchain: {}", d.chain_id));
            out.push_str(&format!("\nlast signed: {} for {what}", d.hrs.step));
            if d.hrs.step == Step::Propose {
                out.push_str(&format!(", proof-of-lock round {}", d.pol_round));
            }
            out.push_str(&format!("\ntimestamp: {}", rfc3339(&d.timestamp)));
            out.push_str(&format!(
                "\nsign bytes: {}",
                hex::encode_upper(&d.sign_bytes)
            ));
            out.push_str(&match &last.signature {
                Some(s) => format!(
                    "\nsignature: {}",
                    base64::engine::general_purpose::STANDARD.encode(s)
                ),
                None => "\nsignature: not stored (threshold participant)".to_string(),
            });
        }
    }
    out
}

/// Formats a protobuf timestamp as RFC 3339 UTC with nanoseconds.
fn rfc3339(ts: &Timestamp) -> String {
    let days = ts.seconds.div_euclid(86_400);
    let secs = ts.seconds.rem_euclid(86_400);
    // Days to civil date (proleptic Gregorian), after H. Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ts.nanos
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::Step::{Precommit, Prevote};
    use crate::sign_state::rules::tests::{doc, CHAIN};

    const EXAMPLE: &str = r#"{
  "height": "12",
  "round": 0,
  "step": 3,
  "signature": "x+gVhxA8uarmtRlu1nMV+C/61NCeZguurvmjeC0uxMLVztp7zHigLGLNxi4KFK2dXsWYEPqQQhSWE8EtCosTBA==",
  "signbytes": "710802110C0000000000000022480A20A20082BBF9C7C0603767978E85A30D82D18FB7BFCB97741FA857B48621E17652122408011220F2258662FCC8D3F138B77FBC95747906611EF340294F1B86F615EE64CBB15EF12A0B08A5EBDCCA0610959AEF3A320D6578616D706C652D636861696E"
}"#;

    fn fake_parse(d: SignDoc) -> impl FnOnce(&[u8]) -> Result<SignDoc, SignBytesError> {
        move |_| Ok(d)
    }

    #[test]
    fn fresh_state() {
        let s = import_cometbft_state(r#"{"height": "0", "round": 0, "step": 0}"#).unwrap();
        assert_eq!(s, SignState::fresh());
        assert!(describe(&s).contains("nothing signed"));
    }

    #[test]
    fn state_with_sign_bytes_checks_they_agree() {
        let d = doc(12, 0, Precommit, Some(1), 5);
        let s = import_with(EXAMPLE, fake_parse(d.clone())).unwrap();
        assert_eq!(s.position().to_string(), "12/0/precommit");
        let last = s.last.as_ref().unwrap();
        assert_eq!(last.doc, d);
        assert_eq!(last.signature.unwrap()[..3], [0xc7, 0xe8, 0x15]);

        let err = import_with(EXAMPLE, fake_parse(doc(12, 0, Prevote, Some(1), 5))).unwrap_err();
        assert!(matches!(err, ImportError::Disagrees { .. }), "{err}");
    }

    #[test]
    fn exports_as_filepv_writes() {
        let s = import_cometbft_state(EXAMPLE).unwrap();
        assert_eq!(cometbft_state_json(&s), EXAMPLE);
        let fresh = cometbft_state_json(&SignState::fresh());
        assert_eq!(
            fresh,
            "{\n  \"height\": \"0\",\n  \"round\": 0,\n  \"step\": 0\n}"
        );
        assert_eq!(import_cometbft_state(&fresh).unwrap(), SignState::fresh());
        // Without the signature the sign bytes are left out too: position only.
        let mut unsigned = s.clone();
        unsigned.last.as_mut().unwrap().signature = None;
        let json = cometbft_state_json(&unsigned);
        assert!(
            !json.contains("signbytes") && !json.contains("signature"),
            "{json}"
        );
        let back = import_cometbft_state(&json).unwrap();
        assert_eq!(back.position(), s.position());
        assert!(back.last.is_none());
    }

    #[test]
    fn documented_example_imports() {
        let s = import_cometbft_state(EXAMPLE).unwrap();
        let last = s.last.unwrap();
        assert_eq!(last.doc.chain_id, "example-chain");
        assert_eq!(last.doc.hrs.height, 12);
        assert_eq!(last.doc.hrs.step, Precommit);
    }

    #[test]
    fn malformed_states_are_rejected() {
        let bad = [
            r#"{"height": 12, "round": 0, "step": 0}"#,
            r#"{"height": "-1", "round": 0, "step": 0}"#,
            r#"{"height": "x", "round": 0, "step": 0}"#,
            r#"{"height": "1", "round": -1, "step": 0}"#,
            r#"{"height": "1", "round": 0, "step": 4}"#,
            r#"{"height": "1", "round": 0, "step": 2, "signbytes": "00"}"#,
            r#"{"height": "1", "round": 0, "step": 2, "signature": "AA=="}"#,
            r#"{"height": "1", "round": 0, "step": 2, "signature": "AA==", "signbytes": "00"}"#,
            r#"{"height": "1", "round": 0, "step": 2, "extra": 1}"#,
        ];
        for json in bad {
            let parse = fake_parse(doc(1, 0, Prevote, None, 1));
            assert!(import_with(json, parse).is_err(), "{json}");
        }
        let tmkms = r#"{"height":"40999","round":"1","step":2,"block_id":null}"#;
        let err = import_cometbft_state(tmkms).unwrap_err().to_string();
        assert!(err.contains("tmkms"), "{err}");
    }

    #[test]
    fn empty_signature_fields_mean_none() {
        let s = import_cometbft_state(
            r#"{"height": "7", "round": 2, "step": 1, "signature": "", "signbytes": ""}"#,
        )
        .unwrap();
        assert_eq!(s.position().to_string(), "7/2/proposal");
        assert!(s.last.is_none());
        assert!(describe(&s).contains("refused"));
    }

    #[test]
    fn import_never_lowers_without_force() {
        let d = tempfile::tempdir().unwrap();
        let high = SignState::after(&doc(10, 0, Prevote, Some(1), 1), Some([1; 64]));
        let low = SignState::after(&doc(9, 3, Precommit, Some(1), 1), Some([2; 64]));
        assert_eq!(
            import_into(d.path(), CHAIN, high.clone(), false).unwrap(),
            ImportOutcome::Created
        );
        assert_eq!(
            import_into(d.path(), CHAIN, high.clone(), false).unwrap(),
            ImportOutcome::Unchanged
        );
        assert!(matches!(
            import_into(d.path(), CHAIN, low.clone(), false),
            Err(ImportError::WouldLower { .. })
        ));
        let other = SignState::after(&doc(10, 0, Prevote, Some(2), 1), Some([3; 64]));
        assert!(matches!(
            import_into(d.path(), CHAIN, other, false),
            Err(ImportError::DiffersAtSamePosition(_))
        ));
        assert_eq!(StateFile::open(d.path(), CHAIN).unwrap().1, high);

        let higher = SignState::after(&doc(11, 0, Prevote, Some(1), 1), None);
        assert_eq!(
            import_into(d.path(), CHAIN, higher.clone(), false).unwrap(),
            ImportOutcome::Replaced {
                previous: Box::new(high)
            }
        );
        assert!(matches!(
            import_into(d.path(), CHAIN, low.clone(), true).unwrap(),
            ImportOutcome::Replaced { .. }
        ));
        assert_eq!(StateFile::open(d.path(), CHAIN).unwrap().1, low);
    }

    #[test]
    fn import_refuses_other_chain_and_a_running_cosigner() {
        let d = tempfile::tempdir().unwrap();
        let s = SignState::after(&doc(10, 0, Prevote, Some(1), 1), None);
        assert!(matches!(
            import_into(d.path(), "other", s.clone(), true),
            Err(ImportError::WrongChain { .. })
        ));
        StateFile::create(d.path(), CHAIN, &SignState::fresh()).unwrap();
        let held = StateFile::open(d.path(), CHAIN).unwrap();
        assert!(matches!(
            import_into(d.path(), CHAIN, s, true),
            Err(ImportError::State(StateError::Locked(_)))
        ));
        drop(held);
    }

    #[test]
    fn describe_and_timestamps() {
        let ts = |seconds, nanos| rfc3339(&Timestamp { seconds, nanos });
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            ts(1_767_323_045, 123_456_789),
            "2026-01-02T03:04:05.123456789Z"
        );
        assert_eq!(ts(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(ts(-1, 0), "1969-12-31T23:59:59.000000000Z");
        let s = SignState::after(&doc(12, 0, Precommit, Some(1), 5), None);
        let text = describe(&s);
        assert!(
            text.contains("height 12, round 0, step precommit (3)"),
            "{text}"
        );
        assert!(text.contains("not stored"), "{text}");
        assert!(text.contains(CHAIN), "{text}");
    }
}
