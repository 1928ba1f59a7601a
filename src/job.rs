//! Job parsing.
