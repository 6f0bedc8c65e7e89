//! The password exactly as read from standard input or a file, and what may be wrong with its
//! bytes. A pasted password with a stray newline, a no-break space or a zero-width space is the
//! most common reason for a `535` that "cannot be": the raw bytes are inspected before anything
//! is trimmed, and nothing is removed silently.

use std::io::Read;
use std::path::Path;

use crate::auth::password::inspect;
use crate::invisible::invisible;

pub struct Password {
    /// What is sent: from standard input, the input minus one trailing "\n" (the line
    /// terminator); from a file, every byte of it.
    pub bytes: Vec<u8>,
    /// Problems found in the raw bytes, in plain words.
    pub issues: Vec<String>,
    /// The password without surrounding whitespace and invisible characters, when that differs;
    /// tried once after a `535` so the diagnosis can be certain.
    pub cleaned: Option<Vec<u8>>,
}

impl Password {
    pub fn from_stdin() -> Result<Password, String> {
        let mut raw = Vec::new();
        std::io::stdin()
            .read_to_end(&mut raw)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        Ok(Password::from_stdin_bytes(raw))
    }

    pub fn from_file(path: &Path) -> Result<Password, String> {
        let raw = std::fs::read(path)
            .map_err(|e| format!("{}: cannot read the password file: {e}", path.display()))?;
        Ok(Password::from_file_bytes(raw))
    }

    /// Exactly one trailing "\n" is the line terminator of `echo` or a typed line; anything
    /// else left at the end is reported.
    pub fn from_stdin_bytes(mut bytes: Vec<u8>) -> Password {
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        let mut issues = Vec::new();
        let mut content: &[u8] = &bytes;
        if let Some(rest) = bytes.strip_suffix(b"\r") {
            issues.push(
                "the password read from standard input ends with a carriage return (\\r), \
                 left over from a Windows (CRLF) line ending; if that is not part of the \
                 password, remove it"
                    .to_string(),
            );
            content = rest;
        }
        issues.extend(inspect(content));
        Password::new(bytes, issues)
    }

    /// Nothing is stripped from a file: its whole content is the password.
    pub fn from_file_bytes(bytes: Vec<u8>) -> Password {
        let mut issues = Vec::new();
        let mut content: &[u8] = &bytes;
        let ending = if let Some(rest) = bytes.strip_suffix(b"\r\n") {
            content = rest;
            Some("a CRLF line ending (\\r\\n)")
        } else if let Some(rest) = bytes.strip_suffix(b"\n") {
            content = rest;
            Some("a newline")
        } else {
            None
        };
        if let Some(ending) = ending {
            issues.push(format!(
                "the password file ends with {ending}; if that is not part of the password, \
                 remove it (for example: printf '%s' 'PASSWORD' > FILE): the whole file is \
                 sent as the password, nothing is stripped"
            ));
        }
        issues.extend(inspect(content));
        Password::new(bytes, issues)
    }

    fn new(bytes: Vec<u8>, issues: Vec<String>) -> Password {
        let cleaned = clean(&bytes).filter(|c| *c != bytes && !c.is_empty());
        Password {
            bytes,
            issues,
            cleaned,
        }
    }
}

/// The password as probably meant, undoing what `inspect` reports: a look-alike space becomes
/// the space it looks like, every other invisible character goes, and so does surrounding
/// whitespace.
fn clean(bytes: &[u8]) -> Option<Vec<u8>> {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let kept: String = text.chars().filter_map(visible).collect();
            Some(kept.trim().as_bytes().to_vec())
        }
        Err(_) => Some(bytes.trim_ascii().to_vec()),
    }
}

fn visible(c: char) -> Option<char> {
    match invisible(c) {
        None => Some(c),
        Some(_) if c.is_whitespace() => Some(' '),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_loses_exactly_one_newline() {
        let password = Password::from_stdin_bytes(b"secret\n".to_vec());
        assert_eq!(password.bytes, b"secret");
        assert!(password.issues.is_empty(), "{:?}", password.issues);
        assert!(password.cleaned.is_none());

        let password = Password::from_stdin_bytes(b"secret\r\n".to_vec());
        assert_eq!(password.bytes, b"secret\r");
        assert_eq!(password.issues.len(), 1, "{:?}", password.issues);
        assert!(password.issues[0].contains("carriage return"));
        assert_eq!(password.cleaned.as_deref(), Some(&b"secret"[..]));

        let password = Password::from_stdin_bytes(b"secret\n\n".to_vec());
        assert_eq!(password.bytes, b"secret\n");
        assert!(password.issues[0].contains("ends with a newline"));
    }

    #[test]
    fn file_keeps_every_byte_and_says_so() {
        let password = Password::from_file_bytes(b"secret\n".to_vec());
        assert_eq!(password.bytes, b"secret\n");
        assert_eq!(password.issues.len(), 1);
        assert!(
            password.issues[0].starts_with("the password file ends with a newline; if that is")
        );
        assert_eq!(password.cleaned.as_deref(), Some(&b"secret"[..]));
        let password = Password::from_file_bytes(b"secret\r\n".to_vec());
        assert!(password.issues[0].contains("CRLF"));
        let password = Password::from_file_bytes(b"secret".to_vec());
        assert!(password.issues.is_empty());
    }

    #[test]
    fn invisible_and_surrounding_characters_are_named() {
        let password = Password::from_stdin_bytes(" pass\u{200B}word\u{00A0}".as_bytes().to_vec());
        let all = password.issues.join(" | ");
        assert!(all.contains("starts with a space"), "{all}");
        assert!(all.contains("zero-width space (U+200B"), "{all}");
        assert!(all.contains("ends with a no-break space"), "{all}");
        assert_eq!(password.cleaned.as_deref(), Some(&b"password"[..]));

        let password = Password::from_stdin_bytes("\u{FEFF}pw".as_bytes().to_vec());
        assert!(password.issues[0].contains("byte order mark"));

        // What inspect names inside is undone too: a look-alike space becomes a space.
        let password =
            Password::from_stdin_bytes("correct\u{00A0}horse\u{7}\n".as_bytes().to_vec());
        let all = password.issues.join(" | ");
        assert_eq!(password.issues.len(), 2, "{all}");
        assert!(all.contains("ends with a control character"), "{all}");
        assert!(all.contains("contains a no-break space"), "{all}");
        assert_eq!(password.cleaned.as_deref(), Some(&b"correct horse"[..]));

        // Ordinary spaces inside a pass phrase are fine.
        let password = Password::from_stdin_bytes(b"correct horse battery\n".to_vec());
        assert!(password.issues.is_empty());
        assert!(password.cleaned.is_none());
    }

    #[test]
    fn empty_and_non_utf8() {
        assert!(Password::from_stdin_bytes(b"\n".to_vec()).issues[0].contains("empty"));
        let latin1 = Password::from_file_bytes(b"caf\xe9".to_vec());
        assert!(latin1.issues[0].contains("not valid UTF-8"));
    }
}
