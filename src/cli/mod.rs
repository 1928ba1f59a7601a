//! Operator commands.

pub mod validate;
