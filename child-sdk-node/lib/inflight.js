'use strict'
// HTTP responses in flight, so that the SDK's own exit(0) never cuts short a response of a
// server that has been closed (protocol.md section 9). A stop handler that calls
// `server.close()` and returns only notifies the server: Node's server then refuses new
// connections and finishes the requests it has. Node publishes every request an http or https
// server (express, fastify, koa, ...) receives on the diagnostics channel
// 'http.server.request.start' (Node 18.7 and later; on older versions nothing is tracked).
// Tracking starts with the first stop handler: a process without one has no subscription.

const dc = require('node:diagnostics_channel')

const CHANNEL = 'http.server.request.start'

/** Response -> its server, for the responses that have not ended yet. */
let open = null

function onRequestStart(message) {
  const { response } = message
  const server = message.server || (response && response.socket && response.socket.server)
  if (!response || !server || typeof response.once !== 'function') return
  open.set(response, server)
  // 'close' comes when the response has ended or its connection was cut.
  response.once('close', () => open.delete(response))
}

/** Starts tracking the requests that arrive from now on. */
function track() {
  if (open !== null) return
  open = new Map()
  if (typeof dc.subscribe === 'function') dc.subscribe(CHANNEL, onRequestStart)
  else dc.channel(CHANNEL).subscribe(onRequestStart)
}

/**
 * Resolves when every response now in flight on a server that no longer listens (it was
 * closed) has ended. Responses of servers that still listen are not waited for: nothing asked
 * them to finish.
 */
function closedServersDrained() {
  if (open === null) return Promise.resolve()
  const waits = []
  for (const [response, server] of open) {
    if (server.listening) continue
    waits.push(new Promise((resolve) => response.once('close', resolve)))
  }
  return Promise.all(waits).then(() => undefined)
}

module.exports = { track, closedServersDrained }
