"""The app's Python service: does some work every two seconds until it is stopped. It uses the
pm_child SDK, which the app does not install: it comes with the supervisor in the platform
package (node_modules/@pm-child/<platform>/python/), which the supervisor puts first on
PYTHONPATH."""
import time

import pm_child


@pm_child.on_stopping
def stop() -> None:
    # Runs once when the app quits (or crashes); the process exits 0 when it returns.
    print("worker: stopping", flush=True)


pm_child.ready()
n = 0
while True:
    n += 1
    print(f"worker: job {n} done", flush=True)
    time.sleep(2)
