//! The sign state through its public API only: what a cosigner restart sees.

use cosigner::consensus::{BlockId, Hrs, SignDoc, Step, Timestamp};
use cosigner::sign_state::import::{import_into, ImportError};
use cosigner::sign_state::{
    ChainSignState, Refusal, SignState, SignStateError, StateError, StateFile,
};

const CHAIN: &str = "durability-chain";

fn vote(height: i64, block: u8, seconds: i64) -> SignDoc {
    SignDoc {
        chain_id: CHAIN.into(),
        hrs: Hrs {
            height,
            round: 0,
            step: Step::Precommit,
        },
        block_id: Some(BlockId {
            hash: vec![block; 32],
            part_set_total: 1,
            part_set_hash: vec![block; 32],
        }),
        timestamp: Timestamp { seconds, nanos: 0 },
        pol_round: 0,
        sign_bytes: [&height.to_le_bytes()[..], &[block], &seconds.to_le_bytes()].concat(),
    }
}

fn sign(bytes: &[u8]) -> Result<[u8; 64], std::io::Error> {
    let mut s = [0u8; 64];
    s[..bytes.len().min(64)].copy_from_slice(&bytes[..bytes.len().min(64)]);
    Ok(s)
}

#[test]
fn a_restarted_signer_answers_replays_and_refuses_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    StateFile::create(dir.path(), CHAIN, &SignState::fresh()).unwrap();
    let first = {
        let guard = ChainSignState::open(dir.path(), CHAIN).unwrap();
        guard.sign_with(&vote(20, 1, 100), sign).unwrap()
    };
    let guard = ChainSignState::open(dir.path(), CHAIN).unwrap();
    // A replay with a new timestamp gets the old signature and the old timestamp.
    let replay = guard.sign_with(&vote(20, 1, 200), sign).unwrap();
    assert_eq!(replay, first);
    let err = guard.sign_with(&vote(20, 2, 100), sign).unwrap_err();
    assert!(matches!(
        err,
        SignStateError::Refused(Refusal::Conflict { .. })
    ));
    let err = guard.authorize(&vote(19, 1, 100)).unwrap_err();
    assert!(matches!(
        err,
        SignStateError::Refused(Refusal::HeightRegression { .. })
    ));
    // An import cannot lower it either, even while not running.
    drop(guard);
    let lower = SignState::after(&vote(10, 1, 1), None);
    assert!(matches!(
        import_into(dir.path(), CHAIN, lower, false),
        Err(ImportError::WouldLower { .. })
    ));
}

#[test]
fn a_wiped_state_file_stops_the_signer() {
    let dir = tempfile::tempdir().unwrap();
    StateFile::create(dir.path(), CHAIN, &SignState::fresh()).unwrap();
    let path = {
        let guard = ChainSignState::open(dir.path(), CHAIN).unwrap();
        guard.authorize(&vote(5, 1, 1)).unwrap();
        guard.path().to_path_buf()
    };
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    std::fs::write(&path, vec![0u8; len]).unwrap();
    let err = ChainSignState::open(dir.path(), CHAIN).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = ChainSignState::open(dir.path(), CHAIN).unwrap_err();
    assert!(matches!(err, StateError::Missing { .. }), "{err}");
}
