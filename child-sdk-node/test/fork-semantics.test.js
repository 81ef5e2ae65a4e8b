'use strict'
// Children written for child_process.fork, from Node's documented semantics (messages before
// exit, send callbacks, process.connected, disconnect() by either side, ordering across ticks,
// 900 KB strings, exit codes), each run twice: under a real `fork` from this process, and as a
// pm service through the manager (`pm-child/supervisor`, the real supervisor). The parent's side
// is written once against a small interface that each way implements; both runs must give the
// same outcome — what the parent received, what the child observed, how it exited — and that
// outcome is the one Node's documentation describes.

const test = require('node:test')
const assert = require('node:assert/strict')
const { fork } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const { FIXTURES, PATIENCE, TestDir, poll, requireSupervisor } = require('./support')

const CHILDREN = path.join(FIXTURES, 'fork')
const VALUES = require('./fixtures/fork/values.json')

test.before(requireSupervisor)

/** `promise`, or a failure naming `what` after PATIENCE ms. */
function within(promise, what) {
  let timer
  const limit = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${PATIENCE} ms waiting for ${what}`)), PATIENCE)
  })
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer))
}

/** The child's own records (fixtures/fork/record.js). */
function records(dir) {
  try {
    return fs.readFileSync(dir.eventsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  } catch {
    return []
  }
}

/**
 * A parent for a fork child: `received` (values from the child, in order), `send(v)` (resolves
 * with whether it was delivered), `disconnect()`, `exited` (resolves with { code, signal }).
 */
const parents = {
  /** A real child_process.fork from this process. */
  async fork(dir, file, args) {
    const out = dir.openFile('child.out')
    const err = dir.openFile('child.err')
    const child = fork(path.join(CHILDREN, file), args, {
      cwd: dir.path,
      env: dir.env(),
      stdio: ['ignore', out, err, 'ipc'],
      detached: true,
    })
    const received = []
    child.on('message', (v) => received.push(v))
    child.on('error', () => {}) // a send after the child is gone: send() says so
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
    return {
      received,
      exited,
      send: (v) => new Promise((resolve) => {
        try {
          child.send(v, (e) => resolve(e === null))
        } catch {
          resolve(false)
        }
      }),
      disconnect: async () => child.disconnect(),
      stderr: () => dir.read('child.err'),
    }
  },

  /** The same child as a pm service, driven through the manager and the real supervisor. */
  async pm(dir, file, args) {
    const m = dir.manager()
    const name = 'child'
    const received = []
    m.on('message', (e) => {
      if (e.name === name) received.push(e.data)
    })
    const exited = new Promise((resolve) => m.on('exited', (e) => {
      if (e.name !== name) return
      const code = /^exit code (\d+)$/.exec(e.exit)
      const signal = /^signal (\w+)$/.exec(e.exit)
      resolve({ code: code ? Number(code[1]) : null, signal: signal ? signal[1] : null })
    }))
    // Never restarted: a fork parent does not restart its child either.
    await m.start({ name, script: path.join(CHILDREN, file), args, restartAt: [], killTimeout: 5000 })
    dir.cleanupManager = () => m.shutdown()
    return {
      received,
      exited,
      send: async (v) => (await m.send(name, v)) === 1,
      disconnect: async () => assert.equal(await m.disconnect(name), 1),
      stderr: () => dir.read('manager.out'),
    }
  },
}

/**
 * Runs `scenario` both ways and checks that each outcome is `expected`, keys in order.
 * `scenario(parent, dir)` drives the parent's side; the outcome is collected once the child has
 * exited and `expected.received.length` values have arrived (data a child sends just before it
 * exits may come after its exit).
 */
function bothWays(title, file, args, scenario, expected) {
  for (const way of ['fork', 'pm']) {
    test(`${title} (${way})`, async (t) => {
      const dir = new TestDir(t)
      t.after(() => dir.cleanupManager && dir.cleanupManager())
      const parent = await parents[way](dir, file, args)
      await scenario(parent, dir)
      const exit = await within(parent.exited, `${file} to exit\nstderr:\n${parent.stderr().slice(-2000)}`)
      await poll(() => `${expected.received.length} values from ${file}; got ${JSON.stringify(parent.received).slice(0, 500)}`,
        () => parent.received.length >= expected.received.length)
      const outcome = { received: parent.received, events: records(dir), exit }
      const describe = `\nstderr:\n${parent.stderr().slice(-2000)}`
      assert.deepStrictEqual(outcome, expected, describe)
      // Also byte for byte: keys in the order they were sent.
      assert.equal(JSON.stringify(outcome), JSON.stringify(expected), describe)
    })
  }
}

// Every shape of value reaches the parent, in order, including those sent just before exit.
bothWays('messages of every shape, sent just before the child exits, all arrive', 'values.js', [],
  async () => {},
  { received: [...VALUES, 'last'], events: [], exit: { code: 3, signal: null } })

// The other way: what the parent sends arrives exactly; 'bye' makes the child disconnect, and
// with nothing left to do it ends with 0.
bothWays('what the parent sends arrives in process.on(\'message\') exactly as sent', 'echo.js', [],
  async (parent) => {
    for (const v of [...VALUES, 'bye']) assert.equal(await parent.send(v), true)
  },
  {
    received: [...VALUES, 'bye'].map((v) => ({ got: v })),
    events: [...VALUES, 'bye'].map((v) => ({ what: 'got', v })),
    exit: { code: 0, signal: null },
  })

// Order across the turns of the event loop: nextTick, promises, timers, setImmediate, a burst.
bothWays('messages keep their order across ticks, microtasks, timers and a 1000-message burst', 'ordering.js', [],
  async () => {},
  {
    received: [...Array.from({ length: 1007 }, (_, i) => i + 1), 'end'],
    events: [],
    exit: { code: 0, signal: null },
  })

// Send callbacks, return values, and the child disconnecting itself.
bothWays('send callbacks, process.connected and the child\'s own disconnect()', 'callbacks.js', [],
  async () => {},
  {
    received: ['first'],
    events: [
      { what: 'returned', returned: true },
      { what: 'callback', err: null },
      { what: 'after-disconnect', connected: false, channel: null },
      { what: 'returned-after', again: false },
      { what: 'disconnect-event', connected: false },
      { what: 'callback-after', code: 'ERR_IPC_CHANNEL_CLOSED' },
      { what: 'error-event', code: 'ERR_IPC_CHANNEL_CLOSED' },
      { what: 'still-running' },
    ],
    exit: { code: 0, signal: null },
  })

// The parent disconnects the child (child.disconnect(); under pm, the manager's disconnect()).
bothWays('the parent\'s disconnect(): the child sees it, keeps running, and exits as it decides', 'connected.js', [],
  async (parent) => {
    await poll('hi from the child', () => parent.received.includes('hi'))
    await parent.disconnect()
  },
  {
    received: ['hi'],
    events: [
      { what: 'start', connected: true, send: 'function', channel: 'object' },
      { what: 'disconnect', connected: false },
      { what: 'still-running' },
    ],
    exit: { code: 5, signal: null },
  })

// 900 KB strings both ways.
bothWays('900 KB strings and objects, both ways', 'big.js', [],
  async (parent) => {
    assert.equal(await parent.send('x'.repeat(900_000)), true)
  },
  {
    received: [{ length: 900_000 }, 'y'.repeat(900_000), { big: 'z'.repeat(900_000), n: 1 }],
    events: [{ what: 'got', type: 'string', length: 900_000, allX: true }],
    exit: { code: 0, signal: null },
  })

// A 'message' listener keeps the child alive: it is still there to take 'bye' later.
bothWays('a child whose only work is its \'message\' listener stays alive for the parent', 'listener.js', [],
  async (parent) => {
    // The point is the wait: a child the channel did not keep alive would be gone by now.
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(await parent.send('bye'), true)
  },
  { received: [], events: [], exit: { code: 6, signal: null } })

// Exit codes, each after a last message.
for (const [how, exit] of [
  ['return', { code: 0, signal: null }],
  ['exit', { code: 42, signal: null }],
  ['exitCode', { code: 9, signal: null }],
  ['throw', { code: 1, signal: null }],
  ['kill', { code: null, signal: 'SIGKILL' }],
]) {
  bothWays(`exit by ${how}: the parent sees ${JSON.stringify(exit)} after the last message`, 'exits.js', [how],
    async () => {},
    { received: ['bye'], events: [], exit })
}
