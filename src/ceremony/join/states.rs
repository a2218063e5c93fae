//! The disk edge of a join's watermarks: a member reads every chain's watermark for the new
//! cosigner ([`read()`]); the new cosigner writes the highest any member reported, durably,
//! before its share exists ([`write()`]), so it never signs below what a member signed.

use std::path::Path;

use crate::ceremony::messages::Watermark;
use crate::sign_state::import::{import_into, ImportError};
use crate::sign_state::{SignState, StateError, StateFile};

/// Every chain's watermark in `state_dir` (a chain without a state file has signed
/// nothing here).
pub fn read(state_dir: &Path, chains: &[String]) -> Result<Vec<Watermark>, String> {
    chains
        .iter()
        .map(|chain| {
            let state = match StateFile::read(state_dir, chain) {
                Ok(state) => state,
                Err(StateError::Missing { .. }) => SignState::fresh(),
                Err(e) => return Err(format!("cannot read the watermark of `{chain}`: {e}")),
            };
            Ok(Watermark {
                chain: chain.clone(),
                height: state.height,
                round: state.round,
                step: state.step,
            })
        })
        .collect()
}

/// Writes each of `watermarks` whose chain is among `chains` as that chain's state (no sign
/// bytes: a request at exactly that position is refused), durably; a state already at or
/// above it is left. A configured chain no member reported gets an empty state.
pub fn write(state_dir: &Path, chains: &[String], watermarks: &[Watermark]) -> Result<(), String> {
    for chain in chains {
        let state =
            watermarks
                .iter()
                .find(|w| &w.chain == chain)
                .map_or_else(SignState::fresh, |w| SignState {
                    height: w.height,
                    round: w.round,
                    step: w.step,
                    last: None,
                });
        match import_into(state_dir, chain, state, false) {
            Ok(_) | Err(ImportError::WouldLower { .. }) => {}
            // Already there with its sign bytes: as high, and more useful.
            Err(ImportError::DiffersAtSamePosition(_)) => {}
            Err(e) => return Err(format!("cannot write the watermark of `{chain}`: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_watermarks_are_read_back_and_never_lowered() {
        let dir = tempfile::tempdir().unwrap();
        let chains = vec!["a".to_string(), "b".to_string()];
        let mark = |chain: &str, height| Watermark {
            chain: chain.into(),
            height,
            round: 0,
            step: 3,
        };
        write(dir.path(), &chains, &[mark("a", 20)]).unwrap();
        let read_back = read(dir.path(), &chains).unwrap();
        assert_eq!(read_back[0], mark("a", 20));
        assert_eq!((read_back[1].height, read_back[1].step), (0, 0));
        write(dir.path(), &chains, &[mark("a", 5), mark("b", 7)]).unwrap();
        let read_back = read(dir.path(), &chains).unwrap();
        assert_eq!(read_back, vec![mark("a", 20), mark("b", 7)]);
    }
}
