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
//   exactly as sent; neither that listener nor ours on 'disconnect' keeps the process alive;
// - SIGTERM and SIGINT listeners are installed, with or without a supervisor.
// The environment is left as it is: Node removes NODE_CHANNEL_FD itself and marks the channel
// close-on-exec, and a descendant that inherits PM_CHANNEL_* cannot match the channel's identity.
// The first of `stop`, 'disconnect' (the supervisor died), SIGTERM or SIGINT starts the stop:
// `stopping` is sent, the handlers run once each in order, queued channel messages are written,
// and the process exits with code 0. Everything runs on the event loop.

const fs = require('node:fs')
const protocol = require('./lib/protocol')
const { runStopHandlers, failureLine, describe } = require('./lib/stop')
const { version: VERSION } = require('./package.json')

const SDK = 'pm-child-node'

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
    stopBegun: false,
    // The supervisor said it closes the channel on request: its EOF is not a stop.
    disconnectNotice: false,
    // process.send calls whose callback has not come yet, and who waits for them to reach 0.
    pending: 0,
    flushWaiters: [],
  }

  if (conn.supervised) {
    process.on('internalMessage', onInternalMessage)
    process.on('disconnect', onDisconnect)
    unrefOurListener()
    if (process.connected) {
      write(protocol.hello(SDK, VERSION))
    } else {
      // The supervisor is already gone (its EOF came before this first call): that is a stop.
      // Deferred, so that handlers registered along with this first call still run.
      process.nextTick(beginStop)
    }
  }
  process.on('SIGTERM', beginStop)
  process.on('SIGINT', beginStop)
  return conn
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
  if (c.kind === 'stop') beginStop()
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
  // The supervisor closed the channel on its controller's request (it said so first): it is
  // alive and will stop this process with SIGTERM when the time comes.
  if (conn.disconnectNotice) return
  // EOF on the channel: the supervisor died. Same as `stop` with reason `shutdown`.
  beginStop()
}

function beginStop() {
  if (conn.stopBegun) return
  conn.stopBegun = true
  write(protocol.stopping())
  // Handlers registered from now on are not run.
  const handlers = conn.stopHandlers.splice(0)
  runStopHandlers(handlers, (n, err) => process.stderr.write(failureLine(n, err) + '\n'))
    .then(flushed)
    .then(() => process.exit(0))
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
 * channel's 'disconnect'), SIGTERM, SIGINT. Then the process exits with code 0.
 */
function onstopping(fn) {
  checkFunction(fn, 'the stop handler')
  connection().stopHandlers.push(fn)
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
}

/** Whether the process runs under a pm supervisor (a channel was found on first use). */
function supervised() {
  return connection().supervised
}

module.exports = { onstopping, onmessage, ready, send, extend, supervised }
