//! Double-sign accounting: every verified signature, keyed by (chain, height, round, step);
//! two signatures for one key whose sign bytes differ in anything but the timestamp are a
//! double sign, whichever request produced them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a signature sits in consensus (step: 1 propose, 2 prevote, 3 precommit).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HrsKey {
    pub chain_id: String,
    pub height: i64,
    pub round: i32,
    pub step: u8,
}

/// Evidence of a double sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoubleSign {
    pub key: HrsKey,
    /// Hex of the first sign bytes seen for this key.
    pub first_sign_bytes: String,
    /// Hex of the conflicting sign bytes.
    pub second_sign_bytes: String,
}

/// One line of a signature log: where a signature sits and what it signed (timestamp aside).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedSignature {
    pub chain_id: String,
    pub height: i64,
    pub round: i32,
    pub step: u8,
    /// Hex of the timestamp-normalised digest of the sign bytes.
    pub normalized: String,
    /// Hex of the exact sign bytes and of the signature over them, so that a reader can check
    /// the signature and the document itself rather than trust the simulator's digest.
    pub sign_bytes: String,
    pub signature: String,
}

/// Appends a verified signature to a signature log.
pub fn write_signature(
    out: &mut impl std::io::Write,
    key: &HrsKey,
    normalized: &[u8; 32],
    sign_bytes: &[u8],
    signature: &[u8; 64],
) -> std::io::Result<()> {
    let line = LoggedSignature {
        chain_id: key.chain_id.clone(),
        height: key.height,
        round: key.round,
        step: key.step,
        normalized: to_hex(normalized),
        sign_bytes: to_hex(sign_bytes),
        signature: to_hex(signature),
    };
    let mut json = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
    json.push(b'\n');
    out.write_all(&json)
}

/// The double signs among signature logs of several simulators: positions with more than one
/// normalised digest.
pub fn conflicts(logs: &[LoggedSignature]) -> Vec<(HrsKey, Vec<String>)> {
    let mut seen: BTreeMap<HrsKey, Vec<String>> = BTreeMap::new();
    for l in logs {
        let key = HrsKey {
            chain_id: l.chain_id.clone(),
            height: l.height,
            round: l.round,
            step: l.step,
        };
        let digests = seen.entry(key).or_default();
        if !digests.contains(&l.normalized) {
            digests.push(l.normalized.clone());
        }
    }
    seen.into_iter().filter(|(_, d)| d.len() > 1).collect()
}

struct Entry {
    first_sign_bytes: Vec<u8>,
    /// Distinct timestamp-normalised digests seen (bounded: more than a few is already fatal).
    digests: Vec<[u8; 32]>,
}

/// Most distinct digests remembered per key.
const MAX_DIGESTS_PER_KEY: usize = 8;

/// The ledger of signatures. Memory is bounded by `max_keys`: beyond it the lowest keys
/// (oldest heights of the first chain) are forgotten and counted in [`Ledger::pruned`].
pub struct Ledger {
    entries: BTreeMap<HrsKey, Entry>,
    max_keys: usize,
    pruned: u64,
}

impl Ledger {
    pub fn new(max_keys: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            max_keys: max_keys.max(1),
            pruned: 0,
        }
    }

    /// Records a verified signature; returns the evidence if it conflicts with an earlier one.
    pub fn record(
        &mut self,
        key: HrsKey,
        normalized: [u8; 32],
        sign_bytes: &[u8],
    ) -> Option<DoubleSign> {
        if let Some(entry) = self.entries.get_mut(&key) {
            if entry.digests.contains(&normalized) {
                return None;
            }
            if entry.digests.len() < MAX_DIGESTS_PER_KEY {
                entry.digests.push(normalized);
            }
            return Some(DoubleSign {
                first_sign_bytes: to_hex(&entry.first_sign_bytes),
                second_sign_bytes: to_hex(sign_bytes),
                key,
            });
        }
        if self.entries.len() >= self.max_keys {
            self.entries.pop_first();
            self.pruned += 1;
        }
        self.entries.insert(
            key,
            Entry {
                first_sign_bytes: sign_bytes.to_vec(),
                digests: vec![normalized],
            },
        );
        None
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys forgotten to bound memory.
    pub fn pruned(&self) -> u64 {
        self.pruned
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(h: i64, step: u8) -> HrsKey {
        HrsKey {
            chain_id: "c".into(),
            height: h,
            round: 0,
            step,
        }
    }

    #[test]
    fn same_digest_is_not_a_double_sign() {
        let mut l = Ledger::new(100);
        assert!(l.record(key(1, 2), [1; 32], b"a").is_none());
        assert!(l.record(key(1, 2), [1; 32], b"a'").is_none());
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn different_digest_same_hrs_is_a_double_sign() {
        let mut l = Ledger::new(100);
        assert!(l.record(key(1, 2), [1; 32], b"\x01").is_none());
        let ds = l.record(key(1, 2), [2; 32], b"\x02").unwrap();
        assert_eq!(ds.key, key(1, 2));
        assert_eq!(ds.first_sign_bytes, "01");
        assert_eq!(ds.second_sign_bytes, "02");
        // Reported once per distinct conflicting digest.
        assert!(l.record(key(1, 2), [2; 32], b"\x02").is_none());
        assert!(l.record(key(1, 2), [3; 32], b"\x03").is_some());
    }

    #[test]
    fn other_steps_rounds_chains_are_independent() {
        let mut l = Ledger::new(100);
        assert!(l.record(key(1, 2), [1; 32], b"").is_none());
        assert!(l.record(key(1, 3), [2; 32], b"").is_none());
        let mut k = key(1, 2);
        k.round = 1;
        assert!(l.record(k.clone(), [3; 32], b"").is_none());
        k.chain_id = "d".into();
        assert!(l.record(k, [4; 32], b"").is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let mut l = Ledger::new(3);
        for h in 0..10 {
            l.record(key(h, 2), [h as u8; 32], b"");
        }
        assert_eq!(l.len(), 3);
        assert_eq!(l.pruned(), 7);
    }
}
