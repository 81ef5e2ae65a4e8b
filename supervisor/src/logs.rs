//! Services' output: the log line format ([`lines`]), the readers that turn a child's pipes into
//! lines ([`pump`]), the log files with their writer threads ([`writer`], [`file`]), and the
//! recent lines of console services kept in memory ([`ring`]).

pub(crate) mod file;
pub(crate) mod lines;
pub(crate) mod pump;
pub(crate) mod ring;
pub(crate) mod writer;
