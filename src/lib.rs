//! Portcullis: a mail submission server (RFC 6409).

pub mod config;
pub mod smtp;
pub mod timefmt;
pub mod spool;
pub mod auth;
pub mod tls;
pub mod policy;
pub mod listener;
pub mod server;
pub mod cli;
