//! What drives the actor: `run` (a config file) and `serve` (a controlling process), the control
//! connections they serve, and the command-line client.

pub(crate) mod cli;
pub(crate) mod connection;
pub(crate) mod diagnostics;
pub(crate) mod run;
