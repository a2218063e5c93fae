//! The files of a cosigner directory, as `split-key` and `init-single` write them and the
//! `cosigner.toml` they write names them. The config may point anywhere; these are the names
//! the writers choose, kept in one place so that they and the README cannot drift apart.
//! Each chain's state file inside [`STATE_DIR`] is named by [`crate::sign_state`].

/// The configuration, at the directory's top.
pub const CONFIG_FILE: &str = "cosigner.toml";
/// The SecretConnection identity key (base64 of an Ed25519 seed).
pub const IDENTITY_KEY_FILE: &str = "identity.key";
/// Where every chain's sign state lives.
pub const STATE_DIR: &str = "state";
/// A threshold cosigner's FROST key share.
pub const KEY_SHARE_FILE: &str = "key_share.json";
/// A threshold cosigner's cluster certificate.
pub const TLS_CERT_FILE: &str = "tls/cert.pem";
/// Its private key.
pub const TLS_KEY_FILE: &str = "tls/key.pem";
/// The certificate of the cluster's CA (whose key existed only while `split-key` ran).
pub const CLUSTER_CA_FILE: &str = "tls/cluster-ca.pem";
/// Where `cosigner add-key` puts each added key's files: `keys/<name>/` holds its
/// [`KEY_SHARE_FILE`] and its `tls/` files under the same names as the first key's.
pub const KEYS_DIR: &str = "keys";
/// A single-key signer's whole validator key.
pub const SINGLE_KEY_FILE: &str = "priv_validator_key.json";
/// The running cosigner's read-only admin socket (`cosigner status`), inside the config's
/// `state_dir`: a Unix socket, mode 0600, there while the cosigner runs.
pub const ADMIN_SOCKET: &str = "cosigner.sock";
