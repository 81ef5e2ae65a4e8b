'use strict'
// The watchdog's heartbeats (protocol.md, sections 2, 5 and 9.2). A service with `watchdogMs`
// gets PM_WATCHDOG_MS; the SDK then sends `heartbeat` from the event loop: an unref'd interval
// timer, which cannot fire while the loop is blocked, so the heartbeats stop exactly when the
// loop does. `heartbeat()` takes them over for a service that would rather say itself when it
// is alive.
//
// Diagnostics: a signal handler in JavaScript cannot run while the loop is blocked (Node's own
// report-on-signal is such a handler), so a watcher thread (./watchdog-watcher.js) counts the
// heartbeats and, when they stop for the whole limit, asks the main thread for its stack
// through the inspector, which V8 serves between two JavaScript instructions even in a busy
// loop. The main thread then writes where it is, and Node's diagnostic report, on stderr (the
// service's log). The `hello` says so (`"diagnostics":"self"`).

const fs = require('node:fs')
const path = require('node:path')

const MAX_LIMIT_MS = 2_147_483_647
const MIN_PERIOD_MS = 10

// The shared counters: the heartbeats sent, and where a diagnostic is.
const BEATS = 0
const DIAG = 1
const DIAG_IDLE = 0
const DIAG_ASKED = 1
const DIAG_ANSWERED = 2
const DIAG_GAVE_UP = 3

// Stack frames shown before the report, at most.
const MAX_FRAMES = 50
// libuv handles kept in the report (a server may have thousands of sockets).
const MAX_HANDLES = 100

/**
 * What PM_WATCHDOG_MS says (tests/protocol/watchdog.jsonl): null unless it is ASCII digits only,
 * 1 to 2^31 - 1; else the limit, the automatic heartbeat period (a third of it, at least 10 ms)
 * and the shortest time between two heartbeats of heartbeat() (a tenth of it).
 */
function watchdogTiming(value) {
  if (typeof value !== 'string' || !/^[0-9]+$/.test(value)) return null
  const limit = Number(value)
  if (!(limit >= 1 && limit <= MAX_LIMIT_MS)) return null
  return {
    limit_ms: limit,
    period_ms: Math.max(Math.floor(limit / 3), MIN_PERIOD_MS),
    min_gap_ms: Math.floor(limit / 10),
  }
}

/** Whether the service turned the SDK's diagnostic off (PM_WATCHDOG_DIAGNOSTICS=0). */
function diagnosticsWanted(env) {
  return env.PM_WATCHDOG_DIAGNOSTICS !== '0'
}

/**
 * The heartbeats of one process. `send()` writes a `heartbeat` on the channel and returns
 * whether it was queued.
 */
class Heartbeats {
  constructor(timing, send) {
    this.timing = timing
    this.send = send
    this.timer = null
    this.manualMode = false
    this.lastManual = -Infinity
    this.counters = null
    this.watcher = null
  }

