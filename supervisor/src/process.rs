//! Child processes: turning a spec into a running process, its channel, and the sentinel that
//! outlives a killed supervisor. What the operating system does for them is in `platform`.

pub(crate) mod channel;
pub(crate) mod launch;
pub(crate) mod sentinel;
pub(crate) mod shipped_python;
