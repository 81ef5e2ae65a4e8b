// Benchmark child: the Node SDK with one empty stop handler.
'use strict'
const pm = require('../../child-sdk-node')
pm.onstopping(() => {})
pm.ready()
setInterval(() => {}, 1000)
