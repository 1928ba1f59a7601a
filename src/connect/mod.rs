//! Connect adapter.
