'use strict'
// The SDK's side of the wire, with a Node parent standing in for the supervisor: it starts the
// fixture as pm does for a Node service (Node's IPC channel on fd 3, PM_CHANNEL_FD=3), sees
// every message the child writes, and sends what a supervisor never would.

const test = require('node:test')
const assert = require('node:assert/strict')

const { CHILD, TestDir, poll } = require('./support')

/** Starts the fixture in `mode` with a channel; collects what it sends. */
function fork(dir, mode) {
  const child = dir.spawn('child', process.execPath, [CHILD, mode], {
    ipc: true,
    env: { PM_CHANNEL_FD: '3', PM_TEST_CHANNEL_ID: 'self', PM_SERVICE_NAME: 'c' },
  })
  const received = []
  let closed = false
  // Node hands pm's messages (objects whose cmd starts with NODE_) to 'internalMessage', in the
  // parent as in the child; both events keep the order of the wire.
  child.child.on('message', (m) => received.push(m))
  child.child.on('internalMessage', (m) => received.push(m))
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

const pm = (type, fields = {}) => ({ cmd: 'NODE_PM', type, ...fields })
const isPm = (type) => (m) => m && m.cmd === 'NODE_PM' && m.type === type
const appEvents = (dir, kind) => dir.events().filter((e) => e.event === kind).map((e) => e.data)

test('the child says hello first, then answers stop with stopping, and its last messages are all written before exit', async (t) => {
  const dir = new TestDir(t)
  const c = fork(dir, 'farewell')
  await c.receive('ready', isPm('ready'))
  c.child.child.send(pm('stop', { reason: 'stop', timeout_ms: 5000 }))
  assert.deepStrictEqual(await c.child.wait(), { code: 0, signal: null }, c.describe())
  await c.closed()
  const { version } = require('../package.json')
  assert.deepStrictEqual(c.received[0], pm('hello', { protocol: 2, sdk: 'pm-child-node', version }))
  assert.deepStrictEqual(c.received.slice(1, 3), [pm('ready'), pm('stopping')])
  // Each farewell is larger than a socket buffer: the SDK had to wait for the writes to finish.
  // pm.send(data) writes the data itself, unwrapped.
  assert.deepStrictEqual(c.received.slice(3).map((m) => [Object.keys(m).join(), m.farewell, m.pad.length]),
    [1, 2, 3, 4, 5, 6, 7, 8].map((i) => ['farewell,pad', i, 900_000]))
})

test('data of any shape reaches onmessage and the app exactly as sent; pm messages never reach the app; junk is ignored', async (t) => {
  const dir = new TestDir(t)
  const c = fork(dir, 'echo')
  await c.receive('ready', isPm('ready'))
  const data = ['ready', { type: 'ready' }, { type: 'stop', reason: 'stop', timeout_ms: 200 },
    { type: 'message', data: 1 }, [1, 2], 42, -0.5, null, true, { z: 1, a: { cmd: 'NODE' } }, 'x'.repeat(1000)]
  // pm's own messages a child must ignore, and one Node must deliver to its internal handler.
  const junk = [pm('reload'), pm('ready'), pm('stop', { reason: 'reboot', timeout_ms: 200 }), pm('stop', { reason: 'stop' }),
    { cmd: 'NODE_PM' }, { cmd: 'NODE_CLUSTER', act: 'x' }]
  for (const v of [...junk, ...data]) c.child.child.send(v)
  await poll(() => `every echo${c.describe()}`, () => c.received.filter((m) => m && 'echo' in m).length === data.length)
  assert.deepStrictEqual(c.received.filter((m) => m && 'echo' in m).map((m) => m.echo), data)
  // Keys in the order they were sent.
  assert.equal(JSON.stringify(appEvents(dir, 'message')[9]), '{"z":1,"a":{"cmd":"NODE"}}')
  assert.deepStrictEqual(appEvents(dir, 'message'), data)
  assert.deepStrictEqual(appEvents(dir, 'app-message'), data, 'the app sees the data, and nothing of pm\'s')
  assert.ok(c.child.running(), 'nothing stopped the child')
  assert.ok(!c.received.some(isPm('stopping')), c.describe())
  c.child.child.send(pm('stop', { reason: 'restart', timeout_ms: 5000 }))
  assert.deepStrictEqual(await c.child.wait(), { code: 0, signal: null }, c.describe())
  assert.deepStrictEqual(dir.events().filter((e) => e.event === 'handler').map((e) => e.n), [1])
  assert.equal(c.child.stderr(), '')
})

test('after the supervisor says disconnect, the channel closing is not a stop; SIGTERM still is', async (t) => {
  const dir = new TestDir(t)
  const c = fork(dir, 'echo')
  await c.receive('ready', isPm('ready'))
  c.child.child.send(pm('disconnect'))
  c.child.child.disconnect()
  await c.closed()
  // The app's 'disconnect' listener runs after the SDK's, which would have called the first
  // stop handler at once had it taken the EOF for a stop.
  assert.equal((await dir.waitEvent('c', 'app-disconnect')).connected, false)
  assert.deepStrictEqual(dir.events().filter((e) => e.event === 'handler'), [])
  assert.ok(c.child.running())
  c.child.signal('SIGTERM')
  assert.deepStrictEqual(await c.child.wait(), { code: 0, signal: null }, c.describe())
  assert.deepStrictEqual(dir.events().filter((e) => e.event === 'handler').map((e) => e.n), [1])
  assert.ok(!c.received.some(isPm('stopping')), 'nothing could be sent after the disconnect')
})

test('without the notice, the channel closing is the supervisor\'s death: the handlers run', async (t) => {
  const dir = new TestDir(t)
  const c = fork(dir, 'echo')
  await c.receive('ready', isPm('ready'))
  c.child.child.disconnect()
  assert.deepStrictEqual(await c.child.wait(), { code: 0, signal: null }, c.describe())
  assert.deepStrictEqual(dir.events().filter((e) => e.event === 'handler').map((e) => e.n), [1])
})

test('a channel that is not the one PM_CHANNEL_ID names is not taken: the child runs unsupervised', async (t) => {
  const dir = new TestDir(t)
  const child = dir.spawn('child', process.execPath, [CHILD, 'echo'], {
    ipc: true,
    // A socket's identity, but not this channel's: what a cluster worker inherits.
    env: { PM_CHANNEL_FD: '3', PM_CHANNEL_ID: '0:1', PM_SERVICE_NAME: 'c' },
  })
  const received = []
  child.child.on('message', (m) => received.push(m))
  child.child.on('internalMessage', (m) => received.push(m))
  assert.equal((await dir.waitEvent('c', 'started')).supervised, false)
  // It still has its fork channel, for the application: data reaches the app's listener.
  child.child.send({ hello: 'app' })
  await poll('the app\'s message', () => dir.events().find((e) => e.event === 'app-message'))
  child.signal('SIGTERM')
  assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
  assert.deepStrictEqual(received, [], 'no hello, no ready, no stopping')
})
