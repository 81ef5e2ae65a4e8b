'use strict'
// The service's process group, in the two places where the SDK signals it (protocol.md
// section 9):
// - a process without stop handlers whose supervisor died SIGTERMs its whole group, as pm's
//   sentinel does for a program without the SDK;
// - standalone, when a stop ends a process that leads its group, what is left of the group is
//   SIGKILLed, as pm does when a service's main process exits.
// Finding the group's members needs /proc (Linux); elsewhere the second one does nothing.

const fs = require('node:fs')

/** SIGTERM to this process's group if it leads one (pm starts each service so), else to itself. */
function termOwnGroup() {
  try {
    // A group whose id is this pid can only be the one this process leads.
    process.kill(-process.pid, 'SIGTERM')
  } catch {
    process.kill(process.pid, 'SIGTERM')
  }
}

/** Fields 3 onwards of /proc/<pid>/stat (state, ppid, pgrp, ...), or null. */
function statFields(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name, in parentheses, may itself contain spaces and parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return null
  }
}

/**
 * SIGKILLs every other process of this process's group, if this process leads the group.
 * Returns how many were signalled (0 without /proc). Synchronous: it runs in 'exit'.
 */
function killRestOfGroup() {
  const own = statFields('self')
  if (own === null || Number(own[2]) !== process.pid) return 0
  let names
  try {
    names = fs.readdirSync('/proc')
  } catch {
    return 0
  }
  let n = 0
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    const f = statFields(name)
    // Zombies are already gone; they wait for their parent to reap them.
    if (f === null || Number(f[2]) !== process.pid || f[0] === 'Z') continue
    try {
      process.kill(Number(name), 'SIGKILL')
      n++
    } catch {
      // It ended in between.
    }
  }
  return n
}

module.exports = { termOwnGroup, killRestOfGroup }
