// The main process of a minimal Electron app that runs its background services through pm:
// a Node HTTP service (run by Electron's own binary as Node) and a Python worker. Quitting the
// app — or the app crashing — stops both; nothing is left running.
'use strict'
const path = require('node:path')
const { app, BrowserWindow, dialog } = require('electron')
const { Manager } = require('pm-child/supervisor')

// PM_EXAMPLE_PORT: another port (the tests run this app on a free one).
const PORT = Number(process.env.PM_EXAMPLE_PORT) || 4310

// The supervisor binary comes with pm-child: npm installed the platform package
// (@pm-child/linux-x64-gnu, ...) among pm-child's optional dependencies, and the manager finds
// it there; packaged, at its app.asar.unpacked copy, where "asarUnpack" put it. The instance is
// named after the app ("pm-example"), so `pm-supervisor ls --instance pm-example` shows its
// services.
const pm = new Manager()

pm.on('exited', (e) => console.log(`[pm] ${e.name} (pid ${e.pid}) ended: ${e.exit}`))
pm.on('restarting', (e) => console.log(`[pm] ${e.name} restarts in ${e.in_ms} ms`))
pm.on('message', (e) => console.log(`[pm] ${e.name} says`, e.data))

// Runs when the app quits (before the services are stopped): stop what the main process runs
// itself. The quit waits for it, and then for the services, at most 10 s in all.
pm.onstopping(() => console.log('[pm] quitting: stopping the services'))

async function startServices() {
  const logs = app.getPath('logs')
  // A Node service: inside Electron it runs on process.execPath with ELECTRON_RUN_AS_NODE=1,
  // which reads the script inside app.asar.
  await pm.start({
    name: 'api',
    script: path.join(__dirname, 'services', 'api', 'index.js'),
    env: { PORT },
    log: path.join(logs, 'api.log'),
    killTimeout: 2000,
  }, { wait: 'ready', timeout: 10_000 })
  // A Python service (python3 must be installed; pm_child comes with the supervisor): its script
  // and folder are inside app.asar, so they run from app.asar.unpacked.
  await pm.start({
    name: 'worker',
    script: 'worker.py',
    cwd: path.join(__dirname, 'services', 'worker'),
    log: path.join(logs, 'worker.log'),
    restartAt: [500, 2000, 10_000],
  }, { wait: 'ready', timeout: 10_000 })
}

app.whenReady().then(async () => {
  try {
    await startServices()
  } catch (err) {
    // err.code: bad_spec, not_unpacked, supervisor_not_found, already_running, timeout, ...
    dialog.showErrorBox('Cannot start the services', `${err.code}: ${err.message}`)
    app.quit()
    return
  }
  const win = new BrowserWindow({ width: 640, height: 400 })
  await win.loadURL(`http://127.0.0.1:${PORT}/`)
})

app.on('window-all-closed', () => app.quit())
