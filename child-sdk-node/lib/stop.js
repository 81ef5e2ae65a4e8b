'use strict'
// Running the stop handlers (protocol.md section 9, point 4): every handler once, in
// registration order, each awaited; a failure is reported and the next handler still runs.
// No process I/O here: the caller says how to report.

/**
 * Runs `handlers` one after the other, awaiting what each returns. `report(n, error)` is called
 * for a handler that throws or whose Promise rejects (`n` counts from 1). Never rejects.
 */
async function runStopHandlers(handlers, report) {
  for (let i = 0; i < handlers.length; i++) {
    try {
      await handlers[i]()
    } catch (err) {
      try {
        report(i + 1, err)
      } catch {
        // Reporting must not stop the sequence.
      }
    }
  }
}

/** The stderr line for a failed stop handler, without its newline. */
function failureLine(n, err) {
  return `pm-child: stop handler #${n} failed: ${describe(err)}`
}

/** A thrown value's message (an Error's `message`, else the value as a string). */
function describe(err) {
  let text
  try {
    text = err instanceof Error && err.message ? err.message : String(err)
  } catch {
    text = 'a value that cannot be printed'
  }
  return text
}

module.exports = { runStopHandlers, failureLine, describe }
