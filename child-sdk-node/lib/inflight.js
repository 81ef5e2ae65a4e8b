'use strict'
// HTTP responses in flight during a stop (protocol.md section 9, Node specifics). Node publishes
// every request an http or https server (express, fastify, koa, ...) receives on the diagnostics
// channel 'http.server.request.start' (Node 18.7 and later; on older versions nothing is
// tracked). Tracking starts with the first stop handler: a process without one is left alone.
// During a stop:
// - each response asks its client to close the connection when it is done (`Connection:
//   close`, if its headers are not sent yet), so that a server's close() ends once the requests
//   in flight are answered instead of waiting for idle keep-alive clients (5 s in Node, 72 s in
//   fastify);
// - the SDK's own exit waits for the responses in flight on servers that were closed: a stop
//   handler that calls `server.close()` and returns only started the server's shutdown.

const dc = require('node:diagnostics_channel')

const CHANNEL = 'http.server.request.start'

/** Response -> its server, for the responses that have not ended yet. */
let open = null
let stopping = false

function onRequestStart(message) {
  const { response } = message
  const server = message.server || (response && response.socket && response.socket.server)
  if (!response || !server || typeof response.once !== 'function') return
  open.set(response, server)
  // 'close' comes when the response has ended or its connection was cut.
  response.once('close', () => open.delete(response))
  if (stopping) closeWhenDone(response)
}

function closeWhenDone(response) {
  try {
    if (!response.headersSent) response.setHeader('Connection', 'close')
  } catch {
    // Headers went out in between, or the response is not an http one: it keeps its connection.
  }
}

/** Starts tracking the requests that arrive from now on. */
function track() {
  if (open !== null) return
  open = new Map()
  if (typeof dc.subscribe === 'function') dc.subscribe(CHANNEL, onRequestStart)
  else dc.channel(CHANNEL).subscribe(onRequestStart)
}

/** The stop began: responses in flight, and those to come, close their connection when done. */
function stop() {
  if (open === null || stopping) return
  stopping = true
  for (const response of open.keys()) closeWhenDone(response)
}

/**
 * Resolves when every response in flight on a server that no longer listens (it was closed)
 * has ended. One turn of the event loop passes first, so that a close a handler started but
 * that takes effect a tick later (fastify's) counts. Responses of servers that still listen are
 * not waited for: nothing asked them to finish, and some never do (event streams).
 */
async function closedServersDrained() {
  if (open === null) return
  await new Promise((resolve) => setImmediate(resolve))
  const waits = []
  for (const [response, server] of open) {
    if (server.listening) continue
    waits.push(new Promise((resolve) => response.once('close', resolve)))
  }
  await Promise.all(waits)
}

module.exports = { track, stop, closedServersDrained }
