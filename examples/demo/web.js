// Demo Node service, using the Node SDK (child-sdk-node): its stop handler runs when the
// supervisor asks, when it dies, or on SIGTERM/Ctrl-C when run on its own.
'use strict'
const pm = require('../../child-sdk-node')

let requests = 0
const timer = setInterval(() => console.log(`web: served ${(requests += 7)} requests`), 1500)

pm.onstopping(async () => {
  console.log('web: stopping; closing connections...')
  clearInterval(timer)
  await new Promise((resolve) => setTimeout(resolve, 50))
  console.log('web: clean exit')
})
pm.onmessage((data) => console.log(`web: message from the supervisor: ${JSON.stringify(data)}`))
pm.ready()
console.log(`web: listening (pid ${process.pid}, supervised: ${pm.supervised()})`)
