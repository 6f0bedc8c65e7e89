//! Delivery status notifications (RFC 3464) built as pure functions.
