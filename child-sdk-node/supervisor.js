'use strict'
// pm-child/supervisor: the manager side of pm, for the process that owns the services (an
// Electron main process, or any Node program). It runs the pm-supervisor binary and drives it
// over its control channel (protocol.md, section 8).
//
//   const pm = require('pm-child/supervisor')   // the default manager, started on first use
//   await pm.start({ name: 'api', script: 'server.js', cwd: './services/api' })
//   pm.on('exited', (e) => console.log(e.name, e.exit))
//
// `new Manager(options)` makes another one (its own supervisor, its own instance name).

const { Manager, ManagerError } = require('./lib/manager')
const { findSupervisor, defaultName, unpackedPath, insideAsar } = require('./lib/manager-paths')

let defaultInstance = null

/** The default manager, made on first use (its supervisor starts with the first start()). */
function defaultManager() {
  if (defaultInstance === null) defaultInstance = new Manager()
  return defaultInstance
}

// `exports.x = ...` one by one, so that ES modules can import each name.
exports.start = (spec, options) => defaultManager().start(spec, options)
exports.stop = (name) => defaultManager().stop(name)
exports.restart = (name) => defaultManager().restart(name)
exports.delete = (name) => defaultManager().delete(name)
exports.describe = (name) => defaultManager().describe(name)
exports.stopall = () => defaultManager().stopall()
exports.list = () => defaultManager().list()
exports.send = (name, data) => defaultManager().send(name, data)
exports.disconnect = (name) => defaultManager().disconnect(name)
exports.shutdown = () => defaultManager().shutdown()
exports.onstopping = (fn) => defaultManager().onstopping(fn)
exports.on = (event, listener) => defaultManager().on(event, listener)
exports.once = (event, listener) => defaultManager().once(event, listener)
exports.off = (event, listener) => defaultManager().off(event, listener)
exports.ref = () => defaultManager().ref()
exports.unref = () => defaultManager().unref()
exports.defaultManager = defaultManager
exports.Manager = Manager
exports.ManagerError = ManagerError
exports.findSupervisor = findSupervisor
exports.defaultName = defaultName
exports.unpackedPath = unpackedPath
exports.insideAsar = insideAsar
