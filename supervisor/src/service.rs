//! A service's state as pure machines: no I/O, no clock of their own. The actor feeds them what
//! happened, with its time, and carries out what they answer; their tests drive them with
//! made-up instants. (`watch` is the exception: watch mode's file watcher, which the actor's
//! system owns.)

pub(crate) mod lifecycle;
pub(crate) mod restart_policy;
pub(crate) mod stop;
pub(crate) mod watch;
