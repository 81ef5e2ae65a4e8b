// Type-checked by test/types.test.js (tsc --noEmit): CommonJS TypeScript using the SDK by name.
import pm = require('pm-child')
import { onstopping, stopRequested, type JsonValue } from 'pm-child'

onstopping(() => {})
pm.onstopping(async () => {
  await Promise.resolve()
})
pm.onmessage((data: JsonValue) => {
  pm.send({ echo: data })
})
const queued: boolean = pm.send([1, 'two', { three: 3 }])
pm.ready()
pm.extend(500)
pm.heartbeat()
const isSupervised: boolean = pm.supervised()
void queued
void isSupervised
const requested: Promise<void> = stopRequested()
pm.handlersDone().then(() => pm.send('handlers done'))
void requested

// @ts-expect-error a stop handler is a function
pm.onstopping('not a function')
// @ts-expect-error extend takes milliseconds as a number
pm.extend('500')
// @ts-expect-error ready returns nothing to use
const r: boolean = pm.ready()
// @ts-expect-error no such function
pm.stop()
// @ts-expect-error heartbeat takes nothing
pm.heartbeat(1000)
// @ts-expect-error the stop's Promise resolves with nothing
const bad: Promise<string> = pm.stopRequested()
void bad
void r
