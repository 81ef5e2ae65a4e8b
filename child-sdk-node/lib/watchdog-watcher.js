'use strict'
// The watchdog's watcher thread (see ./watchdog.js), run as a worker: it blocks on the shared
// heartbeat counter; when no heartbeat came for the whole limit, the event loop is blocked, and
// it asks the main thread, through the inspector, to write where it is. V8 runs that request
// between two JavaScript instructions, so it works in a busy loop; a main thread blocked
// outside JavaScript (a synchronous call, native code) does not answer, which is said instead.
// Once per stall: the next report needs a heartbeat in between. Never returns: this thread's
// own event loop does not need to turn (the inspector's requests are dispatched at once).

const { workerData } = require('node:worker_threads')
const fs = require('node:fs')
const inspector = require('node:inspector')

const BEATS = 0
const DIAG = 1
const DIAG_IDLE = 0
const DIAG_ASKED = 1
const DIAG_GAVE_UP = 3
// How long the main thread has to answer. The supervisor waits 500 ms after it found the
// process hung, which is no sooner than this thread does.
const ANSWER_MS = 400

const { counters, limitMs, key } = workerData
const view = new Int32Array(counters)
let session = null

function write(text) {
  try {
    fs.writeSync(2, text)
  } catch {
    // stderr is gone or full: nothing to be done.
  }
}

function ask() {
  Atomics.store(view, DIAG, DIAG_ASKED)
  try {
    if (session === null) {
      session = new inspector.Session()
      session.connectToMainThread()
    }
    session.post('Runtime.evaluate', { expression: `globalThis[Symbol.for(${JSON.stringify(key)})]?.()` })
  } catch (err) {
    Atomics.store(view, DIAG, DIAG_IDLE)
    write(`pm-child: watchdog: no heartbeat for ${limitMs} ms: the event loop is blocked; cannot ask where: ${err && err.message}\n`)
    return
  }
  Atomics.wait(view, DIAG, DIAG_ASKED, ANSWER_MS)
  if (Atomics.compareExchange(view, DIAG, DIAG_ASKED, DIAG_GAVE_UP) === DIAG_ASKED) {
    write(`pm-child: watchdog: no heartbeat for ${limitMs} ms: the event loop is blocked outside JavaScript ` +
      '(a synchronous call or native code); no JavaScript stack\n')
  }
}

function watch() {
  let seen = Atomics.load(view, BEATS)
  for (;;) {
    Atomics.wait(view, BEATS, seen, limitMs)
    const now = Atomics.load(view, BEATS)
    if (now !== seen) {
      seen = now
      continue
    }
    ask()
    // Wait for the loop to turn again before the next report.
    while (Atomics.load(view, BEATS) === seen) Atomics.wait(view, BEATS, seen)
    seen = Atomics.load(view, BEATS)
    Atomics.store(view, DIAG, DIAG_IDLE)
  }
}

watch()
