//! Services' output: the log line format ([`lines`]), the readers that turn a child's pipes into
//! lines ([`pump`]), and the log files with their writer threads ([`writer`], [`file`]).

pub(crate) mod file;
pub(crate) mod lines;
pub(crate) mod pump;
pub(crate) mod writer;
