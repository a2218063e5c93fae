//! The double-sign rules: a pure function deciding whether a signature may be made, given the
//! last watermark. These are CometBFT FilePV's rules (`privval/file.go`), kept at least as
//! strict: a same-position request is only answered if it matches the stored sign bytes
//! exactly or differs from them in the timestamp alone.

use std::cmp::Ordering;
use std::fmt;

use crate::consensus::canonical::same_except_timestamp;
use crate::consensus::{Hrs, SignDoc, Step, Timestamp};

/// The watermark of one chain: the highest position signed, and what was signed there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignState {
    /// The highest height signed (0 when nothing was).
    pub height: i64,
    /// The round of the last signature at `height`.
    pub round: i64,
    /// 0 = nothing signed yet, else [`Step::number`].
    pub step: u8,
    /// What was signed at `(height, round, step)`; `None` when nothing was, or when an
    /// imported state carried no sign bytes (then a same-position request is refused).
    pub last: Option<LastSigned>,
}

/// The last signature made, kept so that a replay of the same request can be answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastSigned {
    /// Includes the exact sign bytes.
    pub doc: SignDoc,
    /// The whole signature in single-key mode; `None` for a threshold participant, which
    /// never sees the aggregate.
    pub signature: Option<[u8; 64]>,
}

/// A `(height, round, step)` position as FilePV orders them, step 0 meaning "nothing yet".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The block height.
    pub height: i64,
    /// The consensus round within the height.
    pub round: i64,
    /// The step, by [`Step::number`]; 0 orders below every step.
    pub step: u8,
}

impl Position {
    /// Where a request stands in FilePV's order.
    pub fn of(hrs: &Hrs) -> Position {
        Position {
            height: hrs.height,
            round: hrs.round,
            step: hrs.step.number(),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Step::from_number(self.step) {
            Some(step) => write!(f, "{}/{}/{}", self.height, self.round, step),
            None if self.step == 0 => write!(f, "{}/{}/none", self.height, self.round),
            None => write!(f, "{}/{}/step {}", self.height, self.round, self.step),
        }
    }
}

impl SignState {
    /// The state of a key that has never signed on this chain.
    pub fn fresh() -> SignState {
        SignState::default()
    }

    /// The watermark as a position, for comparing a request with it.
    pub fn position(&self) -> Position {
        Position {
            height: self.height,
            round: self.round,
            step: self.step,
        }
    }

    /// The state after signing `doc`.
    pub fn after(doc: &SignDoc, signature: Option<[u8; 64]>) -> SignState {
        SignState {
            height: doc.hrs.height,
            round: doc.hrs.round,
            step: doc.hrs.step.number(),
            last: Some(LastSigned {
                doc: doc.clone(),
                signature,
            }),
        }
    }

    /// Checks the invariants a stored or imported state must satisfy, so that a damaged or
    /// hand-edited state is rejected instead of being interpreted.
    pub fn validate(&self) -> Result<(), String> {
        if self.height < 0 || self.round < 0 {
            return Err(format!(
                "negative height or round ({}/{})",
                self.height, self.round
            ));
        }
        if self.step > Step::Precommit.number() {
            return Err(format!("step {} is not 0..=3", self.step));
        }
        if let Some(last) = &self.last {
            if Position::of(&last.doc.hrs) != self.position() {
                return Err(format!(
                    "last signed document is at {}, not at the watermark {}",
                    last.doc.hrs,
                    self.position()
                ));
            }
        }
        Ok(())
    }
}

/// What a permitted request amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A position above the watermark: sign, and persist the new watermark first.
    Advance,
    /// Exactly the sign bytes signed last: the stored signature may be returned (a
    /// participant may sign them again).
    Identical,
    /// The last signed document with another timestamp. FilePV returns the stored
    /// signature and the stored timestamp, which the node then adopts.
    TimestampOnly {
        /// The timestamp that was signed, to return in place of the requested one.
        stored: Timestamp,
    },
}

/// How a conflicting same-position request differs from what was signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Difference {
    /// Both name a block, but not the same one.
    Block,
    /// A nil vote where a block was signed.
    NilAfterBlock,
    /// A block where a nil vote was signed.
    BlockAfterNil,
    /// A proposal with another proof-of-lock round.
    PolRound,
    /// The decoded documents agree, timestamps included, yet the bytes differ: a
    /// non-canonical encoding, which is never signed.
    Encoding,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Difference::Block => "block differs from the one signed",
            Difference::NilAfterBlock => "nil vote requested where a block was signed",
            Difference::BlockAfterNil => "block requested where a nil vote was signed",
            Difference::PolRound => "proof-of-lock round differs from the one signed",
            Difference::Encoding => "sign bytes differ from the signed ones beyond the timestamp",
        })
    }
}

