'use strict'
// The package's surface: what index.js exports matches index.d.ts, and outside a supervisor the
// calls are harmless no-ops (run in a child process: the SDK installs signal listeners in the
// process that uses it, and the test runner must not get them).

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const path = require('node:path')

const { CHILD, PACKAGE, TestDir } = require('./support')

test('index.js exports exactly the functions index.d.ts declares, and connects on first call only', () => {
  const before = { ...process.env }
  const listeners = process.listenerCount('SIGTERM')
  const pm = require('..')
  const declared = [...fs.readFileSync(path.join(PACKAGE, 'index.d.ts'), 'utf8').matchAll(/^export function (\w+)/gm)]
    .map((m) => m[1])
  assert.deepStrictEqual(Object.keys(pm).sort(), declared.sort())
  assert.deepStrictEqual(declared.sort(), ['extend', 'handlersDone', 'heartbeat', 'onmessage', 'onstopping', 'ready', 'send', 'stopRequested', 'supervised'])
  for (const name of declared) assert.equal(typeof pm[name], 'function', name)
  // Requiring it has no side effect.
  assert.equal(process.listenerCount('SIGTERM'), listeners)
  assert.deepStrictEqual({ ...process.env }, before)
})

test('without a supervisor: no-ops, argument errors, the environment left as it is, and the process ends by itself', async (t) => {
  const dir = new TestDir(t)
  // PM_CHANNEL_FD set, but no channel (as for a grandchild that inherited a stale variable).
  const child = dir.spawn('child', process.execPath, [CHILD, 'unsupervised'], { env: { PM_CHANNEL_FD: '3' } })
  assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
  const e = await dir.waitEvent('alone', 'unsupervised')
  assert.equal(e.before.PM_CHANNEL_FD, '3')
  assert.equal(e.before.channel, false)
  assert.deepStrictEqual(e.results, { ready: 'undefined', send: false, extend: 'undefined', heartbeat: 'undefined' })
  assert.deepStrictEqual(e.errors, {
    onstopping: { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' },
    onmessage: { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' },
    extend: { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' },
  })
  assert.equal(e.env.PM_CHANNEL_FD, '3', 'the SDK changes no environment variable')
  assert.equal(e.reserved, false, 'pm.send refuses the form of Node\'s and pm\'s own messages')
  assert.equal((await dir.waitEvent('alone', 'started')).supervised, false)
  const kinds = dir.events().map((ev) => ev.event)
  assert.ok(!kinds.includes('handler'), `no stop was triggered: ${kinds}`)
  assert.equal(child.stderr(), '')
})
