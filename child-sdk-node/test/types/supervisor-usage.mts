// Type-checked by test/types.test.js (tsc --noEmit): an ES module using the manager by name, with
// a default import (the CommonJS module.exports) and named imports.
import pm, { start, stop, list, onstopping, Manager, type ServiceEvent } from 'pm-child/supervisor'

const row = await start({ script: 'index.js', name: 'a' }, { wait: 'ready' })
const id: number = row.id
await stop('a')
const names: (string | null)[] = (await list()).map((r) => r.name)
onstopping(() => {})
pm.on('event', (e: ServiceEvent) => void e.event)
const m: Manager = pm.defaultManager()
void [id, names, m]

// @ts-expect-error a row's state is one of the known states
const state: 'sleeping' = row.state
void state
