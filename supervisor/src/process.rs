//! Child processes: turning a spec into a running process, its channel, looking at and
//! signalling processes, reaping them, and the sentinel that outlives a killed supervisor.

pub(crate) mod channel;
pub(crate) mod launch;
pub(crate) mod procs;
pub(crate) mod reap;
pub(crate) mod sentinel;
pub(crate) mod shipped_python;
