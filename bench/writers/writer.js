// Log benchmark child: N lines of ~100 bytes, one console.log each (one write per line, as a
// service logging line by line does). Each line: "<payload> <writer> <seq> <fnv1a32 of the rest>",
// so a checker can find lost, duplicated and mangled lines. Writes <done file> when finished.
'use strict'
const fs = require('fs')
const [n, name, done] = [Number(process.argv[2]), process.argv[3], process.argv[4]]
const letters = 'abcdefghijklmnopqrstuvwxyz'
function fnv (s, h = 0x811c9dc5) {
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0 }
  return h
}
// The payload repeats every 26 lines: hash it once, then only the writer name and number.
const payloads = []
for (let k = 0; k < 26; k++) {
  const p = (letters.slice(k) + letters.slice(0, k)).repeat(3).slice(0, 70)
  payloads.push([p, fnv(p)])
}
for (let i = 0; i < n; i++) {
  const [p, h] = payloads[i % 26]
  const tail = ` ${name} ${String(i).padStart(7, '0')}`
  console.log(p + tail + ' ' + fnv(tail, h).toString(16).padStart(8, '0'))
}
fs.writeFileSync(done, String(Date.now()))
