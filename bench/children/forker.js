// Spawn baseline: a minimal Node parent that forks N children and waits for each to say ready.
'use strict'
const { fork } = require('child_process')
const [n, script] = [Number(process.argv[2]), process.argv[3]]
const t0 = process.hrtime.bigint()
let ready = 0
const kids = []
for (let i = 0; i < n; i++) {
  const c = fork(script, [], { stdio: 'ignore' })
  kids.push(c)
  c.on('message', (m) => {
    if (m === 'ready' && ++ready === n) {
      console.log(Number(process.hrtime.bigint() - t0) / 1e6)
      for (const k of kids) k.kill('SIGKILL')
      process.exit(0)
    }
  })
}