/// Why a request is refused. The messages are meant for a `RemoteSignerError` description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is below the watermark's height.
    #[error("height regression refused: asked to sign {requested}, already signed {signed}")]
    HeightRegression {
        /// The position asked for.
        requested: Hrs,
        /// The watermark.
        signed: Position,
    },
    /// The request is at the watermark's height but a lower round.
    #[error("round regression refused: asked to sign {requested}, already signed {signed}")]
    RoundRegression {
        /// The position asked for.
        requested: Hrs,
        /// The watermark.
        signed: Position,
    },
    /// The request is at the watermark's height and round but an earlier step.
    #[error("step regression refused: asked to sign {requested}, already signed {signed}")]
    StepRegression {
        /// The position asked for.
        requested: Hrs,
        /// The watermark.
        signed: Position,
    },
    /// The request is at the watermark's position and differs from what was signed there.
    #[error("double signing refused at {at}: {what}")]
    Conflict {
        /// The position of both.
        at: Hrs,
        /// How the request differs.
        what: Difference,
    },
    /// A same-position request, but the state (an import without sign bytes) cannot compare it.
    #[error("refused to sign again at {at}: the stored state has no sign bytes to compare with")]
    NoStoredSignBytes {
        /// The position of the request and the watermark.
        at: Hrs,
    },
    /// An identical request, but no signature is stored to answer it with.
    #[error("refused to sign again at {at}: no signature is stored to return")]
    NoStoredSignature {
        /// The position of the request and the watermark.
        at: Hrs,
    },
    /// The request is for another chain than the state's.
    #[error("chain ID `{requested}` does not match this signer's chain `{expected}`")]
    ChainMismatch {
        /// The chain of this state.
        expected: String,
        /// The chain the request names.
        requested: String,
    },
    /// The request is further above the highest known signed height than `max_height_jump`.
    #[error(
        "refused to jump to {requested}: {jump} heights above {anchor}, the highest height this \
         cosigner knows the validator signed, and the limit is {max_jump} (max_height_jump). If \
         the validator was really down that long, raise the watermark on every cosigner with \
         `cosigner state import`"
    )]
    TooFarAhead {
        /// The position asked for.
        requested: Hrs,
        /// The highest height this cosigner knows the validator signed.
        anchor: i64,
        /// How far above `anchor` the request is.
        jump: u64,
        /// The configured limit, `max_height_jump`.
        max_jump: u64,
    },
}

/// Decides whether `doc` may be signed given the watermark `state`.
pub fn check(state: &SignState, doc: &SignDoc) -> Result<Verdict, Refusal> {
    if let Some(last) = &state.last {
        if last.doc.chain_id != doc.chain_id {
            return Err(Refusal::ChainMismatch {
                expected: last.doc.chain_id.clone(),
                requested: doc.chain_id.clone(),
            });
        }
    }
    let requested = Position::of(&doc.hrs);
    let signed = state.position();
    match requested.cmp(&signed) {
        Ordering::Greater => Ok(Verdict::Advance),
        Ordering::Less => Err(regression(doc.hrs, signed)),
        Ordering::Equal => same_position(state, doc),
    }
}

/// Refuses a request more than `max_jump` heights above `anchor`, the highest height the
/// validator is known to have signed. One compromised coordinator could otherwise move every
/// participant's watermark to an absurd height (2^62), after which no real vote is ever
/// signed again. `anchor` is `None` for a key that never signed on this chain: a new
/// validator joins a chain at whatever height it has reached.
pub(crate) fn check_jump(anchor: Option<i64>, max_jump: u64, doc: &SignDoc) -> Result<(), Refusal> {
    let Some(anchor) = anchor else {
        return Ok(());
    };
    let jump = doc.hrs.height.saturating_sub(anchor);
    match u64::try_from(jump) {
        Ok(jump) if jump > max_jump => Err(Refusal::TooFarAhead {
            requested: doc.hrs,
            anchor,
            jump,
            max_jump,
        }),
        _ => Ok(()),
    }
}

fn regression(requested: Hrs, signed: Position) -> Refusal {
    if requested.height < signed.height {
        Refusal::HeightRegression { requested, signed }
    } else if requested.round < signed.round {
        Refusal::RoundRegression { requested, signed }
    } else {
        Refusal::StepRegression { requested, signed }
    }
}

