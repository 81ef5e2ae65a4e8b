// Benchmark child for the orphan count: a Node service with a grandchild in its group and a
// setsid escapee (detached: a session of its own).
'use strict'
const { spawn } = require('child_process')
spawn('sleep', ['1002'], { stdio: 'ignore' })
spawn('setsid', ['sleep', '1003'], { stdio: 'ignore', detached: true }).unref()
if (process.env.BENCH_READY_FILE) require('fs').appendFileSync(process.env.BENCH_READY_FILE, `${process.pid}\n`)
setInterval(() => {}, 1000)
