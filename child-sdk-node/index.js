'use strict'
// pm-child: the child side of the pm supervisor for Node services (protocol.md, section 9).
//
// One process-wide connection, made on the first call of any function below:
// - supervised iff Node opened its fork IPC channel (the supervisor sets NODE_CHANNEL_FD=3 for
//   Node children) and that channel is the socket PM_CHANNEL_ID identifies: a cluster worker,
//   or a child forked by the service, has a channel of its own under the same fd number and
//   runs unsupervised. Then `hello` is sent;
// - pm's messages come on 'internalMessage' (Node's route for objects whose `cmd` starts with
//   `NODE_`), so the application's 'message' listeners see only the data its controller sends,
//   exactly as sent; neither that listener nor ours on 'disconnect' keeps the process alive.
// The environment is left as it is: Node removes NODE_CHANNEL_FD itself and marks the channel
// close-on-exec, and a descendant that inherits PM_CHANNEL_* cannot match the channel's identity.
//
// The stop (protocol.md section 9). Until the application registers a stop handler or waits for
// the stop (stopRequested(), handlersDone()), the SDK changes nothing in how the process stops:
// no signal listener; pm's `stop` is answered `term` (the supervisor SIGTERMs the process group
// at once); the supervisor's death makes the SDK SIGTERM its own group, as pm's sentinel does
// for a plain program. From then on, the first of `stop`, 'disconnect' (the supervisor died),
// SIGTERM or SIGINT starts the stop: `stopping` is sent, the handlers run once each in order,
// and the stop goes to the application: to its stopRequested()/handlersDone() wait, else to its
// own signal listeners (a stop that came as a message is emitted to them once). If it takes
// part so, the process ends when the application's work is done; otherwise the SDK exits it
// with code 0 once the HTTP responses in flight on closed servers have ended and queued channel
// messages are written. Standalone, a stop ends with SIGTERM to the process group the process
// leads. Everything runs on the event loop.
//
// The watchdog (PM_WATCHDOG_MS, lib/watchdog.js): heartbeats from an unref'd timer on the event
// loop, from the moment the SDK is loaded; a watcher thread writes where the loop is stuck when
// they stop. heartbeat() takes them over.

const fs = require('node:fs')
const protocol = require('./lib/protocol')
const { runStopHandlers, failureLine, describe } = require('./lib/stop')
const { termOwnGroup, termGroupAtExit } = require('./lib/group')
const inflight = require('./lib/inflight')
const { watchdogTiming, diagnosticsWanted, Heartbeats } = require('./lib/watchdog')
const { version: VERSION } = require('./package.json')

const SDK = 'pm-child-node'
const SIGNALS = ['SIGTERM', 'SIGINT']
// How long running handlers keep the process alive by themselves when its own work has ended
// (protocol.md section 9, the reverse race): the stop's deadline. After the supervisor's death
// the sentinel allows 800 ms; after a signal there is no deadline but this cap. Under pm the
// stop's `timeout_ms`, moved by extend().
const EOF_DEADLINE_MS = 800
const SIGNAL_DEADLINE_MS = 30_000

let conn = null

/**
 * Whether Node's IPC channel is the one pm gave this process: PM_CHANNEL_ID is the device and
 * inode of pm's socket, and the channel's fd must be that very socket.
 */
function ownsChannel() {
  const id = process.env.PM_CHANNEL_ID
  if (typeof id !== 'string' || id === '' || typeof process.send !== 'function') return false
  if (!process.channel) {
    // Node's channel was there and is closed already (its EOF came before this first call): it
    // cannot be checked any more. A cluster worker exits when its channel closes, so this is
    // pm's, and the supervisor is gone.
    return process.connected === false
  }
  const fd = typeof process.channel.fd === 'number' ? process.channel.fd : Number(process.env.PM_CHANNEL_FD)
  try {
    const st = fs.fstatSync(fd, { bigint: true })
    return st.isSocket() && `${st.dev}:${st.ino}` === id
  } catch {
    return false
  }
}

/**
 * Undoes the ref that Node takes on the channel for a 'message' or 'disconnect' listener (its
 * refCounted()), so that the SDK's own listeners never keep the process alive while the
 * application's still do, as under a plain fork.
 */
