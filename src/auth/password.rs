//! Password hashing (argon2id, PHC strings) and generation of strong passwords.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, PasswordVerifier, SaltString};
use argon2::{Argon2, Block, Params};
use ring::rand::{SecureRandom, SystemRandom};

use crate::invisible::invisible;

/// Hashes with argon2id at the crate's defaults (m = 19 MiB, t = 2, p = 1: the OWASP baseline).
pub fn hash(password: &str) -> Result<String, String> {
    Hasher::new().hash(password)
}

/// Hashes like [`hash`], reusing its 19 MiB of argon2 memory from one password to the next:
/// for many passwords that saves allocating and faulting in fresh pages every time, and keeps
/// freed blocks from piling up in the allocator.
pub struct Hasher {
    memory: Vec<Block>,
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher::new()
    }
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            memory: vec![Block::default(); Params::default().block_count()],
        }
    }

    /// A PHC string `$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH` with a fresh random salt.
    pub fn hash(&mut self, password: &str) -> Result<String, String> {
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| "the system random number generator failed".to_string())?;
        let argon2 = Argon2::default();
        let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
        argon2
            .hash_password_into_with_memory(
                password.as_bytes(),
                &salt,
                &mut output,
                &mut self.memory,
            )
            .map_err(|e| e.to_string())?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(argon2::Version::V0x13.into()),
            params: ParamsString::try_from(argon2.params()).map_err(|e| e.to_string())?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&output).map_err(|e| e.to_string())?),
        };
        Ok(phc.to_string())
    }
}

/// Verifies a password against a PHC string; a malformed hash never verifies.
pub fn verify(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Letters and digits without the look-alikes 0/O, 1/l/I, so a printed password can be retyped.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
const GENERATED_LENGTH: usize = 24; // 24 * log2(57) = 140 bits

pub fn generate() -> Result<String, String> {
    let rng = SystemRandom::new();
    let mut password = String::with_capacity(GENERATED_LENGTH);
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    while password.len() < GENERATED_LENGTH {
        let mut byte = [0u8; 1];
        rng.fill(&mut byte)
            .map_err(|_| "the system random number generator failed".to_string())?;
        if usize::from(byte[0]) < limit {
            password.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    Ok(password)
}

/// The fewest characters a password may have to be accepted from a provisioning file.
pub const MIN_LENGTH: usize = 12;

/// Why a password is too weak to accept, or `None`. The rule is deliberately simple: at least
/// [`MIN_LENGTH`] characters, and characters from at least two of the classes lower-case ASCII
/// letters, upper-case ASCII letters, ASCII digits, and everything else (punctuation, spaces,
/// non-ASCII letters). The empty password is the caller's to report.
pub fn weakness(password: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Some(format!(
            "it has {length} character{}; at least {MIN_LENGTH} are required",
            if length == 1 { "" } else { "s" }
        ));
    }
    let class = |c: char| {
        if c.is_ascii_lowercase() {
            "lower-case letters"
        } else if c.is_ascii_uppercase() {
            "upper-case letters"
        } else if c.is_ascii_digit() {
            "digits"
        } else {
            "symbols or non-ASCII characters"
        }
    };
    let first = class(password.chars().next()?);
    if password.chars().all(|c| class(c) == first) {
        return Some(format!(
            "it consists of {first} only; use at least two of lower-case letters, upper-case \
             letters, digits and other characters"
        ));
    }
    let folded = password.to_lowercase();
    COMMON.contains(&folded.as_str()).then(|| {
        "it is one of the commonest passwords, which attackers try first; choose another or \
         let Portcullis generate one"
            .to_string()
    })
}

/// The passwords of at least [`MIN_LENGTH`] characters and two classes that lead the public
/// lists of leaked passwords (compared lower-cased): long enough to pass the rule above, and
/// the first an attacker tries.
const COMMON: &[&str] = &[
    "password1234",
    "password12345",
    "password123!",
    "password2024",
    "password2025",
    "password2026",
    "passw0rd1234",
    "p@ssw0rd1234",
    "p@ssword1234",
    "qwerty123456",
    "qwertyuiop12",
    "qwertyuiop123",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "zaq12wsxcde3",
    "abc123456789",
    "abcd12345678",
    "123456789abc",
    "123456789qwe",
    "iloveyou1234",
    "welcome12345",
    "welcome@1234",
    "letmein12345",
    "changeme1234",
    "trustno12345",
    "administrator1",
    "admin1234567",
    "admin@123456",
    "football1234",
    "sunshine1234",
    "princess1234",
    "monkey123456",
    "dragon123456",
    "master123456",
    "superman1234",
];

/// Hashes every password like [`hash`] on `threads` threads at once (each with its own
/// 19 MiB). `progress` is called on the calling thread, about ten times a second and
/// once at the end, with the number of passwords hashed so far. The hashes come back in the
/// order of `passwords`; the first failure stops the work.
pub fn hash_many(
    passwords: &[&str],
    threads: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<String>, String> {
    let threads = threads.clamp(1, passwords.len().max(1));
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut hashes = vec![String::new(); passwords.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut hasher = Hasher::new();
                    let mut finished = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(password) = passwords.get(index) else {
                            break;
                        };
                        match hasher.hash(password) {
                            Ok(phc) => finished.push((index, phc)),
                            Err(error) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(error);
                            }
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(finished)
                })
            })
            .collect();
        while !workers.iter().all(|worker| worker.is_finished()) {
            progress(done.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        progress(done.load(Ordering::Relaxed));
        for worker in workers {
            let finished = worker
                .join()
                .map_err(|_| "a hashing thread panicked".to_string())??;
            for (index, phc) in finished {
                hashes[index] = phc;
            }
        }
        Ok(hashes)
    })
}