fn same_position(state: &SignState, doc: &SignDoc) -> Result<Verdict, Refusal> {
    // A `last` that is not at the watermark says nothing about this position.
    let Some(last) = state
        .last
        .as_ref()
        .filter(|l| Position::of(&l.doc.hrs) == state.position())
    else {
        return Err(Refusal::NoStoredSignBytes { at: doc.hrs });
    };
    if last.doc.sign_bytes == doc.sign_bytes {
        return Ok(Verdict::Identical);
    }
    if same_except_timestamp(&last.doc, doc) {
        if last.doc.timestamp == doc.timestamp {
            return Err(Refusal::Conflict {
                at: doc.hrs,
                what: Difference::Encoding,
            });
        }
        return Ok(Verdict::TimestampOnly {
            stored: last.doc.timestamp,
        });
    }
    let what = match (&last.doc.block_id, &doc.block_id) {
        (Some(_), None) => Difference::NilAfterBlock,
        (None, Some(_)) => Difference::BlockAfterNil,
        (a, b) if a != b => Difference::Block,
        _ if last.doc.pol_round != doc.pol_round => Difference::PolRound,
        _ => Difference::Encoding,
    };
    Err(Refusal::Conflict { at: doc.hrs, what })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::consensus::BlockId;

    pub(crate) const CHAIN: &str = "test-chain";

    /// A document whose "sign bytes" are a deterministic digest of its fields, so that two
    /// documents have equal bytes exactly when their fields are equal.
    pub(crate) fn doc(height: i64, round: i64, step: Step, block: Option<u8>, ts: i64) -> SignDoc {
        let block_id = block.map(|b| BlockId {
            hash: vec![b; 32],
            part_set_total: 1,
            part_set_hash: vec![b ^ 0xff; 32],
        });
        let mut sign_bytes = Vec::new();
        sign_bytes.extend_from_slice(&height.to_le_bytes());
        sign_bytes.extend_from_slice(&round.to_le_bytes());
        sign_bytes.push(step.number());
        sign_bytes.push(block.map_or(0, |b| b.wrapping_add(1)));
        sign_bytes.extend_from_slice(&ts.to_le_bytes());
        sign_bytes.extend_from_slice(CHAIN.as_bytes());
        SignDoc {
            chain_id: CHAIN.to_string(),
            hrs: Hrs {
                height,
                round,
                step,
            },
            block_id,
            timestamp: Timestamp {
                seconds: ts,
                nanos: 0,
            },
            pol_round: if step == Step::Propose { -1 } else { 0 },
            sign_bytes,
        }
    }

    fn signed(d: &SignDoc) -> SignState {
        SignState::after(d, Some([7; 64]))
    }

    use Step::{Precommit, Prevote, Propose};

    #[test]
    fn table() {
        let at = |d: &SignDoc| d.hrs;
        let base = doc(12, 1, Prevote, Some(1), 100);
        let state = signed(&base);
        let cases: Vec<(&str, SignState, SignDoc, Result<Verdict, Refusal>)> = vec![
            (
                "fresh state signs anything",
                SignState::fresh(),
                doc(1, 0, Propose, Some(1), 1),
                Ok(Verdict::Advance),
            ),
            (
                "identical bytes",
                state.clone(),
                base.clone(),
                Ok(Verdict::Identical),
            ),
            (
                "timestamp only",
                state.clone(),
                doc(12, 1, Prevote, Some(1), 105),
                Ok(Verdict::TimestampOnly {
                    stored: base.timestamp,
                }),
            ),
            (
                "conflicting block",
                state.clone(),
                doc(12, 1, Prevote, Some(2), 100),
                Err(Refusal::Conflict {
                    at: at(&base),
                    what: Difference::Block,
                }),
            ),
            (
                "nil after block",
                state.clone(),
                doc(12, 1, Prevote, None, 100),
                Err(Refusal::Conflict {
                    at: at(&base),
                    what: Difference::NilAfterBlock,
                }),
            ),
            (
                "block after nil",
                signed(&doc(12, 1, Prevote, None, 100)),
                doc(12, 1, Prevote, Some(1), 100),
                Err(Refusal::Conflict {
                    at: at(&base),
                    what: Difference::BlockAfterNil,
                }),
            ),
            (
                "next step",
                state.clone(),
                doc(12, 1, Precommit, Some(2), 100),
                Ok(Verdict::Advance),
            ),
            (
                "next round",
                state.clone(),
                doc(12, 2, Propose, Some(3), 100),
                Ok(Verdict::Advance),
            ),
            (
                "next height",
                state.clone(),
                doc(13, 0, Propose, None, 100),
                Ok(Verdict::Advance),
            ),
            (
                "height regression",
                state.clone(),
                doc(11, 5, Precommit, Some(1), 100),
                Err(Refusal::HeightRegression {
                    requested: at(&doc(11, 5, Precommit, None, 0)),
                    signed: state.position(),
                }),
            ),
            (
                "round regression",
                state.clone(),
                doc(12, 0, Precommit, Some(1), 100),
                Err(Refusal::RoundRegression {
                    requested: at(&doc(12, 0, Precommit, None, 0)),
                    signed: state.position(),
                }),
            ),
            (
                "step regression",
                state.clone(),
                doc(12, 1, Propose, Some(1), 100),
                Err(Refusal::StepRegression {
                    requested: at(&doc(12, 1, Propose, None, 0)),
                    signed: state.position(),
                }),
            ),
            (
                "same position without stored bytes",
                SignState {
                    height: 12,
                    round: 1,
                    step: 2,
                    last: None,
                },
                base.clone(),
                Err(Refusal::NoStoredSignBytes { at: at(&base) }),
            ),
            (
                "imported watermark without bytes still orders",
                SignState {
                    height: 12,
                    round: 1,
                    step: 2,
                    last: None,
                },
                doc(12, 1, Precommit, None, 1),
                Ok(Verdict::Advance),
            ),
        ];
        for (name, state, d, want) in cases {
            assert_eq!(check(&state, &d), want, "{name}");
        }
    }

    #[test]
    fn jumps_beyond_the_bound_are_refused() {
        let d = doc(1_000_101, 0, Prevote, Some(1), 1);
        assert_eq!(check_jump(Some(1_000_001), 100, &d), Ok(()));
        assert_eq!(
            check_jump(Some(1_000_000), 100, &d),
            Err(Refusal::TooFarAhead {
                requested: d.hrs,
                anchor: 1_000_000,
                jump: 101,
                max_jump: 100
            })
        );
        // Below the anchor is for the other rules to judge; a fresh key may start anywhere.
        assert_eq!(check_jump(Some(2_000_000), 100, &d), Ok(()));
        assert_eq!(
            check_jump(None, 100, &doc(1 << 62, 0, Prevote, None, 1)),
            Ok(())
        );
        let far = doc(1 << 62, 0, Prevote, None, 1);
        let msg = check_jump(Some(12), 100_000, &far).unwrap_err().to_string();
        assert!(
            msg.contains("max_height_jump") && msg.contains("cosigner state import"),
            "{msg}"
        );
    }

    #[test]
    fn proposal_pol_round_conflict() {
        let a = doc(5, 0, Propose, Some(1), 10);
        let mut b = a.clone();
        b.pol_round = 0;
        b.sign_bytes.push(0);
        assert_eq!(
            check(&signed(&a), &b),
            Err(Refusal::Conflict {
                at: a.hrs,
                what: Difference::PolRound
            })
        );
    }

    #[test]
    fn same_fields_other_bytes_is_refused() {
        let a = doc(5, 0, Prevote, Some(1), 10);
        let mut b = a.clone();
        b.sign_bytes.push(0);
        assert_eq!(
            check(&signed(&a), &b),
            Err(Refusal::Conflict {
                at: a.hrs,
                what: Difference::Encoding
            })
        );
    }

    #[test]
    fn other_chain_is_refused_even_when_advancing() {
        let a = doc(5, 0, Prevote, Some(1), 10);
        let mut b = doc(6, 0, Prevote, Some(1), 10);
        b.chain_id = "other".into();
        assert!(matches!(
            check(&signed(&a), &b),
            Err(Refusal::ChainMismatch { .. })
        ));
    }

    #[test]
    fn messages_name_the_position_and_reason() {
        let a = doc(12, 0, Precommit, Some(1), 10);
        let err = check(&signed(&a), &doc(12, 0, Precommit, Some(2), 10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "double signing refused at 12/0/precommit: block differs from the one signed"
        );
        let err = check(&signed(&a), &doc(11, 0, Precommit, Some(2), 10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "height regression refused: asked to sign 11/0/precommit, already signed 12/0/precommit"
        );
        assert_eq!(SignState::fresh().position().to_string(), "0/0/none");
    }

    #[test]
    fn validate_rejects_inconsistent_states() {
        let a = doc(12, 0, Precommit, Some(1), 10);
        assert!(signed(&a).validate().is_ok());
        assert!(SignState::fresh().validate().is_ok());
        let mut s = signed(&a);
        s.height = 13;
        assert!(s.validate().is_err());
        let s = SignState {
            step: 4,
            ..SignState::fresh()
        };
        assert!(s.validate().is_err());
        let s = SignState {
            height: -1,
            ..SignState::fresh()
        };
        assert!(s.validate().is_err());
    }
}
