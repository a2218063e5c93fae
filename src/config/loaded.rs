//! A loaded config: where it was read from, how its relative paths resolve, the cluster and
//! key share it names, and why loading can fail.

use super::*;

/// Why a `cosigner.toml` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {error}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What the read failed with.
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}: {error}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's error, with the line and column.
        error: Box<toml::de::Error>,
    },
    /// The file parsed but a value is not acceptable.
    #[error("{path}: field `{field}`: {problem}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The offending key, as its path in the file (`chain[1].id`).
        field: String,
        /// What is wrong with the value and what to do.
        problem: String,
    },
}

/// A loaded config: the parsed file, where it came from, and its paths made absolute.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The config file, absolute; relative paths inside it were resolved against its folder.
    pub path: PathBuf,
    /// The parsed config, its paths absolute.
    pub config: Config,
}

impl LoadedConfig {
    /// Resolves a path from the config against the directory that holds the file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        let base = self.path.parent().unwrap_or_else(|| Path::new("."));
        base.join(p)
    }

    /// The cluster identity's files, resolved.
    pub fn tls_paths(&self, th: &ThresholdConfig) -> TlsPaths {
        TlsPaths {
            cert: self.resolve(&th.tls_cert),
            key: self.resolve(&th.tls_key),
            ca: th.cluster_ca.as_deref().map(|ca| self.resolve(ca)),
        }
    }

    /// What the cluster transport of `start` needs, from the `[threshold]` section: the
    /// members as peers; a joining cosigner is recognised and refused, never dialed.
    pub fn cluster_config(&self, th: &ThresholdConfig) -> ClusterConfig {
        ClusterConfig {
            id: th.id,
            listen: th.listen,
            peers: th.peers.iter().map(peer_addr).collect(),
            joining: th.joining.iter().map(peer_addr).collect(),
            tls: self.tls_paths(th),
            allowed_sources: th.allowed_sources.clone(),
        }
    }

    /// The transport of a key ceremony that includes the joining cosigners (the join): the
    /// members and the joining cosigners alike as peers. Never for signing.
    pub fn cluster_config_with_joining(&self, th: &ThresholdConfig) -> ClusterConfig {
        ClusterConfig {
            peers: th.peers.iter().chain(&th.joining).map(peer_addr).collect(),
            joining: Vec::new(),
            ..self.cluster_config(th)
        }
    }

    /// Loads this cosigner's key share and checks that it is the share the config says:
    /// the same cosigner number and threshold.
    pub fn load_key_share(&self, th: &ThresholdConfig) -> Result<KeyShare, KeyShareLoadError> {
        let path = self.resolve(&th.key_share);
        let share = key_share::load(&path).map_err(|e| self.pending_ceremony(th, e))?;
        if share.index() != th.id || share.threshold() != th.threshold {
            return Err(KeyShareLoadError::Mismatch {
                path,
                share_id: share.index(),
                share_threshold: share.threshold(),
                config_id: th.id,
                config_threshold: th.threshold,
            });
        }
        // The peers a cosigner accepts are exactly the key's other members: a cosigner that
        // a refresh removed is not trusted even if a config still lists it.
        let mut configured: Vec<u16> = th.peers.iter().map(|p| p.id).collect();
        configured.push(th.id);
        configured.sort_unstable();
        let members = share
            .file()
            .members()
            .map_err(|problem| key_share::KeyShareError {
                path: path.clone(),
                problem,
            })?;
        if configured != members {
            return Err(KeyShareLoadError::Members {
                path,
                share: key_share::members_list(&members),
                config: key_share::members_list(&configured),
            });
        }
        Ok(share)
    }
}

fn peer_addr(p: &PeerConfig) -> PeerAddr {
    PeerAddr {
        id: p.id,
        address: p.address.clone(),
        cert_sha256: p.cert_sha256.clone(),
    }
}

impl LoadedConfig {
    /// A missing share of a directory made for a key ceremony (`ceremony.json` beside the
    /// config) is not lost: it was never made. The error says which command makes it; `start`
    /// and `check-config` ask this first, before anything else can fail on such a directory.
    pub fn check_no_pending_ceremony(&self, th: &ThresholdConfig) -> Result<(), KeyShareLoadError> {
        let path = self.resolve(&th.key_share);
        if let Some(staged) = crate::ceremony::refresh::files::pending(&path, &self.path) {
            return Err(KeyShareLoadError::PendingRefresh {
                staged,
                command: format!(
                    "cosigner refresh --config {}",
                    crate::shell::quote(&self.path)
                ),
            });
        }
        if path.symlink_metadata().is_ok() {
            return Ok(());
        }
        let ceremony = self.resolve(Path::new(crate::ceremony::CEREMONY_FILE));
        match crate::ceremony::CeremonyFile::load(&ceremony) {
            Ok(file) => Err(KeyShareLoadError::PendingCeremony {
                path,
                command: format!(
                    "{} --config {}",
                    file.kind.command(),
                    crate::shell::quote(&self.path)
                ),
            }),
            Err(_) => Ok(()),
        }
    }

    fn pending_ceremony(
        &self,
        th: &ThresholdConfig,
        e: key_share::KeyShareError,
    ) -> KeyShareLoadError {
        match self.check_no_pending_ceremony(th) {
            Err(pending) => pending,
            Ok(()) => KeyShareLoadError::Load(e),
        }
    }
}

/// Why the key share the config names cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyShareLoadError {
    /// The key share file cannot be read or is not a key share.
    #[error(transparent)]
    Load(#[from] key_share::KeyShareError),
    /// No key share yet: the directory was made for a key ceremony that has not run.
    #[error(
        "{}: no key share yet: this directory is waiting for its key ceremony. Run `{command}` \
         on every cosigner host (all within its --timeout of each other), then start",
        path.display()
    )]
    PendingCeremony {
        /// Where the key share will be.
        path: PathBuf,
        /// The ceremony command to run on every cosigner host.
        command: String,
    },
    /// The key share is another cosigner's, or of another threshold, than the config says.
    #[error(
        "{}: the key share is cosigner {share_id} of a {share_threshold}-of-n cluster, but the \
         config says cosigner {config_id} with threshold {config_threshold}",
        path.display()
    )]
    Mismatch {
        /// The key share file.
        path: PathBuf,
        /// The cosigner identifier in the key share.
        share_id: u16,
        /// The threshold in the key share.
        share_threshold: u16,
        /// The cosigner identifier in the config.
        config_id: u16,
        /// The threshold in the config.
        config_threshold: u16,
    },
    #[error(
        "{}: the key share's cosigners are {share}, but the config's are {config}: after a \
         refresh that removed a cosigner the config lists only the remaining ones (`cosigner \
         refresh` rewrites it)",
        path.display()
    )]
    /// The config's peers are not the key share's other members.
    Members {
        /// The config file.
        path: PathBuf,
        /// The share's cosigners, as a list for the message.
        share: String,
        /// The config's cosigners, as a list for the message.
        config: String,
    },
    #[error(
        "{}: a share refresh was interrupted on this host (this staged share is left). \
         `cosigner start` settles it with the other cosigners first (it finishes or drops the \
         refresh, as they agree); so does `{command}`",
        staged.display()
    )]
    /// A refresh was interrupted on this host; it must be settled before signing.
    PendingRefresh {
        /// The staged share.
        staged: PathBuf,
        /// The command that settles it, for this config.
        command: String,
    },
}