function unrefOurListener() {
  const channel = process.channel
  if (!channel) return
  if (typeof channel.unrefCounted === 'function') channel.unrefCounted()
  else if (typeof channel.unref === 'function') channel.unref()
}

function connection() {
  if (conn !== null) return conn
  conn = {
    supervised: ownsChannel(),
    stopHandlers: [],
    messageHandlers: [],
    listening: false,
    // The application registered a stop handler or waits for the stop (stopRequested(),
    // handlersDone()): the SDK then takes the stop triggers over. Until then it changes nothing
    // in how the process stops.
    hooked: false,
    // Whether the application waits for the stop through stopRequested() or handlersDone().
    appWaits: false,
    // null until the stop began; then 'plain' (no stop handlers: it stops as a program without
    // the SDK) or the trigger: a pm stop reason, 'shutdown' for the supervisor's death,
    // 'SIGTERM' or 'SIGINT'.
    stop: null,
    // The supervisor said it closes the channel on request: its EOF is not a stop.
    disconnectNotice: false,
    // process.send calls whose callback has not come yet, and who waits for them to reach 0.
    pending: 0,
    flushWaiters: [],
    requested: settleable(),
    done: settleable(),
    // The timer that keeps the process alive while the handlers run: null before the stop,
    // undefined once the handlers are done or the deadline passed.
    keepAlive: null,
    keepAliveUntil: 0,
    // The watchdog's heartbeats, when the service has one (PM_WATCHDOG_MS) and a supervisor.
    heartbeats: null,
  }

  if (conn.supervised) {
    process.on('internalMessage', onInternalMessage)
    process.on('disconnect', onDisconnect)
    unrefOurListener()
    if (process.connected) {
      const timing = watchdogTiming(process.env.PM_WATCHDOG_MS)
      let diagnostics
      if (timing !== null) {
        conn.heartbeats = new Heartbeats(timing, () => write(protocol.heartbeat()))
        if (diagnosticsWanted(process.env) && conn.heartbeats.startDiagnostics()) diagnostics = 'self'
      }
      write(protocol.hello(SDK, VERSION, diagnostics))
      if (conn.heartbeats !== null) conn.heartbeats.start()
    } else {
      // The supervisor is already gone (its EOF came before this first call): that is a stop.
      // Deferred, so that handlers registered along with this first call still run.
      process.nextTick(supervisorGone)
    }
  }
  return conn
}

/** A Promise and its resolve function. */
function settleable() {
  let resolve
  const promise = new Promise((r) => { resolve = r })
  return { promise, resolve }
}

/**
 * The application takes part in the stop: from now on SIGTERM and SIGINT start it (the SDK's
 * listener goes first, so it sees every listener the signal reaches), HTTP requests are tracked
 * for the SDK's own exit, and a stop that ends a standalone process takes the rest of its
 * process group along.
 */
function hook() {
  const c = connection()
  if (c.hooked) return c
  c.hooked = true
  // A stop without handlers is under way already: the process stops as a plain program.
  if (c.stop !== null) return c
  process.prependListener('SIGTERM', onSignal)
  process.prependListener('SIGINT', onSignal)
  process.on('exit', onExit)
  inflight.track()
  return c
}

/** Queues `msg` on the channel; false when there is none, it is closed, or msg is not JSON. */
function write(msg) {
  if (!conn.supervised || !process.connected) return false
  conn.pending++
  try {
    // With a callback, Node reports a closed channel or a failed write there instead of
    // emitting 'error' on process (which would throw, having no listener).
    process.send(msg, onWritten)
    return true
  } catch {
    // JSON.stringify threw (a cycle, a BigInt): nothing was queued.
    onWritten()
    return false
  }
}

function onWritten() {
  conn.pending--
  if (conn.pending === 0) flushDone()
}

function flushDone() {
  const waiters = conn.flushWaiters.splice(0)
  for (const resolve of waiters) resolve()
}

/** Resolves once every queued channel message is written (or the channel is gone). */
function flushed() {
  return new Promise((resolve) => {
    if (conn.pending === 0 || !process.connected) resolve()
    else conn.flushWaiters.push(resolve)
  })
}

