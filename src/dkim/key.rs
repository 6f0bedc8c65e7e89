//! DKIM private keys: generated, stored as PKCS#8 PEM, loaded for signing, and the public key
//! as the `p=` of the DNS record. Sans-IO: bytes in, bytes out.
//!
//! Signing is ring's (Ed25519, and RSA PKCS#1 v1.5 with SHA-256, in constant time). ring cannot
//! generate RSA keys, so the `rsa` crate makes them and is used for nothing else.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair, RsaKeyPair};

/// The signing algorithms: RFC 8463's and RFC 6376's (RFC 8301 forbids rsa-sha1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Ed25519,
    Rsa2048,
}

impl Algorithm {
    pub const ALL: [Algorithm; 2] = [Algorithm::Rsa2048, Algorithm::Ed25519];

    /// The `a=` tag of a signature.
    pub fn tag(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519-sha256",
            Algorithm::Rsa2048 => "rsa-sha256",
        }
    }

    /// The `k=` tag of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa2048 => "rsa",
        }
    }

    /// The name used on the command line and in key file names.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa2048 => "rsa2048",
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A private key ready to sign.
pub enum PrivateKey {
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.algorithm())
    }
}

const PEM_LABEL: &str = "PRIVATE KEY";

impl PrivateKey {
    /// A new key's PKCS#8 PEM text.
    pub fn generate(algorithm: Algorithm) -> Result<String, String> {
        let der = match algorithm {
            Algorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| "the system random number generator failed".to_string())?
                .as_ref()
                .to_vec(),
            Algorithm::Rsa2048 => generate_rsa_pkcs8()?,
        };
        Ok(pem_encode(&der))
    }

    /// The key of a PEM file written by [`PrivateKey::generate`] (or any unencrypted PKCS#8
    /// key of these algorithms), checked to be of `algorithm`.
    pub fn from_pem(text: &str, algorithm: Algorithm) -> Result<PrivateKey, String> {
        let der = pem_decode(text)?;
        match algorithm {
            Algorithm::Ed25519 => Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
                .map(PrivateKey::Ed25519)
                .map_err(|e| format!("not a PKCS#8 Ed25519 key: {e}")),
            Algorithm::Rsa2048 => RsaKeyPair::from_pkcs8(&der)
                .map(PrivateKey::Rsa)
                .map_err(|e| format!("not a usable PKCS#8 RSA key (2048 bits or more): {e}")),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            PrivateKey::Ed25519(_) => Algorithm::Ed25519,
            PrivateKey::Rsa(_) => Algorithm::Rsa2048,
        }
    }

    /// The `p=` of the DNS record, decoded: the raw 32-octet key for Ed25519 (RFC 8463 §4.2),
    /// the SubjectPublicKeyInfo for RSA (what `openssl rsa -pubout` prints, and what every
    /// verifier reads; RFC 6376 §3.6.1).
    pub fn public_key(&self) -> Vec<u8> {
        match self {
            PrivateKey::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
            PrivateKey::Rsa(pair) => rsa_subject_public_key_info(pair.public_key().as_ref()),
        }
    }

    /// The signature of the data a DKIM signature covers (RFC 6376 §3.7): RSA signs it with
    /// SHA-256 as PKCS#1 v1.5; Ed25519 signs its SHA-256 digest (RFC 8463 §3).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            PrivateKey::Ed25519(pair) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, data);
                Ok(pair.sign(digest.as_ref()).as_ref().to_vec())
            }
            PrivateKey::Rsa(pair) => {
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    data,
                    &mut out,
                )
                .map_err(|_| "RSA signing failed".to_string())?;
                Ok(out)
            }
        }
    }
}

/// A 2048-bit RSA key as PKCS#8 DER, with ring's random numbers.
fn generate_rsa_pkcs8() -> Result<Vec<u8>, String> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut RingRandom(SystemRandom::new()), 2048)
        .map_err(|e| format!("cannot generate an RSA key: {e}"))?;
    key.to_pkcs8_der()
        .map(|der| der.as_bytes().to_vec())
        .map_err(|e| format!("cannot encode the RSA key: {e}"))
}

