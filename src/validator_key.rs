//! Reading validator keys: CometBFT `priv_validator_key.json` and tmkms softsign files.