function onInternalMessage(value) {
  // Node's own internal messages (handle passing) come here too; only pm's concern the SDK.
  if (value === null || typeof value !== 'object' || value.cmd !== protocol.PM_CMD) return
  const c = protocol.classify(value)
  if (c.kind === 'stop') stopRequestedBy(c.message.reason, false, c.message.timeout_ms)
  else if (c.kind === 'disconnect') conn.disconnectNotice = true
  // Unknown types and bad messages are ignored (protocol.md section 3).
}

function onMessage(data) {
  for (const handler of conn.messageHandlers.slice()) {
    try {
      const r = handler(data)
      if (r && typeof r.then === 'function') r.then(undefined, reportMessageFailure)
    } catch (err) {
      reportMessageFailure(err)
    }
  }
}

function reportMessageFailure(err) {
  process.stderr.write(`pm-child: message handler failed: ${describe(err)}\n`)
}

function onDisconnect() {
  // Writes that were still queued are cancelled with the channel.
  flushDone()
  // Nobody watches the heartbeats any more.
  if (conn.heartbeats !== null) conn.heartbeats.end()
  // The supervisor closed the channel on its controller's request (it said so first): it is
  // alive and will stop this process with SIGTERM when the time comes.
  if (conn.disconnectNotice) return
  supervisorGone()
}

/** EOF on the channel: the supervisor died. The same as `stop` with reason `shutdown`. */
function supervisorGone() {
  stopRequestedBy('shutdown', false, EOF_DEADLINE_MS)
}

function onSignal(signal) {
  // Node calls the application's listeners of this signal right after this one (this one was
  // put first, so none has run or been removed yet): if there are any, the application handles
  // the stop itself too.
  stopRequestedBy(signal, appListeners(signal), SIGNAL_DEADLINE_MS)
}

/** Whether the process has listeners of `signal` besides the SDK's. */
function appListeners(signal) {
  return process.rawListeners(signal).some((l) => l !== onSignal)
}

/**
 * The first stop trigger: pm's `stop` (its reason), the supervisor's death ('shutdown'), or a
 * signal ('SIGTERM', 'SIGINT', with whether the application has listeners of its own for it).
 * `deadlineMs`: how long the stop may take before the process is killed (or the cap).
 */
function stopRequestedBy(why, appListens, deadlineMs) {
  if (conn.stop !== null) return
  if (!conn.hooked) {
    // No stop handlers: the process stops as it would without the SDK.
    conn.stop = 'plain'
    if (conn.supervised && process.connected) write(protocol.term())
    else termOwnGroup()
    return
  }
  conn.stop = why
  keepAliveFor(deadlineMs)
  runStop(why, appListens)
}

/**
 * Keeps the event loop alive for `ms` from now (moved by extend()), until the handlers are done:
 * if the application's own work ends while they run, they are not cut short.
 */
function keepAliveFor(ms) {
  if (conn.keepAlive === undefined) return
  const until = Date.now() + ms
  if (conn.keepAlive !== null) {
    // extend() only ever moves the deadline later.
    if (until <= conn.keepAliveUntil) return
    clearTimeout(conn.keepAlive)
  }
  conn.keepAliveUntil = until
  conn.keepAlive = setTimeout(() => { conn.keepAlive = undefined }, ms)
}

async function runStop(why, appListens) {
  write(protocol.stopping())
  inflight.stop()
  conn.requested.resolve()
  // Handlers registered from now on are not run.
  const handlers = conn.stopHandlers.splice(0)
  await runStopHandlers(handlers, (n, err) => process.stderr.write(failureLine(n, err) + '\n'))
  if (conn.keepAlive) clearTimeout(conn.keepAlive)
  conn.keepAlive = undefined
  conn.done.resolve()

  // Hand the stop to the application (protocol.md section 9): to its wait, else to its own
  // signal listeners, else the SDK ends the process.
  if (conn.appWaits) return
  if (SIGNALS.includes(why)) {
    // The signal reached the application's listeners along with the SDK's.
    if (appListens) return
  } else {
    // A stop that came as a message is what a signal would have been without the SDK: the
    // application's SIGTERM listeners get it now, once (else its SIGINT ones).
    const signal = ['SIGTERM', 'SIGINT'].find(appListeners)
    if (signal) {
      process.emit(signal, signal)
      return
    }
  }
  // Nobody else ends the process: the SDK does, once the responses in flight on closed
  // servers have ended and queued channel messages are written.
  await inflight.closedServersDrained()
  await flushed()
  process.exit(0)
}