/// ring's system random numbers as the `rand_core` generator the `rsa` crate asks for: one
/// source of randomness for the whole program, and no `getrandom` feature to turn on.
struct RingRandom(SystemRandom);

impl rsa::rand_core::RngCore for RingRandom {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // The trait has no way to report it, and a key made from predictable numbers must
        // never exist: stopping is the only safe answer (getrandom does not fail on Linux).
        if self.try_fill_bytes(dest).is_err() {
            panic!("the system random number generator failed");
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        use ring::rand::SecureRandom;
        self.0.fill(dest).map_err(|_| {
            rsa::rand_core::Error::from(
                std::num::NonZeroU32::new(rsa::rand_core::Error::CUSTOM_START)
                    .expect("CUSTOM_START is not zero"),
            )
        })
    }
}

impl rsa::rand_core::CryptoRng for RingRandom {}

/// `SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { RSAPublicKey } }`.
fn rsa_subject_public_key_info(rsa_public_key: &[u8]) -> Vec<u8> {
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0];
    bit_string.extend_from_slice(rsa_public_key);
    let mut body = ALGORITHM.to_vec();
    body.extend(der_element(0x03, &bit_string));
    der_element(0x30, &body)
}

fn der_element(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = content.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn pem_encode(der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    text
}

fn pem_decode(text: &str) -> Result<Vec<u8>, String> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| format!("no {begin} line (an unencrypted PKCS#8 key is needed)"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| format!("no {end} line"))?
        + start;
    let base64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(base64)
        .map_err(|e| format!("the key is not valid base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_ed25519_key_loads_and_signs_verifiably() {
        let pem = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let key = PrivateKey::from_pem(&pem, Algorithm::Ed25519).unwrap();
        let public = key.public_key();
        assert_eq!(public.len(), 32);
        let signature = key.sign(b"data").unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, b"data");
        signature::UnparsedPublicKey::new(&signature::ED25519, &public)
            .verify(digest.as_ref(), &signature)
            .unwrap();
    }

    #[test]
    fn a_generated_rsa_key_is_2048_bits_and_its_spki_verifies_its_signatures() {
        let pem = PrivateKey::generate(Algorithm::Rsa2048).unwrap();
        let key = PrivateKey::from_pem(&pem, Algorithm::Rsa2048).unwrap();
        let PrivateKey::Rsa(pair) = &key else {
            panic!("not RSA")
        };
        assert_eq!(pair.public().modulus_len(), 256);
        let spki = key.public_key();
        // The SPKI wraps the PKCS#1 key ring verifies with: unwrap it by its known prefix.
        let prefix_len = spki.len() - pair.public_key().as_ref().len();
        assert_eq!(&spki[prefix_len..], pair.public_key().as_ref());
        assert_eq!(&spki[..4], &[0x30, 0x82, 0x01, 0x22]);
        let signature = key.sign(b"data").unwrap();
        signature::UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            pair.public_key().as_ref(),
        )
        .verify(b"data", &signature)
        .unwrap();
    }

    #[test]
    fn a_key_of_the_other_algorithm_or_no_pem_is_refused_with_the_reason() {
        let pem = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        let error = PrivateKey::from_pem(&pem, Algorithm::Rsa2048).unwrap_err();
        assert!(error.contains("RSA"), "{error}");
        let error = PrivateKey::from_pem("hello", Algorithm::Ed25519).unwrap_err();
        assert!(error.contains("BEGIN PRIVATE KEY"), "{error}");
    }

    #[test]
    fn der_lengths_use_the_long_form_from_128_octets() {
        assert_eq!(der_element(0x04, &[1; 3])[..2], [0x04, 3]);
        assert_eq!(der_element(0x04, &[1; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(der_element(0x04, &[1; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }
}