/// What may be wrong with the bytes of a password, in plain words: leading or trailing whitespace,
/// invisible characters anywhere (zero-width spaces, no-break spaces, byte order marks, control
/// characters such as a stray CR), bytes that are not UTF-8, emptiness. A pasted password with
/// one of these is the commonest cause of a `535` that "cannot be".
pub fn inspect(content: &[u8]) -> Vec<String> {
    let mut issues = Vec::new();
    let Ok(text) = std::str::from_utf8(content) else {
        issues.push(
            "the password is not valid UTF-8 (saved in a legacy encoding such as Latin-1?); \
             servers usually expect UTF-8"
                .to_string(),
        );
        return issues;
    };
    let chars: Vec<char> = text.chars().collect();
    let (Some(&first), Some(&last)) = (chars.first(), chars.last()) else {
        issues.push("the password is empty".to_string());
        return issues;
    };
    if let Some(name) = edge_name(first) {
        issues.push(format!("the password starts with {name}"));
    }
    if chars.len() > 1
        && let Some(name) = edge_name(last)
    {
        issues.push(format!("the password ends with {name}"));
    }
    let inner = chars
        .iter()
        .enumerate()
        .skip(1)
        .take(chars.len().saturating_sub(2));
    for (index, &c) in inner {
        if let Some(name) = invisible(c) {
            issues.push(format!(
                "the password contains {name} at character {}",
                index + 1
            ));
        }
    }
    issues
}

/// Whitespace or an invisible character at either end of the password.
fn edge_name(c: char) -> Option<&'static str> {
    match c {
        ' ' => Some("a space"),
        '\t' => Some("a tab"),
        '\n' => Some("a newline (\\n)"),
        '\r' => Some("a carriage return (\\r)"),
        _ => invisible(c).or_else(|| c.is_whitespace().then_some("a whitespace character")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_and_verifies() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&phc, "correct horse"));
        assert!(!verify(&phc, "correct horse "));
        assert!(!verify("not a hash", "x"));
    }

    #[test]
    fn a_reused_hasher_makes_the_same_phc_strings_as_the_argon2_crate() {
        let mut hasher = Hasher::new();
        let first = hasher.hash("first password").unwrap();
        let second = hasher.hash("first password").unwrap();
        assert_ne!(first, second, "a fresh salt each time");
        for phc in [&first, &second] {
            assert!(verify(phc, "first password"));
            // Recomputed by the crate's own PasswordHasher from the same salt: identical.
            let parsed = PasswordHash::new(phc).unwrap();
            let again = argon2::PasswordHasher::hash_password(
                &Argon2::default(),
                b"first password",
                parsed.salt.unwrap(),
            )
            .unwrap();
            assert_eq!(again.to_string(), *phc);
        }
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), GENERATED_LENGTH);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(a, b);
    }

    #[test]
    fn weakness_rule() {
        assert!(weakness("Abc123").unwrap().contains("6 characters"));
        assert!(
            weakness("abcdefghijklmnop")
                .unwrap()
                .contains("lower-case letters only")
        );
        assert!(weakness("123456789012").unwrap().contains("digits only"));
        assert!(weakness("ABCDEFGHIJKL").is_some());
        assert!(weakness("!!!!????....").is_some());
        assert_eq!(weakness("abcdefghijk1"), None);
        assert_eq!(weakness("correct horse battery"), None);
        for common in ["Password1234", "QWERTY123456", "P@ssw0rd1234"] {
            assert!(
                weakness(common).unwrap().contains("commonest passwords"),
                "{common}"
            );
        }
        assert_eq!(weakness(&generate().unwrap()), None);
    }

    #[test]
    fn hash_many_keeps_the_order_and_reports_progress() {
        let passwords = ["first password", "second password", "third password"];
        let mut seen = Vec::new();
        let hashes = hash_many(&passwords, 2, |done| seen.push(done)).unwrap();
        assert_eq!(hashes.len(), 3);
        for (phc, password) in hashes.iter().zip(passwords) {
            assert!(verify(phc, password));
        }
        assert_eq!(seen.last(), Some(&3));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert!(hash_many(&[], 4, |_| {}).unwrap().is_empty());
    }

    #[test]
    fn inspect_names_invisible_characters() {
        let issues = inspect(" pass\u{200C}wo\u{200D}rd\r".as_bytes()).join(" | ");
        assert!(issues.contains("starts with a space"), "{issues}");
        assert!(issues.contains("U+200C"), "{issues}");
        assert!(issues.contains("U+200D"), "{issues}");
        assert!(issues.contains("ends with a carriage return"), "{issues}");
        assert!(inspect(b"plain-Password-1").is_empty());
    }
}
