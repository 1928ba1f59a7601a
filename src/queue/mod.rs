//! Queue adapter.
