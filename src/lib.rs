//! Portcullis: a mail submission server (RFC 6409).

pub mod accounts;
pub mod auth;
pub mod bench;
pub mod bounce;
pub mod cli;
pub mod client;
pub mod config;
pub mod delivery;
pub mod diagnostics;
pub mod dkim;
pub mod http;
pub mod invisible;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod privileges;
pub mod queue;
pub mod reload;
pub mod routing;
pub mod sd_notify;
pub mod server;
pub mod smtp;
pub mod spool;
pub mod timefmt;
pub mod tls;
