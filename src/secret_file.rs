//! Files that hold secrets: a key share, a SecretConnection identity key, the cluster TLS
//! key, a whole validator key.
//!
//! Like ssh with a private key, a cosigner refuses such a file when its group or others
//! have any access to it: a copy that anyone else on the host can read is a leaked key,
//! and refusing at start is the one moment the operator is sure to look. The check is made
//! on the open descriptor, so it is about the very file that is read.
//!
//! The contents go into one buffer allocated up front (so no reallocation leaves a copy
//! behind) that is wiped when dropped.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Permission bits that give anyone but the owner access.
const NOT_OWNER: u32 = 0o077;

/// Why a secret file was not read.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileProblem {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(io::Error),
    /// Larger than the caller's bound; the caller says what kind of file it expected.
    #[error("file is larger than {0} bytes")]
    TooLarge(usize),
    /// Its group or others may access the file.
    #[error(transparent)]
    Loose(#[from] LooseMode),
}

/// A secret file that its group or others may access.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "mode {mode:04o} gives group or others access to this secret; like ssh with a private \
     key, the cosigner refuses it. Make it private to its owner: chmod 600 {}",
    crate::shell::quote(path)
)]
pub struct LooseMode {
    /// The file.
    pub path: PathBuf,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// The rule itself: a secret file's mode gives its group and others nothing.
pub fn check_private(path: &Path, mode: u32) -> Result<(), LooseMode> {
    if mode & NOT_OWNER == 0 {
        Ok(())
    } else {
        Err(LooseMode {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        })
    }
}

/// Reads a secret file of at most `max_len` bytes, refusing it if its mode is not private
/// ([`check_private`]).
pub fn read_private(path: &Path, max_len: usize) -> Result<Zeroizing<Vec<u8>>, SecretFileProblem> {
    let file = File::open(path).map_err(SecretFileProblem::Read)?;
    let mode = file
        .metadata()
        .map_err(SecretFileProblem::Read)?
        .permissions()
        .mode();
    check_private(path, mode)?;
    read_wiped(file, max_len)
}

/// Reads a secret file of at most `max_len` bytes whatever its mode: for a file that is
/// only imported from (the old signer's key, which `split-key` and `init-single` move into
/// a private directory), never one a cosigner keeps using.
pub fn read_any_mode(path: &Path, max_len: usize) -> Result<Zeroizing<Vec<u8>>, SecretFileProblem> {
    read_wiped(File::open(path).map_err(SecretFileProblem::Read)?, max_len)
}

fn read_wiped(mut file: File, max_len: usize) -> Result<Zeroizing<Vec<u8>>, SecretFileProblem> {
    // One byte more than allowed, to tell "exactly max_len" from "too large" without a
    // second allocation.
    let mut buf = Zeroizing::new(vec![0u8; max_len + 1]);
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SecretFileProblem::Read(e)),
        }
    }
    if filled > max_len {
        return Err(SecretFileProblem::TooLarge(max_len));
    }
    // Shortening keeps the allocation, which the wrapper wipes in full on drop.
    buf.truncate(filled);
    Ok(buf)
}

/// A JSON error for a file holding secrets, without the input it quotes: serde quotes a
/// string of the wrong type or value (`invalid type: string "…"`), which may be the secret
/// itself, and these messages end up in logs.
pub fn redacted_json_error(e: &serde_json::Error) -> String {
    redact_quoted_strings(&e.to_string())
}

fn redact_quoted_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len()]);
        let quoted = &rest[at + MARK.len()..];
        // serde escapes quotes inside the string, so the first unescaped one ends it.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        out.push_str("(redacted)\"");
        match end {
            Some(i) => rest = &quoted[i + 1..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn write(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_rule_refuses_any_group_or_other_bit() {
        let p = Path::new("/k");
        for mode in [0o600, 0o400, 0o700, 0o100600] {
            assert!(check_private(p, mode).is_ok(), "{mode:o}");
        }
        for mode in [0o640, 0o604, 0o644, 0o660, 0o610, 0o601, 0o777, 0o100644] {
            let err = check_private(p, mode).unwrap_err();
            assert_eq!(err.mode, mode & 0o7777);
        }
    }

    #[test]
    fn reads_a_private_file_and_names_the_chmod_for_a_loose_one() {
        let dir = tempfile::tempdir().unwrap();
        let ok = write(dir.path(), "ok", b"secret", 0o600);
        assert_eq!(read_private(&ok, 64).unwrap().as_slice(), b"secret");
        let loose = write(dir.path(), "loose key", b"secret", 0o644);
        let msg = read_private(&loose, 64).unwrap_err().to_string();
        let chmod = format!("chmod 600 '{}'", loose.display());
        assert!(msg.contains("mode 0644") && msg.contains(&chmod), "{msg}");
    }

    #[test]
    fn bounds_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let exact = write(dir.path(), "exact", &[7; 16], 0o600);
        assert_eq!(read_private(&exact, 16).unwrap().len(), 16);
        assert!(matches!(
            read_private(&exact, 15),
            Err(SecretFileProblem::TooLarge(15))
        ));
        let empty = write(dir.path(), "empty", b"", 0o600);
        assert_eq!(read_any_mode(&exact, 16).unwrap().len(), 16);
        let loose = write(dir.path(), "loose", b"imported", 0o644);
        assert_eq!(read_any_mode(&loose, 16).unwrap().as_slice(), b"imported");
        assert!(read_private(&empty, 16).unwrap().is_empty());
        assert!(matches!(
            read_private(&dir.path().join("absent"), 16),
            Err(SecretFileProblem::Read(_))
        ));
    }

    #[test]
    fn json_errors_lose_the_quoted_input() {
        let e = serde_json::from_str::<u16>(r#""c2VjcmV0IHNlZWQ=""#).unwrap_err();
        let msg = redacted_json_error(&e);
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
        assert!(msg.contains("invalid type: string \"(redacted)\""), "{msg}");
        assert_eq!(
            redact_quoted_strings(r#"a string "x\"y" b string "z" c"#),
            r#"a string "(redacted)" b string "(redacted)" c"#
        );
        assert_eq!(redact_quoted_strings("no strings"), "no strings");
    }
}
