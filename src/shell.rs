//! Paths in the commands our messages tell an operator to run, quoted so that the command
//! can be pasted as it is printed.

use std::path::Path;

/// `path` as one POSIX shell word: unchanged when it holds only characters no shell
/// treats specially, otherwise in single quotes (a quote inside written as `'\''`).
pub fn quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%=".contains(&b));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            quote(Path::new("/etc/cosigner/key_share.json")),
            "/etc/cosigner/key_share.json"
        );
        assert_eq!(quote(Path::new("my dir/key")), "'my dir/key'");
        assert_eq!(quote(Path::new("it's")), r"'it'\''s'");
        assert_eq!(quote(Path::new("$HOME")), "'$HOME'");
        assert_eq!(quote(Path::new("")), "''");
    }
}
