//! Integration tests: the real `pm-supervisor` binary with real Node, Python and shell children.

mod support;

mod channel;
mod commands;
mod config_errors;
mod control;
mod faults;
mod guards;
mod last_words;
mod launchers;
mod local_users;
mod log_faults;
mod logs;
mod logs_cli;
mod monit;
mod orphans;
mod restart;
mod rust_services;
mod sdk_rust;
mod slow_clients;
mod stop;
