//! Core decisions under paused time.
