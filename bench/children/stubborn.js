// Benchmark child: ignores every polite request; only SIGKILL stops it.
'use strict'
process.on('SIGINT', () => {})
process.on('SIGTERM', () => {})
process.on('message', () => {})
if (process.env.BENCH_READY_FILE) require('fs').appendFileSync(process.env.BENCH_READY_FILE, `${process.pid}\n`)
setInterval(() => {}, 1000)
