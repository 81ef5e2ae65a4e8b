'use strict'
// Messages both ways through the supervisor's control channel (protocol.md section 8): a
// controlling process (this test, as an Electron main process would) drives
// `pm-supervisor serve --control-fd 3` over Node's own IPC channel, sends data to an SDK child,
// and gets the child's reply as a `message` event.

const test = require('node:test')
const assert = require('node:assert/strict')

const { CHILD, SUPERVISOR, TestDir, poll, requireSupervisor } = require('./support')

test.before(requireSupervisor)

/** `pm-supervisor serve --control-fd 3`, fd 3 being Node's IPC channel to it. */
function serve(dir) {
  const sup = dir.spawn('supervisor', SUPERVISOR, ['serve', '--control-fd', '3'], { ipc: true })
  const inbox = []
  const errors = []
  sup.child.on('message', (m) => inbox.push(m))
  sup.child.on('error', (e) => errors.push(e))
  const describe = () =>
    `\nreceived: ${JSON.stringify(inbox)}\nerrors: ${errors.join('; ')}\nstdout:\n${sup.stdout()}\nstderr:\n${sup.stderr()}`

  /** Waits for the first received message matching `pred`; fails at once if the supervisor exited. */
  const receive = (what, pred) =>
    poll(() => what + describe(), () => {
      const m = inbox.find(pred)
      if (m) return m
      if (!sup.running()) throw new Error(`the supervisor exited (${sup.child.exitCode ?? sup.child.signalCode}) before ${what}${describe()}`)
      return undefined
    })

  /** Sends a request and waits for its reply. */
  const request = (req) => {
    sup.child.send(req, (err) => err && errors.push(err))
    return receive(`the reply to ${JSON.stringify(req)}`, (m) => m && m.type === 'reply' && m.id === req.id)
  }
  return { sup, inbox, receive, request, describe }
}

test('supervisor -> child message reaches onmessage, child -> supervisor send() comes back as an event', async (t) => {
  const dir = new TestDir(t)
  const { sup, receive, request, describe } = serve(dir)

  const start = await request({
    type: 'start',
    id: 1,
    spec: { name: 'n', script: CHILD, args: ['echo'], killTimeout: 5000 },
    wait: 'ready',
  })
  assert.equal(start.ok, true, JSON.stringify(start) + describe())
  assert.equal(start.result.name, 'n')
  assert.equal(start.result.ready, true)
  const started = await dir.waitEvent('n', 'started')
  assert.equal(started.supervised, true)

  // Any JSON value, with what needs escaping on a one-line-per-message channel.
  const data = { ping: [1, 'two', { three: null }], text: 'line\nbreak \u2028 "quoted"' }
  const sent = await request({ type: 'send', id: 2, name: 'n', data })
  assert.deepStrictEqual([sent.ok, sent.result], [true, { sent: 1 }], JSON.stringify(sent))

  // The child's onmessage got exactly the data...
  assert.deepStrictEqual((await dir.waitEvent('n', 'message')).data, data)
  // ...and its pm.send({echo: data}) reached the controlling process.
  const echoed = await receive('the child\'s message event', (m) => m && m.type === 'event' && m.event === 'message' && m.name === 'n')
  assert.deepStrictEqual(echoed.data, { echo: data })
  assert.equal(echoed.pid, started.pid)

  const down = await request({ type: 'shutdown', id: 3 })
  assert.deepStrictEqual([down.ok, down.result], [true, null], JSON.stringify(down))
  assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, describe())
  assert.deepStrictEqual(dir.events().filter((e) => e.event === 'handler').map((e) => e.n), [1])
  const exited = await receive('the exited event', (m) => m && m.type === 'event' && m.event === 'exited' && m.name === 'n')
  assert.deepStrictEqual([exited.exit, exited.requested], ['exit code 0', true])
})
