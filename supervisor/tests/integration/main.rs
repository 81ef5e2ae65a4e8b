//! Integration tests: the real `pm-supervisor` binary with real Node, Python and shell children.

mod support;

mod channel;
mod config_errors;
mod control;
mod faults;
mod launchers;
mod logs;
mod orphans;
mod restart;
mod rust_services;
mod sdk_rust;
mod stop;
