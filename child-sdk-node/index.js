'use strict'
// pm-child: the child side of the pm supervisor for Node services (protocol.md, section 9).
//
// One process-wide connection, made on the first call of any function below:
// - supervised iff PM_CHANNEL_FD is set and Node opened its fork IPC channel (the supervisor sets
//   NODE_CHANNEL_FD=3 for Node children): then `hello` is sent, and 'message' and 'disconnect'
//   are listened to on an unref'd channel, so the channel never keeps the process alive;
// - PM_CHANNEL_FD, NODE_CHANNEL_FD and NODE_CHANNEL_SERIALIZATION_MODE leave process.env, so
//   processes this one starts inherit no variable naming a channel (Node marks the fd
//   close-on-exec itself);
// - SIGTERM and SIGINT listeners are installed, with or without a supervisor.
// The first of `stop`, 'disconnect' (the supervisor died), SIGTERM or SIGINT starts the stop:
// `stopping` is sent, the handlers run once each in order, queued channel messages are written,
// and the process exits with code 0. Everything runs on the event loop.

const protocol = require('./lib/protocol')
const { runStopHandlers, failureLine, describe } = require('./lib/stop')
const { version: VERSION } = require('./package.json')

const SDK = 'pm-child-node'
const CHANNEL_VARS = ['PM_CHANNEL_FD', 'NODE_CHANNEL_FD', 'NODE_CHANNEL_SERIALIZATION_MODE']

let conn = null

function connection() {
  if (conn !== null) return conn
  const named = typeof process.env.PM_CHANNEL_FD === 'string' && process.env.PM_CHANNEL_FD !== ''
  conn = {
    // Node opened a channel at start-up (process.send exists; it stays after a disconnect) and
    // the supervisor named it.
    supervised: named && typeof process.send === 'function',
    stopHandlers: [],
    messageHandlers: [],
    stopBegun: false,
    // process.send calls whose callback has not come yet, and who waits for them to reach 0.
    pending: 0,
    flushWaiters: [],
  }
  for (const name of CHANNEL_VARS) delete process.env[name]

  if (conn.supervised) {
    // Explicitly unref'd, the channel stays unref'd whatever listeners are added later (ours or
    // the application's): only the application's own work keeps the process alive.
    if (process.channel && typeof process.channel.unref === 'function') process.channel.unref()
    process.on('message', onChannelMessage)
    process.on('disconnect', onDisconnect)
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

function onChannelMessage(value) {
  const c = protocol.classify(value)
  if (c.kind === 'stop') {
    beginStop()
  } else if (c.kind === 'message') {
    for (const handler of conn.messageHandlers.slice()) {
      try {
        const r = handler(c.message.data)
        if (r && typeof r.then === 'function') r.then(undefined, reportMessageFailure)
      } catch (err) {
        reportMessageFailure(err)
      }
    }
  }
  // Unknown types and bad messages are ignored (protocol.md section 3).
}

function reportMessageFailure(err) {
  process.stderr.write(`pm-child: message handler failed: ${describe(err)}\n`)
}

function onDisconnect() {
  // Writes that were still queued are cancelled with the channel.
  flushDone()
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

/** Registers a handler for the `data` of every `message` the supervisor sends. */
function onmessage(fn) {
  checkFunction(fn, 'the message handler')
  connection().messageHandlers.push(fn)
}

/** Tells the supervisor the service is ready. A no-op without a supervisor. */
function ready() {
  connection()
  write(protocol.ready())
}

/**
 * Sends application data (any JSON value) to the supervisor, which passes it on to its
 * controlling process. Returns whether it was queued: false without a supervisor, once the
 * channel is closed, or when `data` cannot be serialized. Never throws for those.
 */
function send(data) {
  connection()
  return write(protocol.message(data))
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
