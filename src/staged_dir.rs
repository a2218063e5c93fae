//! Writing a directory of secrets all at once.
//!
//! The directory is built next to its destination (same parent, so the final rename is
//! atomic) with mode 0700 for directories and 0600 for files, every file fsynced; then it is
//! renamed into place and the parent directory fsynced. Until [`StagedDir::commit`] succeeds
//! the destination does not exist, and dropping an uncommitted `StagedDir` removes the
//! temporary directory, so an error at any point leaves nothing behind.
//!
//! [`StagedFile`] does the same for one new file in an existing directory, in two steps, so
//! that a key ceremony can have the file on disk before it knows the others agree, and
//! publish it with one atomic, durable link once they do.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a directory or file could not be written atomically.
#[derive(Debug, thiserror::Error)]
pub enum StagedDirError {
    /// The destination exists; nothing is overwritten.
    #[error("{0}: already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// A file system call failed.
    #[error("{path}: {error}")]
    Io {
        /// The path it was for.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A path is not plain: a relative path to write inside the directory, or a destination,
    /// has an empty, `.`, `..` or absolute part.
    #[error("{0}: not a plain relative path inside the output directory")]
    BadRelativePath(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StagedDirError + '_ {
    move |error| StagedDirError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A directory being built beside its destination, renamed into place on [`StagedDir::commit`].
pub struct StagedDir {
    destination: PathBuf,
    staging: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Starts building `destination`, which must not exist yet.
    pub fn create(destination: &Path) -> Result<StagedDir, StagedDirError> {
        if destination.symlink_metadata().is_ok() {
            return Err(StagedDirError::Exists(destination.to_path_buf()));
        }
        let name = destination
            .file_name()
            .ok_or_else(|| StagedDirError::BadRelativePath(destination.to_path_buf()))?;
        let parent = match destination.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut suffix = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut suffix);
        let staging = parent.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            hex::encode(suffix)
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io_err(&staging))?;
        Ok(StagedDir {
            destination: destination.to_path_buf(),
            staging,
            committed: false,
        })
    }

    /// Where the directory is being built (for checks before [`StagedDir::commit`]).
    pub fn path(&self) -> &Path {
        &self.staging
    }

    fn inside(&self, relative: &Path) -> Result<PathBuf, StagedDirError> {
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !plain || relative.as_os_str().is_empty() {
            return Err(StagedDirError::BadRelativePath(relative.to_path_buf()));
        }
        Ok(self.staging.join(relative))
    }

    /// Creates a subdirectory (and its parents), mode 0700.
    pub fn create_dir(&self, relative: &Path) -> Result<(), StagedDirError> {
        let path = self.inside(relative)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(io_err(&path))
    }

    /// Writes a new file, mode 0600, and fsyncs it.
    pub fn write_file(&self, relative: &Path, contents: &[u8]) -> Result<(), StagedDirError> {
        let path = self.inside(relative)?;
        if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.create_dir(parent)?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(contents).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))
    }

    /// Moves the finished directory into place, durably.
    pub fn commit(mut self) -> Result<PathBuf, StagedDirError> {
        sync_tree(&self.staging)?;
        if self.destination.symlink_metadata().is_ok() {
            return Err(StagedDirError::Exists(self.destination.clone()));
        }
        std::fs::rename(&self.staging, &self.destination).map_err(io_err(&self.destination))?;
        self.committed = true;
        if let Some(parent) = self.destination.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err(parent))?;
        }
        Ok(self.destination.clone())
    }
}

/// Fsyncs every directory of a tree (files were synced when written).
fn sync_tree(dir: &Path) -> Result<(), StagedDirError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map_err(io_err(dir))?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Replaces the existing file `path` with `contents` all at once: written and fsynced under a
/// temporary name beside it (with the old file's permissions), renamed over it, the directory
/// fsynced. A reader, or a crash at any point, sees the old file or the new one, never a mix.
pub fn replace_file(path: &Path, contents: &[u8]) -> Result<(), StagedDirError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode()
        & 0o777;
    let name = path
        .file_name()
        .ok_or_else(|| StagedDirError::BadRelativePath(path.to_path_buf()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut suffix = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut suffix);
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        hex::encode(suffix)
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(StagedDirError::Io {
            path: path.to_path_buf(),
            error,
        });
    }
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(parent))
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// One new secret file, written and fsynced under a temporary name in its destination's
/// directory, mode 0600, and published by [`StagedFile::commit`]. Dropping it uncommitted
/// removes the temporary file.
pub struct StagedFile {
    destination: PathBuf,
    staging: PathBuf,
    committed: bool,
}

