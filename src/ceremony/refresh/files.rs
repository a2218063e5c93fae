//! The disk edge of a refresh: the staged share `key_share.json.next` (and, when the
//! refresh removes cosigners, the staged config `cosigner.toml.next`), the switch that
//! replaces the old share with it, and the abort that drops it.
//!
//! Every step is one durable filesystem operation, so a crash between any two leaves a
//! state [`Files::read_staged`] recognises:
//! 1. stage: `cosigner.toml.next` (if any), then `key_share.json.next`, each written under
//!    a temporary name, fsynced and linked into place, the directory fsynced;
//! 2. switch: `key_share.json.next` renamed over `key_share.json` (the old share's file is
//!    gone from then on; no copy is kept), then `cosigner.toml.next` over `cosigner.toml`;
//! 3. abort: `key_share.json.next` removed, then `cosigner.toml.next`.
//!
//! A `cosigner.toml.next` without a `key_share.json.next` is therefore either a switch
//! between its two renames (the share's members are the staged config's: finish it) or an
//! abort between its two removals (they are not: drop it); [`Files::finish`] decides.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::staged_dir::StagedFile;
use crate::threshold::key_share::{self, KeyShare, KeyShareFile};

/// Where a staged copy of `path` lives.
pub fn staged_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    path.with_file_name(name)
}

/// The staged file an interrupted refresh left beside `key_share` or `config`, if any.
pub fn pending(key_share: &Path, config: &Path) -> Option<PathBuf> {
    [staged_path(key_share), staged_path(config)]
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok())
}

/// A cosigner directory's refresh files.
pub struct Files {
    /// `key_share.json`.
    pub key_share: PathBuf,
    /// `cosigner.toml`.
    pub config: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

fn sync_parent(path: &Path) -> Result<(), String> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(parent))
}

