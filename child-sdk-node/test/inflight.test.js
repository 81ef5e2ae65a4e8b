'use strict'
// lib/inflight.js in-process: after the stop handlers, the SDK's exit waits for the HTTP
// responses in flight on servers that were closed, and only for those.

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')

const inflight = require('../lib/inflight')
const { httpGet } = require('./support')

/** A server whose responses wait until release() is called. Resolves once it listens. */
function server() {
  const held = []
  const s = http.createServer((req, res) => held.push(() => res.end('done')))
  s.keepAliveTimeout = 60_000
  const release = () => held.splice(0).forEach((f) => f())
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve({ s, port: s.address().port, release, held })))
}

const until = async (what, fn) => {
  for (let i = 0; i < 500 && !fn(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  assert.ok(fn(), what)
}

test('responses in flight on a closed server are waited for; those of a listening server are not', { timeout: 20_000 }, async (t) => {
  inflight.track()
  const closed = await server()
  const open = await server()
  t.after(() => {
    closed.release()
    open.release()
    open.s.close()
    open.s.closeAllConnections()
    closed.s.closeAllConnections()
  })
  const a = httpGet(closed.port, '/a')
  const b = httpGet(open.port, '/b')
  await until('both requests to arrive', () => closed.held.length === 1 && open.held.length === 1)
  closed.s.close()

  let drained = false
  const done = inflight.closedServersDrained().then(() => { drained = true })
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal(drained, false, 'the closed server still has a response in flight')
  closed.release()
  assert.equal((await a).status, 200)
  await done
  // The listening server's response is still in flight, and was not waited for.
  assert.equal(open.held.length, 1)
  open.release()
  assert.equal((await b).status, 200)
  // Nothing in flight any more: nothing to wait for, although the client keeps its idle
  // keep-alive connection to the closed server open.
  await inflight.closedServersDrained()
})

test('a response cut off by its client no longer counts', { timeout: 20_000 }, async (t) => {
  inflight.track()
  const srv = await server()
  t.after(() => srv.s.closeAllConnections())
  const req = http.get({ host: '127.0.0.1', port: srv.port, path: '/cut', agent: false })
  req.on('error', () => {})
  await until('the request to arrive', () => srv.held.length === 1)
  srv.s.close()
  req.destroy()
  await inflight.closedServersDrained()
})

// Last: the module's stop cannot be undone in this process.
test('once the stop began, responses in flight and new ones close their connection, so server.close() ends without waiting for keep-alive clients', { timeout: 20_000 }, async (t) => {
  inflight.track()
  const srv = await server()
  t.after(() => {
    srv.release()
    srv.s.close()
    srv.s.closeAllConnections()
  })
  const before = httpGet(srv.port, '/before')
  await until('the request to arrive', () => srv.held.length === 1)
  inflight.stop()
  const during = httpGet(srv.port, '/during')
  await until('the second request to arrive', () => srv.held.length === 2)
  const closed = new Promise((resolve) => srv.s.close(resolve))
  srv.release()
  const [a, b] = await Promise.all([before, during])
  assert.deepStrictEqual([a.status, a.connection, b.status, b.connection], [200, 'close', 200, 'close'])
  // keepAliveTimeout is 60 s here: the close came from the responses' own connections ending.
  await closed
})
