'use strict'
// The service's process group, in the two places where the SDK signals it (protocol.md
// section 9):
// - a process without stop handlers whose supervisor died SIGTERMs its whole group, as pm's
//   sentinel does for a program without the SDK;
// - standalone, a stop the application took part in ends with SIGTERM to the process's group
//   as the process exits, so that the processes it started and left in its group end with it,
//   as under pm (where the group is SIGKILLed once the main process is gone).
// `process.kill(-pid)` reaches a group only if this process leads it: no group but its own can
// have its pid as id.

/** SIGTERM to this process's group if it leads one (pm starts each service so), else to itself. */
function termOwnGroup() {
  try {
    process.kill(-process.pid, 'SIGTERM')
  } catch {
    process.kill(process.pid, 'SIGTERM')
  }
}

/**
 * At exit: SIGTERM to this process's group if it leads one. This process gets it too, and is
 * not harmed only while a SIGTERM listener is installed (Node then has a handler for the signal
 * and, exiting, never runs it): without one, nothing is sent. Returns whether it was sent.
 */
function termGroupAtExit() {
  if (process.listenerCount('SIGTERM') === 0) return false
  try {
    process.kill(-process.pid, 'SIGTERM')
    return true
  } catch {
    // Not a group leader (started by a shell script or npm, say): its group is not its own.
    return false
  }
}

module.exports = { termOwnGroup, termGroupAtExit }
