//! How many cosigners there are and how many must sign: the one home of the rule that
//! makes each cosigner's own double-sign check enough.

/// The largest cluster `split-key` deals and a cosigner accepts.
pub const MAX_COSIGNERS: u16 = 32;

/// A threshold/share count that must not be dealt or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// Below 2, one share would be the whole key.
    #[error("threshold {t} is below 2: a single share would be the whole key")]
    TooSmall {
        /// The threshold.
        t: u16,
        /// The number of shares.
        n: u16,
    },
    /// More signers needed than there are shares.
    #[error("threshold {t} exceeds the number of shares {n}")]
    AboveShares {
        /// The threshold.
        t: u16,
        /// The number of shares.
        n: u16,
    },
    /// At most half of the shares: two disjoint groups could sign two different blocks.
    #[error("{t} of {n} lets two disjoint groups of cosigners sign: need t > n/2")]
    NoMajority {
        /// The threshold.
        t: u16,
        /// The number of shares.
        n: u16,
    },
    /// More shares than [`MAX_COSIGNERS`].
    #[error("{n} shares exceed the maximum of {MAX_COSIGNERS} cosigners")]
    TooManyShares {
        /// The number of shares.
        n: u16,
    },
}

/// Checks `t`-of-`n`: 2 <= t <= n, t > n/2 (so any two quorums share a cosigner, which is what
/// makes each cosigner's own double-sign check sufficient), n <= [`MAX_COSIGNERS`]. Every
/// place that accepts a threshold (dealing, loading a share, reading a config) asks here.
pub fn check_threshold(t: u16, n: u16) -> Result<(), ThresholdError> {
    if n > MAX_COSIGNERS {
        return Err(ThresholdError::TooManyShares { n });
    }
    if t < 2 {
        return Err(ThresholdError::TooSmall { t, n });
    }
    if t > n {
        return Err(ThresholdError::AboveShares { t, n });
    }
    if usize::from(t) * 2 <= usize::from(n) {
        return Err(ThresholdError::NoMajority { t, n });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_must_be_a_majority_of_at_least_two() {
        assert!(check_threshold(2, 3).is_ok());
        assert!(check_threshold(2, 2).is_ok());
        assert!(check_threshold(17, 32).is_ok());
        assert_eq!(
            check_threshold(1, 3),
            Err(ThresholdError::TooSmall { t: 1, n: 3 })
        );
        assert_eq!(
            check_threshold(4, 3),
            Err(ThresholdError::AboveShares { t: 4, n: 3 })
        );
        assert_eq!(
            check_threshold(2, 4),
            Err(ThresholdError::NoMajority { t: 2, n: 4 })
        );
        assert_eq!(
            check_threshold(17, 33),
            Err(ThresholdError::TooManyShares { n: 33 })
        );
    }
}