function onExit() {
  // Standalone, the processes the service started and left in its group end with it, as under
  // pm (where the supervisor, or its sentinel, takes care of the group).
  if (conn.stop !== null && conn.stop !== 'plain' && !conn.supervised) termGroupAtExit()
}

function checkFunction(fn, what) {
  if (typeof fn !== 'function') {
    const err = new TypeError(`${what} must be a function, got ${fn === null ? 'null' : typeof fn}`)
    err.code = 'ERR_INVALID_ARG_TYPE'
    throw err
  }
}

/**
 * Registers a stop handler. Handlers run once, in registration order, each awaited when it
 * returns a Promise, on the first of: the supervisor's `stop`, the supervisor's death (the
 * channel's 'disconnect'), SIGTERM, SIGINT. Then the application ends the process if it takes
 * part in the stop (its own SIGTERM listeners, stopRequested(), handlersDone()); otherwise the
 * SDK exits with code 0.
 */
function onstopping(fn) {
  checkFunction(fn, 'the stop handler')
  hook().stopHandlers.push(fn)
}

/**
 * Registers a handler for every value the controlling process sends through the supervisor
 * (any JSON value, exactly as sent; the same values reach `process.on('message')`).
 */
function onmessage(fn) {
  checkFunction(fn, 'the message handler')
  const c = connection()
  c.messageHandlers.push(fn)
  if (c.supervised && !c.listening && process.channel) {
    c.listening = true
    process.on('message', onMessage)
    unrefOurListener()
  }
}

/** Tells the supervisor the service is ready. A no-op without a supervisor. */
function ready() {
  connection()
  write(protocol.ready())
}

/**
 * Sends application data (any JSON value) to the supervisor, which passes it on to its
 * controlling process exactly as it is (`undefined` is sent as null). Returns whether it was
 * queued: false without a supervisor, once the channel is closed, when `data` cannot be
 * serialized, or for an object whose `cmd` starts with `NODE_` (reserved for Node's and pm's
 * own messages). Never throws for those.
 */
function send(data) {
  connection()
  const value = data === undefined ? null : data
  if (protocol.isNodeInternal(value)) return false
  return write(value)
}

/**
 * During a stop, asks for the SIGKILL to come no earlier than `ms` milliseconds from now
 * (capped by the supervisor). A no-op without a supervisor.
 */
function extend(ms) {
  if (typeof ms !== 'number' || !(ms >= 0) || ms === Infinity) {
    const err = new RangeError(`extend(ms): ms must be a finite number >= 0, got ${String(ms)}`)
    err.code = 'ERR_OUT_OF_RANGE'
    throw err
  }
  connection()
  // The wire wants an integer; rounding up never asks for less than requested.
  write(protocol.extend(Math.ceil(ms)))
  // The handlers may keep the process alive that much longer too.
  if (conn.stop !== null && conn.keepAlive) keepAliveFor(Math.ceil(ms))
}

/**
 * Tells the supervisor's watchdog that the service is alive, and stops the SDK's automatic
 * heartbeats for good: from now on the service is hung when it has not called this for its
 * `watchdogMs`. Cheap: a heartbeat goes out at most once every tenth of `watchdogMs`. A no-op
 * without a supervisor or without a watchdog (PM_WATCHDOG_MS).
 */
function heartbeat() {
  const c = connection()
  if (c.heartbeats !== null) c.heartbeats.manual()
}

/** Whether the process runs under a pm supervisor (a channel was found on first use). */
function supervised() {
  return connection().supervised
}

/**
 * Resolves when a stop begins. The application then takes part in the stop: the SDK does not
 * exit the process, which ends when the application's work is done.
 */
function stopRequested() {
  const c = hook()
  c.appWaits = true
  return c.requested.promise
}

/** As stopRequested(), but resolves once every stop handler has run. */
function handlersDone() {
  const c = hook()
  c.appWaits = true
  return c.done.promise
}

module.exports = { onstopping, stopRequested, handlersDone, onmessage, ready, send, extend, heartbeat, supervised }

// A service with a watchdog sends heartbeats from the moment the SDK is loaded (also with
// `node -r pm-child app.js`, without a call), so that a loop that blocks before the first call
// is seen too.
if (watchdogTiming(process.env.PM_WATCHDOG_MS) !== null) connection()
