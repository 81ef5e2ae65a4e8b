// Type-checked by test/types.test.js (tsc --noEmit): CommonJS TypeScript using the manager by name.
import pm = require('pm-child/supervisor')
import { Manager, ManagerError, type ServiceRow, type ServiceSpec, type ExitedEvent } from 'pm-child/supervisor'

async function main(): Promise<void> {
  const spec: ServiceSpec = {
    name: 'service1', script: 'index.js', args: [], cwd: './services/first', log: 'logs/service1.log',
    env: { PORT: 3000, DEBUG: true, MODE: 'x' }, restartAt: [100, 500], restartOk: 30 * 60 * 1000, stripANSI: true,
    killTimeout: 500, logMaxSize: 1 << 20, logKeep: 3,
    watchdogMs: 1000, maxMemory: '500M', dependsOn: ['db'], watch: ['src/**/*.js'],
  }
  await pm.start({ script: 'b.js', maxMemory: 512 * 1024 * 1024, watch: true })
  const row: ServiceRow = await pm.start(spec)
  const pid: number | null = row.pid
  await pm.start(spec, { wait: 'ready', timeout: 5000 })
  const stopped: ServiceRow[] = await pm.stop('service1')
  await pm.restart('service1')
  await pm.stopall()
  const [d] = await pm.describe('service1')
  const members: number[] = d.pids
  const lastExit: string | undefined = d.exits.at(-1)?.exit
  const forgotten: ServiceRow[] = await pm.delete('service1')
  void members, lastExit, forgotten
  const rows = await pm.list()
  const n: number = await pm.send('service1', { any: ['json', 1] })
  const closed: number = await pm.disconnect('service1')
  pm.on('event', (e) => {
    if (e.event === 'exited') {
      const code: string = e.exit
      void code
    } else if (e.event === 'message') {
      void e.data
    }
  })
  pm.on('exited', (e: ExitedEvent) => void e.requested)
  pm.on('message', (e) => void e.pid)
  pm.on('hung', (e) => void (e.silence_ms - e.watchdog_ms)).on('memory', (e) => void (e.rss > e.max_memory))
  const hangs: number = rows[0].hangs ?? 0
  const why: 'hung' | 'memory' | 'watch' | undefined = rows[0].last_guard?.why
  void hangs, why
  pm.onstopping(async () => {})
  pm.unref()

  const m = new Manager({ supervisorPath: '/opt/pm-supervisor', name: 'my-app', exitTimeout: 5000, stdout: 'ignore', stderr: 1, env: { A: 'b' } })
  m.on('close', (info) => void info.expected).on('ready', (e) => void e.pid)
  const name: string = m.name
  const mpid: number | null = m.pid
  try {
    await m.start({ script: 'worker.py' })
  } catch (err) {
    if (err instanceof ManagerError && err.code === 'bad_spec') void err.field
  }
  await m.shutdown()
  void [pid, stopped, rows, n, closed, name, mpid]

  // @ts-expect-error script is required
  await pm.start({ name: 'x' })
  // @ts-expect-error unknown wait mode
  await pm.start(spec, { wait: 'soon' })
  // @ts-expect-error killTimeout is a number of ms
  await pm.start({ script: 'a.js', killTimeout: '5s' })
  // @ts-expect-error watchdogMs is a number of ms
  await pm.start({ script: 'a.js', watchdogMs: '1s' })
  // @ts-expect-error dependsOn is a list of names
  await pm.start({ script: 'a.js', dependsOn: 'db' })
  // @ts-expect-error watch is true or a list of paths
  await pm.start({ script: 'a.js', watch: 'src' })
  // @ts-expect-error no such event
  pm.on('exploded', () => {})
  // @ts-expect-error send resolves with a count
  const s: string = await pm.send('a', 1)
  void s
}
void main