fn remove_if_present(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

impl Files {
    /// Where the new share is staged before the switch.
    pub fn staged_share(&self) -> PathBuf {
        staged_path(&self.key_share)
    }

    /// Where the rewritten config is staged, when the membership changes.
    pub fn staged_config(&self) -> PathBuf {
        staged_path(&self.config)
    }

    /// Removes the temporary files of a staging that a crash interrupted (they were never
    /// linked into place, so nothing ever used them).
    pub fn remove_stale_temporaries(&self) -> Result<(), String> {
        for path in [self.staged_share(), self.staged_config()] {
            let Some(prefix) = StagedFile::staging_prefix(&path) else {
                continue;
            };
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                }
            }
        }
        Ok(())
    }

    /// Stages the new share (and the config without the removed cosigners).
    pub fn stage(&self, share: &KeyShareFile, config: Option<&Config>) -> Result<(), String> {
        if let Some(config) = config {
            let staged = StagedFile::write(&self.staged_config(), config.to_toml().as_bytes())
                .map_err(|e| e.to_string())?;
            staged.commit().map_err(|e| e.to_string())?;
        }
        let json = share
            .to_json()
            .map_err(|e| format!("cannot encode the new key share: {e}"))?;
        let staged =
            StagedFile::write(&self.staged_share(), json.as_bytes()).map_err(|e| e.to_string())?;
        staged.commit().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The staged share, checked as a share file is at start.
    pub fn read_staged(&self) -> Result<Option<KeyShare>, String> {
        let path = self.staged_share();
        if path.symlink_metadata().is_err() {
            return Ok(None);
        }
        key_share::load(&path).map(Some).map_err(|e| e.to_string())
    }

    /// Replaces the old share with the staged one (and the config), durably.
    pub fn switch(&self) -> Result<(), String> {
        let staged = self.staged_share();
        std::fs::rename(&staged, &self.key_share).map_err(io(&staged))?;
        sync_parent(&self.key_share)?;
        self.finish_config()
    }

    fn finish_config(&self) -> Result<(), String> {
        let staged = self.staged_config();
        if staged.symlink_metadata().is_ok() {
            std::fs::rename(&staged, &self.config).map_err(io(&staged))?;
            sync_parent(&self.config)?;
        }
        Ok(())
    }

    /// Drops the staged share (and config); the old share stays.
    pub fn abort(&self) -> Result<(), String> {
        remove_if_present(&self.staged_share())?;
        remove_if_present(&self.staged_config())
    }

    /// Completes what a crash interrupted between the two steps of a switch or an abort
    /// (a staged config without a staged share); true if there was something to do.
    pub fn finish(&self, current: &KeyShare) -> Result<bool, String> {
        let staged = self.staged_config();
        if self.staged_share().symlink_metadata().is_ok() || staged.symlink_metadata().is_err() {
            return Ok(false);
        }
        let loaded = Config::load(&staged).map_err(|e| e.to_string())?;
        let th = loaded
            .config
            .threshold()
            .ok_or_else(|| format!("{}: not a one-key threshold config", staged.display()))?;
        let mut configured: Vec<u16> = th.peers.iter().map(|p| p.id).collect();
        configured.push(th.id);
        configured.sort_unstable();
        let members = current.file().members().map_err(|e| e.to_string())?;
        if configured == members {
            self.finish_config()?;
        } else {
            remove_if_present(&staged)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::deal::deal;
    use crate::validator_key::ValidatorKey;
    use rand_core::OsRng;

    fn config_text(peers: &[u16]) -> String {
        let mut text = String::from(
            "state_dir = \"state\"\nidentity_key = \"identity.key\"\n\n[[chain]]\nid = \"c\"\n\n\
             [[node]]\naddress = \"tcp://127.0.0.1:26659\"\nprotocol = \"v0.38\"\n\n\
             [threshold]\nid = 1\nthreshold = 2\nlisten = \"127.0.0.1:7101\"\n\
             key_share = \"key_share.json\"\ntls_cert = \"tls/cert.pem\"\n\
             tls_key = \"tls/key.pem\"\ncluster_ca = \"tls/ca.pem\"\n",
        );
        for p in peers {
            text += &format!(
                "\n[[threshold.peer]]\nid = {p}\naddress = \"127.0.0.1:710{p}\"\n\
                 cert_sha256 = \"{}\"\n",
                format!("{p:02x}").repeat(32)
            );
        }
        text
    }

    fn peers_of(path: &Path) -> Vec<u16> {
        let loaded = Config::load(path).unwrap();
        loaded
            .config
            .threshold()
            .unwrap()
            .peers
            .iter()
            .map(|p| p.id)
            .collect()
    }

    fn setup() -> (tempfile::TempDir, Files, ValidatorKey) {
        let dir = tempfile::tempdir().unwrap();
        let files = Files {
            key_share: dir.path().join("key_share.json"),
            config: dir.path().join("cosigner.toml"),
        };
        std::fs::write(&files.config, config_text(&[2, 3])).unwrap();
        (dir, files, ValidatorKey::from_seed(&[3; 32]))
    }

    fn share_of(key: &ValidatorKey, n: u16) -> KeyShareFile {
        deal(key, 2, n, &mut OsRng).unwrap().share_files()[0].clone()
    }

    #[test]
    fn stage_then_switch_replaces_the_share_and_the_config() {
        let (_dir, files, key) = setup();
        let old = share_of(&key, 3);
        std::fs::write(&files.key_share, old.to_json().unwrap().as_bytes()).unwrap();
        let smaller = Config::load(&files.config)
            .unwrap()
            .config
            .without_peers(&[3])
            .unwrap();
        let new = share_of(&key, 2);
        files.stage(&new, Some(&smaller)).unwrap();
        assert_eq!(
            pending(&files.key_share, &files.config),
            Some(files.staged_share())
        );
        assert_eq!(
            files
                .read_staged()
                .unwrap()
                .unwrap()
                .file()
                .members()
                .unwrap(),
            [1, 2]
        );
        files.switch().unwrap();
        assert_eq!(pending(&files.key_share, &files.config), None);
        let now = key_share::load(&files.key_share).unwrap();
        assert_eq!(now.file().members().unwrap(), [1, 2]);
        assert_eq!(peers_of(&files.config), [2]);
    }

    #[test]
    fn abort_drops_what_was_staged_and_keeps_the_old_share() {
        let (_dir, files, key) = setup();
        let old = share_of(&key, 3);
        std::fs::write(&files.key_share, old.to_json().unwrap().as_bytes()).unwrap();
        let smaller = Config::load(&files.config)
            .unwrap()
            .config
            .without_peers(&[3])
            .unwrap();
        files.stage(&share_of(&key, 2), Some(&smaller)).unwrap();
        files.abort().unwrap();
        assert_eq!(pending(&files.key_share, &files.config), None);
        assert_eq!(
            std::fs::read_to_string(&files.key_share).unwrap(),
            *old.to_json().unwrap()
        );
        assert_eq!(peers_of(&files.config), [2, 3]);
    }

    #[test]
    fn finish_completes_a_switch_or_an_abort_a_crash_left_half_done() {
        let (_dir, files, key) = setup();
        let current = |n| KeyShare::from_file(share_of(&key, n)).unwrap();
        assert!(!files.finish(&current(3)).unwrap(), "nothing staged");
        // A switch stopped between its two renames: the share already has two members.
        std::fs::write(files.staged_config(), config_text(&[2])).unwrap();
        assert!(files.finish(&current(2)).unwrap());
        assert_eq!(peers_of(&files.config), [2]);
        assert!(!files.staged_config().exists());
        // An abort stopped between its two removals: the share is still the old one.
        std::fs::write(&files.config, config_text(&[2, 3])).unwrap();
        std::fs::write(files.staged_config(), config_text(&[2])).unwrap();
        assert!(files.finish(&current(3)).unwrap());
        assert_eq!(peers_of(&files.config), [2, 3]);
        assert!(!files.staged_config().exists());
        // With the staged share still there, the commit rule decides, not this.
        std::fs::write(files.staged_config(), config_text(&[2])).unwrap();
        std::fs::write(files.staged_share(), b"{}").unwrap();
        assert!(!files.finish(&current(3)).unwrap());
        assert!(files.staged_config().exists());
    }
}