  /**
   * Starts the watcher thread, if the runtime has what it needs; returns whether it runs (the
   * `hello` then announces `"diagnostics":"self"`).
   */
  startDiagnostics() {
    let Worker
    try {
      ({ Worker } = require('node:worker_threads'))
      // A Node built without the inspector has nothing to ask the main thread with.
      require('node:inspector')
    } catch {
      return false
    }
    const counters = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT)
    const key = Symbol.for('pm-child.watchdog.diagnose')
    try {
      Object.defineProperty(globalThis, key, {
        value: () => diagnose(new Int32Array(counters), this.timing.limit_ms),
        configurable: true,
      })
      // Its source is read here and evaluated there: inside a packaged Electron app this file
      // is in app.asar, which only the main thread's fs reads.
      const source = fs.readFileSync(path.join(__dirname, 'watchdog-watcher.js'), 'utf8')
      this.watcher = new Worker(source, {
        eval: true,
        workerData: { counters, limitMs: this.timing.limit_ms, key: key.description },
        // Not the application's preloads (`-r pm-child` would load the SDK again in it).
        execArgv: [],
        env: {},
        stdout: true,
        stderr: true,
      })
    } catch {
      return false
    }
    this.counters = new Int32Array(counters)
    this.watcher.unref()
    // A failure of the watcher must never reach the application as an uncaught 'error'.
    this.watcher.on('error', (err) => {
      this.watcher = null
      writeAll(2, `pm-child: watchdog: the diagnostic thread failed: ${err && err.message}\n`)
    })
    return true
  }

  /** Sends the first heartbeat now, then one every period from the event loop. */
  start() {
    this.beat()
    this.timer = setInterval(() => this.beat(), this.timing.period_ms)
    this.timer.unref()
  }

  beat() {
    if (this.counters !== null) {
      Atomics.add(this.counters, BEATS, 1)
      Atomics.notify(this.counters, BEATS)
    }
    this.send()
  }

  /**
   * heartbeat(): the application says when it is alive from now on. A heartbeat goes out unless
   * one went out less than a tenth of the limit ago.
   */
  manual() {
    if (!this.manualMode) {
      this.manualMode = true
      if (this.timer !== null) clearInterval(this.timer)
      this.timer = null
    }
    const now = performance.now()
    if (now - this.lastManual < this.timing.min_gap_ms) return
    this.lastManual = now
    this.beat()
  }

  /** The channel is closed for good: nobody watches any more. */
  end() {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    if (this.watcher !== null) this.watcher.terminate().catch(() => {})
    this.watcher = null
    this.counters = null
  }
}

/**
 * Runs on the main thread, called by the watcher through the inspector while the event loop is
 * blocked: writes where JavaScript is, and Node's diagnostic report (without the environment
 * variables, which may hold secrets), on stderr. Synchronous: the loop is not turning.
 */
function diagnose(counters, limitMs) {
  // The watcher gave up waiting (this call comes late, after a synchronous call returned).
  if (Atomics.compareExchange(counters, DIAG, DIAG_ASKED, DIAG_ANSWERED) !== DIAG_ASKED) return
  Atomics.notify(counters, DIAG)
  let text
  try {
    const report = process.report.getReport()
    const stack = (report.javascriptStack && report.javascriptStack.stack) || []
    // The frames above the inspector's evaluation are this function's own.
    const own = stack.findIndex((f) => /^at <anonymous>(:\d+:\d+)?$/.test(f))
    const frames = stack.slice(own + 1, own + 1 + MAX_FRAMES)
    // Worker threads' reports (the watcher's among them) carry the environment too.
    for (const r of [report, ...(Array.isArray(report.workers) ? report.workers : [])]) {
      delete r.environmentVariables
      delete r.sharedObjects
    }
    if (Array.isArray(report.libuv) && report.libuv.length > MAX_HANDLES) {
      const more = report.libuv.length - MAX_HANDLES
      report.libuv = report.libuv.slice(0, MAX_HANDLES)
      report.libuvHandlesLeftOut = more
    }
    text = `pm-child: watchdog: no heartbeat for ${limitMs} ms: the event loop is blocked, in JavaScript at:\n` +
      frames.map((f) => `    ${f}\n`).join('') +
      `pm-child: watchdog: diagnostic report (Node's process.report, without environment variables): ${JSON.stringify(report)}\n`
  } catch (err) {
    text = `pm-child: watchdog: no heartbeat for ${limitMs} ms: the event loop is blocked; no report: ${err && err.message}\n`
  }
  writeAll(2, text)
}

/**
 * Writes all of `text` to `fd`, synchronously, waiting a little while a non-blocking pipe is
 * full (at most about a second in all); errors are dropped.
 */
function writeAll(fd, text) {
  let buf = Buffer.from(text)
  const pause = new Int32Array(new SharedArrayBuffer(4))
  for (let tries = 0; buf.length > 0 && tries < 200; tries++) {
    try {
      buf = buf.subarray(fs.writeSync(fd, buf))
    } catch (err) {
      if (err.code !== 'EAGAIN') return
      Atomics.wait(pause, 0, 0, 5)
    }
  }
}

module.exports = {
  watchdogTiming,
  diagnosticsWanted,
  Heartbeats,
  writeAll,
  BEATS,
  DIAG,
  DIAG_IDLE,
  DIAG_ASKED,
  DIAG_ANSWERED,
  DIAG_GAVE_UP,
}