impl StagedFile {
    /// The prefix of the temporary names of `destination`'s staged copies: left behind only
    /// by a process that died between writing and committing, and safe to delete then.
    pub fn staging_prefix(destination: &Path) -> Option<String> {
        let name = destination.file_name()?;
        Some(format!(".{}.tmp-", name.to_string_lossy()))
    }

    /// Writes `contents` next to `destination`, which must not exist yet.
    pub fn write(destination: &Path, contents: &[u8]) -> Result<StagedFile, StagedDirError> {
        if destination.symlink_metadata().is_ok() {
            return Err(StagedDirError::Exists(destination.to_path_buf()));
        }
        let prefix = StagedFile::staging_prefix(destination)
            .ok_or_else(|| StagedDirError::BadRelativePath(destination.to_path_buf()))?;
        let mut suffix = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut suffix);
        let staging = parent_of(destination).join(format!("{prefix}{}", hex::encode(suffix)));
        let staged = StagedFile {
            destination: destination.to_path_buf(),
            staging,
            committed: false,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged.staging)
            .map_err(io_err(&staged.staging))?;
        // On an error `staged` is dropped, which removes what was written.
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .map_err(io_err(&staged.staging))?;
        Ok(staged)
    }

    /// Publishes the file under its name, durably. A hard link, unlike a rename, fails if
    /// the destination appeared meanwhile, so an existing file is never replaced.
    pub fn commit(mut self) -> Result<PathBuf, StagedDirError> {
        std::fs::hard_link(&self.staging, &self.destination).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => StagedDirError::Exists(self.destination.clone()),
            _ => StagedDirError::Io {
                path: self.destination.clone(),
                error: e,
            },
        })?;
        self.committed = true;
        std::fs::remove_file(&self.staging).map_err(io_err(&self.staging))?;
        let parent = parent_of(&self.destination);
        File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&parent))?;
        Ok(self.destination.clone())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.staging);
        }
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn builds_then_moves_into_place_with_private_modes() {
        let parent = tempfile::tempdir().unwrap();
        let dest = parent.path().join("out");
        let staged = StagedDir::create(&dest).unwrap();
        staged.write_file(Path::new("a/secret"), b"x").unwrap();
        assert!(!dest.exists());
        staged.commit().unwrap();
        let file_mode = std::fs::metadata(dest.join("a/secret"))
            .unwrap()
            .permissions()
            .mode();
        let dir_mode = std::fs::metadata(dest.join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(file_mode & 0o777, 0o600);
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 1);
    }

    #[test]
    fn dropping_leaves_nothing_and_existing_is_refused() {
        let parent = tempfile::tempdir().unwrap();
        let dest = parent.path().join("out");
        {
            let staged = StagedDir::create(&dest).unwrap();
            staged.write_file(Path::new("f"), b"x").unwrap();
        }
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
        std::fs::create_dir(&dest).unwrap();
        assert!(matches!(
            StagedDir::create(&dest),
            Err(StagedDirError::Exists(_))
        ));
        let staged = StagedDir::create(&parent.path().join("other")).unwrap();
        assert!(staged.write_file(Path::new("../escape"), b"x").is_err());
    }

    #[test]
    fn a_staged_file_appears_only_on_commit_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("key_share.json");
        let staged = StagedFile::write(&dest, b"secret").unwrap();
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        staged.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"secret");
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(matches!(
            StagedFile::write(&dest, b"other"),
            Err(StagedDirError::Exists(_))
        ));

        let other = dir.path().join("second.json");
        let staged = StagedFile::write(&other, b"x").unwrap();
        std::fs::write(&other, b"appeared meanwhile").unwrap();
        assert!(matches!(staged.commit(), Err(StagedDirError::Exists(_))));
        assert_eq!(std::fs::read(&other).unwrap(), b"appeared meanwhile");
        // The uncommitted copy is gone too.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        drop(StagedFile::write(&dir.path().join("third"), b"x").unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_eq!(
            StagedFile::staging_prefix(&dest).unwrap(),
            ".key_share.json.tmp-"
        );
    }

    #[test]
    fn replacing_keeps_the_mode_and_leaves_no_temporary_file() {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("cosigner.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace_file(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 1);
        // A file that is not there is not created.
        let missing = parent.path().join("missing.toml");
        assert!(replace_file(&missing, b"x").is_err());
        assert!(!missing.exists());
    }
}
