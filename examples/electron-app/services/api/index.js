// The app's Node service: a small HTTP server. It uses Node's own IPC channel, which pm opens on
// fd 3 for Node services, so it needs no dependency (the pm-child SDK, `require('pm-child')`,
// does the same with less code, but would have to be unpacked from app.asar too: see README).
'use strict'
const http = require('node:http')

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'text/html; charset=utf-8')
  res.end(`<h1>pm example</h1><p>Served by pid ${process.pid}, Node ${process.version}` +
    ` (Electron ${process.versions.electron || 'not'} as Node).</p>`)
})

server.listen(Number(process.env.PORT) || 4310, '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`)
  if (process.send) process.send({ type: 'ready' })
})

let stopping = false
function stop() {
  if (stopping) return
  stopping = true
  // Answer the supervisor's `stop` at once (no SIGTERM follows), then close and exit.
  if (process.send && process.connected) process.send({ type: 'stopping' })
  server.close(() => process.exit(0))
  server.closeAllConnections()
}
process.on('message', (m) => {
  if (m && m.type === 'stop') stop()
})
// The supervisor died (its channel closed), or a plain `kill`: stop as well.
process.on('disconnect', stop)
process.on('SIGTERM', stop)
