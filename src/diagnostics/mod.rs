//! Diagnostics for people operating or using a mail server: `portcullis explain` reads an SMTP
//! reply (code, enhanced status code, or a whole pasted line) and says what it means, why it
//! happens, how to fix it and whether to retry. The knowledge is data (`codes.toml`), written in
//! Portcullis's own words from the RFCs and checked against the IANA registry by the tests.
//! `portcullis check` walks any submission server through connect, TLS, AUTH and a submission
//! and names the step and the cause when one fails.

pub mod bounce;
pub mod check;
pub mod explain;
mod knowledge;
mod query;
mod render;

#[cfg(test)]
mod tests;
