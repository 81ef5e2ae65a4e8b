// Benchmark child: stops politely with a ~10 ms handler, however it is asked: pm's stop message
// (through the SDK, when supervised by pm), SIGINT (PM2) or SIGTERM (supervisord).
'use strict'
const path = require('path')
const marker = process.env.BENCH_READY_FILE
if (process.env.PM_CHANNEL_FD) {
  const pm = require(path.join(__dirname, '../../child-sdk-node'))
  pm.onstopping(() => new Promise((resolve) => setTimeout(resolve, 10)))
  pm.ready()
} else {
  const stop = () => setTimeout(() => process.exit(0), 10)
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  process.on('message', (m) => { if (m === 'shutdown') stop() })
  if (process.send) process.send('ready')
}
if (marker) require('fs').appendFileSync(marker, `${process.pid}\n`)
setInterval(() => {}, 1000)
