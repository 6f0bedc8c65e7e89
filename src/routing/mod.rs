//! Routing: where mail for a recipient domain goes (RFC 5321 §5.1, RFC 7505), behind a resolver trait.
