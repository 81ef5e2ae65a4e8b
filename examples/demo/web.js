// Demo Node service. No SDK: Node's own IPC channel carries the supervisor's messages, so a
// service written for child_process.fork works unchanged.
'use strict'
let requests = 0
const timer = setInterval(() => console.log(`web: served ${(requests += 7)} requests`), 1500)

process.on('message', (msg) => {
  if (msg && msg.type === 'stop') {
    process.send({ type: 'stopping' })
    console.log(`web: stop received (${msg.reason}); closing connections...`)
    clearInterval(timer)
    setTimeout(() => { console.log('web: clean exit'); process.exit(0) }, 50)
  }
})
process.send('ready')
console.log(`web: listening (pid ${process.pid})`)
