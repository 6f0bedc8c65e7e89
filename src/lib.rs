//! Portcullis: a mail submission server (RFC 6409).

pub mod smtp;
pub mod timefmt;
pub mod spool;
pub mod auth;
