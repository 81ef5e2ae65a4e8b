//! # pm-child
//!
//! The child side of the [pm](https://github.com/pm-supervisor/pm) process supervisor, and the
//! home of the protocol types both ends share ([`protocol`]).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod protocol;
