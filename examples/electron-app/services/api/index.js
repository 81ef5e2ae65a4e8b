// The app's Node service: a small HTTP server, written as a child_process.fork child with no
// dependency: pm opens Node's own IPC channel on fd 3 for Node services, so `process.send`
// works as under `fork`, and pm stops a service that does not use the pm-child SDK with SIGTERM.
'use strict'
const http = require('node:http')

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'text/html; charset=utf-8')
  res.end(`<h1>pm example</h1><p>Served by pid ${process.pid}, Node ${process.version}` +
    ` (Electron ${process.versions.electron || 'not'} as Node).</p>`)
})

server.listen(Number(process.env.PORT) || 4310, '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`)
  // PM2's readiness signal, which pm understands too.
  if (process.send) process.send('ready')
})

let stopping = false
function stop() {
  if (stopping) return
  stopping = true
  server.close(() => process.exit(0))
  server.closeAllConnections()
}
// pm's stop (or a plain `kill`).
process.on('SIGTERM', stop)
// The supervisor died: its channel closed. (pm's sentinel sends SIGTERM too.)
process.on('disconnect', stop)
