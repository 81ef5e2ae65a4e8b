'use strict'
// Node's cluster under pm: the primary (using the SDK) is the service; its two workers use the
// SDK as well, but their fd 3 is the cluster's channel, not pm's, so they run unsupervised
// instead of speaking pm's protocol to their primary.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')

const { FIXTURES, TestDir, httpGet, pmLines, requireSupervisor, stoppedLine } = require('./support')

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

// The stop contract with a cluster (protocol.md section 9): the primary's stop handler
// disconnects its workers, a worker's server then refuses new connections and the worker ends
// once its requests in flight are answered. Under pm the stop is the primary's `stop` message
// (the workers get no signal); standalone, SIGTERM to the primary (as `docker stop` or `kill`
// send it) does the same. SIGTERM to the whole process group (systemd's default KillMode; a
// terminal's Ctrl-C sends SIGINT to it the same way) also reaches the workers, whose own stop
// handler closes their server: their requests in flight must still be answered. So must they
// when the primary's handler sends its workers SIGTERM instead of disconnecting them.
for (const how of ['pm', 'standalone', 'standalone, group', 'pm, workers SIGTERMed']) {
  test(`cluster, ${how}: a request in flight on a worker during the stop completes with 200; workers and primary exit 0`, async (t) => {
    const dir = new TestDir(t)
    const script = path.join(FIXTURES, 'cluster.js')
    const underPm = how.startsWith('pm')
    const svc = underPm ? 'web' : undefined
    const env = how === 'pm, workers SIGTERMed' ? { CLUSTER_STOP: 'sigterm' } : {}
    const proc = underPm
      ? dir.run(dir.config([{ name: 'web', script, env, killTimeout: 10000 }]))
      : dir.spawn('primary', process.execPath, [script])
    await dir.waitEvent(svc, 'primary-ready')
    const [{ port }] = dir.events().filter((e) => e.event === 'worker')
    const response = httpGet(port, '/slow')
    await dir.waitEvent(svc, 'request')
    const t0 = Date.now()
    if (how === 'standalone, group') process.kill(-proc.pid, 'SIGTERM')
    else proc.signal('SIGTERM')
    const res = await response
    assert.equal(res.status, 200)
    assert.match(res.body, /^slow [12]\n$/)
    assert.deepStrictEqual(await proc.wait(), { code: 0, signal: null }, `${proc.stdout()}\n${proc.stderr()}`)
    let ms = Date.now() - t0
    assert.deepStrictEqual(dir.events().filter((e) => e.event === 'worker-exit').map((e) => [e.code, e.signal]), [[0, null], [0, null]])
    const kinds = dir.events().map((e) => e.event)
    assert.ok(kinds.includes('workers-gone'), kinds.join())
    // The worker that had the request in flight got the signal too, and its own stop handler ran
    // (an idle worker may be gone, by its primary's disconnect, before its listener runs).
    const busy = dir.events().find((e) => e.event === 'request').worker
    const handled = dir.events().filter((e) => e.event === 'worker-handler').map((e) => e.worker)
    if (how === 'standalone, group') assert.ok(handled.includes(busy), `${busy} in ${handled}`)
    else if (how === 'pm, workers SIGTERMed') assert.deepStrictEqual(handled.sort(), [1, 2])
    else assert.deepStrictEqual(handled, [], 'the workers got no signal')
    if (underPm) {
      const out = proc.stdout()
      const stopped = stoppedLine(out, 'web')
      assert.equal(stopped.exit, 'exit code 0', stopped.line)
      // SIGKILL never. (A SIGTERM to the group may come if the primary's `stopping` answer misses
      // the supervisor's 50 ms window on a loaded machine: the workers' own handler then closes
      // their server, and the request must still complete.)
      assert.ok(!out.includes('SIGKILL sent'), out)
      ms = stopped.ms
    }
    await dir.waitAllGone()
    t.diagnostic(`${how}: stop request to exit ${ms} ms (the request had up to 1000 ms left)`)
  })
}
