'use strict'
// Real express and fastify services (the versions pinned in package.json) with a request in
// flight during the stop, under the real supervisor and standalone (SIGTERM, as systemd and
// Docker send it):
// - express-handler.js: a stop handler that closes the server and returns at once;
// - express-sigterm.js: no stop handler, SIGTERM handling of its own; pm-child only says ready;
// - fastify-handler.js: a stop handler that returns fastify's close(), awaited.
// The request must complete with 200 and the process exit 0, with no SIGKILL. The fixtures' README
// parts are the patterns README.md and child-sdk-node/README.md show.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')

const { FIXTURES, TestDir, httpGet, pmLines, requireSupervisor, stoppedLine } = require('./support')

test.before(requireSupervisor)

/**
 * Starts `fixture` under pm or standalone, sends GET /report (1 s of work), stops the service
 * once the request has arrived, and checks the response and the exit. Returns the stop time.
 */
async function stopWithRequestInFlight(t, fixture, how) {
  const dir = new TestDir(t)
  const script = path.join(FIXTURES, fixture)
  const svc = how === 'pm' ? 'web' : 'alone'
  const proc = how === 'pm'
    ? dir.run(dir.config([{ name: 'web', script, env: { PORT: '0' }, killTimeout: 10000 }]))
    : dir.spawn('web', process.execPath, [script], { env: { PORT: '0' } })
  const { port } = await dir.waitEvent(svc, 'listening')
  if (how === 'pm') await proc.waitStdout('web pm  | ready')
  const response = httpGet(port, '/report')
  await dir.waitEvent(svc, 'request')
  const t0 = Date.now()
  proc.signal('SIGTERM')
  const res = await response
  assert.deepStrictEqual([res.status, res.body], [200, 'report done\n'])
  assert.deepStrictEqual(await proc.wait(), { code: 0, signal: null }, `${proc.stdout()}\n${proc.stderr()}`)
  let ms = Date.now() - t0
  if (how === 'pm') {
    const out = proc.stdout()
    const stopped = stoppedLine(out, 'web')
    assert.equal(stopped.exit, 'exit code 0', stopped.line)
    assert.ok(!out.includes('SIGKILL sent'), out)
    assert.ok(!out.includes(' web err | '), out)
    ms = stopped.ms
  } else {
    assert.equal(proc.stderr(), '')
  }
  assert.equal(dir.events().find((e) => e.event === 'exit').code, 0)
  return { dir, proc, ms, response: res }
}

for (const how of ['pm', 'standalone']) {
  test(`express, stop handler that closes the server, ${how}: the request in flight completes with 200, exit 0`, async (t) => {
    const { ms, dir, response } = await stopWithRequestInFlight(t, 'express-handler.js', how)
    // The exit came right after the response, not at the end of the keep-alive connection the
    // client still holds (Node's keepAliveTimeout is 5 s).
    const exit = dir.events().find((e) => e.event === 'exit')
    assert.ok(exit.t - response.end < 2500, `exit ${exit.t - response.end} ms after the response ended`)
    t.diagnostic(`${how}: stop request to exit ${ms} ms (the request had up to 1000 ms left)`)
  })

  test(`fastify, stop handler that returns app.close(), ${how}: the request in flight completes with 200, exit 0`, async (t) => {
    const { ms, dir, response } = await stopWithRequestInFlight(t, 'fastify-handler.js', how)
    // fastify's close() waits for every connection; the client's keep-alive one was closed
    // after the response, so the exit came right after it, not after fastify's 72 s
    // keepAliveTimeout (the test's killTimeout is 10 s).
    assert.equal(response.connection, 'close')
    const exit = dir.events().find((e) => e.event === 'exit')
    assert.ok(exit.t - response.end < 2500, `exit ${exit.t - response.end} ms after the response ended`)
    t.diagnostic(`${how}: stop request to exit ${ms} ms (the request had up to 1000 ms left)`)
  })

  test(`express, no stop handler and its own SIGTERM handling, ${how}: the request in flight completes with 200, exit 0`, async (t) => {
    const { proc, ms } = await stopWithRequestInFlight(t, 'express-sigterm.js', how)
    if (how === 'pm') {
      // The SDK answered `term`: the supervisor sent SIGTERM at once, as to a plain program.
      assert.ok(pmLines(proc.stdout(), 'web').some((l) => l.includes('SIGTERM sent') && l.includes('no stop handlers')), proc.stdout())
    }
    t.diagnostic(`${how}: stop request to exit ${ms} ms (the request had up to 1000 ms left; server.close() also waits for the client's idle keep-alive connection)`)
  })
}
