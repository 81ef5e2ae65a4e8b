'use strict'
// The SDK without a supervisor (`node child.js` run directly): SIGTERM and SIGINT still run the
// stop handlers, as under systemd, Docker or a terminal's Ctrl-C.

const test = require('node:test')
const assert = require('node:assert/strict')

const { CHILD, TestDir } = require('./support')

for (const signal of ['SIGTERM', 'SIGINT']) {
  test(`without a supervisor, ${signal} runs the handlers in order and the child exits 0`, async (t) => {
    const dir = new TestDir(t)
    const child = dir.spawn('child', process.execPath, [CHILD, 'async'])
    const started = await dir.waitEvent('alone', 'started')
    assert.equal(started.supervised, false)
    child.signal(signal)
    assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
    const ran = dir.events().filter((e) => e.event === 'handler').map((e) => [e.n, e.phase])
    assert.deepStrictEqual(ran, [[1, 'start'], [1, 'end'], [2, undefined]])
    assert.equal(child.stderr(), '')
  })
}

test('a second signal during the stop does not run the handlers again', async (t) => {
  const dir = new TestDir(t)
  const child = dir.spawn('child', process.execPath, [CHILD, 'async'])
  await dir.waitEvent('alone', 'started')
  child.signal('SIGTERM')
  await dir.waitEvent('alone', 'handler')
  // The first handler is in its 300 ms wait now.
  child.signal('SIGINT')
  child.signal('SIGTERM')
  assert.deepStrictEqual(await child.wait(), { code: 0, signal: null }, child.stderr())
  const ran = dir.events().filter((e) => e.event === 'handler').map((e) => [e.n, e.phase])
  assert.deepStrictEqual(ran, [[1, 'start'], [1, 'end'], [2, undefined]])
})
