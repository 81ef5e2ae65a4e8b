// Type-checked by test/types.test.js (tsc --noEmit): an ES module using the SDK by name, with a
// default import (the CommonJS module.exports) and named imports.
import pm, { onstopping, onmessage, ready, send, extend, heartbeat, supervised, stopRequested, handlersDone, type StopHandler } from 'pm-child'

const handler: StopHandler = () => new Promise<void>((resolve) => resolve())
onstopping(handler)
pm.onstopping(handler)
onmessage((data) => {
  if (typeof data === 'string') send(data.toUpperCase())
})
ready()
extend(100)
heartbeat()
const s: boolean = supervised() && pm.supervised()
void s
// Top-level await in an ES module: the main flow waits for the stop.
await stopRequested()
await handlersDone()
await pm.stopRequested()

// @ts-expect-error message data is JSON, not any: a number has no toUpperCase
onmessage((data) => data.toUpperCase())
