//! Outbound delivery: the SMTP client session ([`client`]) and the agent that runs one task
//! per connection for the queue manager ([`agent`]).

pub mod agent;
pub mod client;

pub use agent::Agent;
