'use strict'
// Node's cluster under pm: the primary (using the SDK) is the service; its two workers use the
// SDK as well, but their fd 3 is the cluster's channel, not pm's, so they run unsupervised
// instead of speaking pm's protocol to their primary.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')

const { FIXTURES, TestDir, pmLines, requireSupervisor, stoppedLine } = require('./support')

test.before(requireSupervisor)

test('cluster: the primary becomes ready and gets the stop; the workers run unsupervised without error', async (t) => {
  const dir = new TestDir(t)
  const sup = dir.run(dir.config([{ name: 'web', script: path.join(FIXTURES, 'cluster.js'), killTimeout: 5000 }]))
  const ready = await dir.waitEvent('web', 'primary-ready')
  assert.equal(ready.supervised, true)
  await sup.waitStdout('web pm  | ready')
  const workers = dir.events().filter((e) => e.event === 'worker')
  assert.deepStrictEqual(workers.map((w) => w.supervised), [false, false], JSON.stringify(workers))
  // Their primary heard from them only what they sent themselves: no hello, no ready.
  const heard = dir.events().filter((e) => e.event === 'worker-message').map((e) => e.msg)
  assert.deepStrictEqual(heard.map((m) => [m.supervised, m.sent]).sort(), [[false, false], [false, false]], JSON.stringify(heard))

  sup.signal('SIGTERM')
  assert.deepStrictEqual(await sup.wait(), { code: 0, signal: null }, sup.stdout())
  const out = sup.stdout()
  // The stop reached the primary through its channel, which stopped its workers itself.
  const kinds = dir.events().map((e) => e.event)
  assert.ok(kinds.includes('primary-stopping') && kinds.includes('workers-gone'), kinds.join())
  assert.deepStrictEqual(dir.events().filter((e) => e.event === 'worker-exit').map((e) => e.code), [0, 0])
  assert.equal(stoppedLine(out, 'web').exit, 'exit code 0', out)
  assert.ok(!pmLines(out, 'web').some((l) => /SIG(TERM|KILL) sent/.test(l)), out)
  // Nothing went wrong anywhere: no error output from any of the processes.
  assert.ok(!out.includes(' web err | '), out)
  assert.ok(!sup.stderr().includes('bad channel line'), sup.stderr())
  await dir.waitAllGone()
})
