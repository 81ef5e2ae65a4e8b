'use strict'
// When the controlling process exits: one set of process-wide hooks for every manager that asks
// for them (a manager whose supervisor started, or that has onstopping handlers).
//
// - 'exit' (process.exit, or the event loop ran dry): synchronous, so only the onstopping
//   handlers are called (their Promises are not awaited). The supervisor sees its control
//   channel close when this process is gone and stops every service by itself.
// - Plain Node, SIGINT and SIGTERM: the handlers run (awaited), then every service is stopped
//   and the supervisor exits, within each manager's exitTimeout; then, unless someone else
//   listens to the signal too, it is raised again with its default action, so the process ends
//   as it would have without pm. A second signal during that ends the process at once.
// - Electron, the app's 'before-quit' and 'will-quit' (Electron turns SIGINT and SIGTERM into
//   a quit itself): the first one is prevented, the same sequence runs, then app.quit() again.

const managers = new Set()
const hookedApps = new WeakSet()
let processHooks = false
let signalHooks = false
let signalled = null

/** Registers `manager` (which has `_quit(reason)` and `_exitNow()`) and installs the hooks. */
function register(manager, app) {
  managers.add(manager)
  if (!processHooks) {
    processHooks = true
    process.on('exit', onExit)
  }
  if (app) {
    hookApp(app)
  } else if (!signalHooks) {
    signalHooks = true
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  }
}

function onExit() {
  for (const m of managers) m._exitNow()
}

function removeSignalHooks() {
  if (!signalHooks) return
  signalHooks = false
  process.removeListener('SIGINT', onSignal)
  process.removeListener('SIGTERM', onSignal)
}

function onSignal(signal) {
  if (signalled !== null) {
    // A second signal: no more waiting. The supervisor stops what is left when this process
    // is gone.
    reraise(signal)
    return
  }
  signalled = signal
  Promise.all([...managers].map((m) => m._quit(signal))).then(() => reraise(signal))
}

function reraise(signal) {
  removeSignalHooks()
  if (process.listenerCount(signal) === 0) {
    process.kill(process.pid, signal)
  }
}

function hookApp(app) {
  if (hookedApps.has(app)) return
  hookedApps.add(app)
  let state = 'running'
  const onQuit = (event) => {
    if (state === 'done') return
    if (event && typeof event.preventDefault === 'function') event.preventDefault()
    if (state === 'stopping') return
    state = 'stopping'
    Promise.all([...managers].map((m) => m._quit('quit'))).then(() => {
      state = 'done'
      app.quit()
    })
  }
  app.on('before-quit', onQuit)
  app.on('will-quit', onQuit)
}

module.exports = { register }
