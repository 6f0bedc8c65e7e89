//! Retry scheduling as pure functions of state and time.
