'use strict'
// The SDK's side of the wire, with a Node parent standing in for the supervisor: it starts the
// fixture as pm does for a Node service (Node's IPC channel on fd 3, PM_CHANNEL_FD=3), sees
// every message the child writes, and sends what a supervisor never would.

const test = require('node:test')
const assert = require('node:assert/strict')

const { CHILD, TestDir, poll } = require('./support')

/** Starts the fixture in `mode` with a channel; collects what it sends. */
function fork(dir, mode) {
  const child = dir.spawn('child', process.execPath, [CHILD, mode], { ipc: true, env: { PM_CHANNEL_FD: '3', PM_SERVICE_NAME: 'c' } })
  const received = []
  let closed = false
  child.child.on('message', (m) => received.push(m))
  child.child.on('disconnect', () => { closed = true })
  child.child.on('error', () => {}) // a send racing the child's exit; the assertions tell
  const describe = () => `\nreceived: ${JSON.stringify(received).slice(0, 2000)}\nstderr:\n${child.stderr()}`
  return {
    child,
    received,
    describe,
    /** Waits until the child closed its end (it exited) and everything it wrote was read. */
    closed: () => poll(() => `the channel to close${describe()}`, () => closed),
    receive: (what, pred) => poll(() => what + describe(), () => received.find(pred)),
  }
}

const isType = (type) => (m) => m && m.type === type

test('the child says hello first, then answers stop with stopping, and its last messages are all written before exit', async (t) => {
  const dir = new TestDir(t)
  const c = fork(dir, 'farewell')
  await c.receive('ready', isType('ready'))
  c.child.child.send({ type: 'stop', reason: 'stop', timeout_ms: 5000 })
  assert.deepStrictEqual(await c.child.wait(), { code: 0, signal: null }, c.describe())
  await c.closed()
  const { version } = require('../package.json')
  assert.deepStrictEqual(c.received[0], { type: 'hello', protocol: 1, sdk: 'pm-child-node', version })
  assert.deepStrictEqual(c.received.slice(1, 3), [{ type: 'ready' }, { type: 'stopping' }])
  // Each farewell is larger than a socket buffer: the SDK had to wait for the writes to finish.
  assert.deepStrictEqual(c.received.slice(3).map((m) => [m.type, m.data.farewell, m.data.pad.length]),
    [1, 2, 3, 4, 5, 6, 7, 8].map((i) => ['message', i, 900_000]))
})

test('unknown types, bare strings, arrays and bad stop messages are ignored; the child goes on', async (t) => {
  const dir = new TestDir(t)
  const c = fork(dir, 'echo')
  await c.receive('ready', isType('ready'))
  for (const junk of ['ready', { type: 'ready' }, { type: 'reload' }, [1, 2], 42, null, { data: 1 },
    { type: 'stop', reason: 'reboot', timeout_ms: 200 }, { type: 'stop', reason: 'stop' }]) {
    c.child.child.send(junk)
  }
  c.child.child.send({ type: 'message', data: 'still here' })
  const echo = await c.receive('the echo', isType('message'))
  assert.deepStrictEqual(echo.data, { echo: 'still here' })
  assert.ok(c.child.running(), 'no junk stopped the child')
  assert.ok(!c.received.some(isType('stopping')), c.describe())
  assert.deepStrictEqual(dir.events().filter((e) => e.event === 'message').map((e) => e.data), ['still here'])
  c.child.child.send({ type: 'message' })
  assert.deepStrictEqual((await c.receive('the second echo', (m) => m.type === 'message' && m.data.echo === null)).data, { echo: null })
  c.child.child.send({ type: 'stop', reason: 'restart', timeout_ms: 5000 })
  assert.deepStrictEqual(await c.child.wait(), { code: 0, signal: null }, c.describe())
  assert.deepStrictEqual(dir.events().filter((e) => e.event === 'handler').map((e) => e.n), [1])
  assert.equal(c.child.stderr(), '')
})
