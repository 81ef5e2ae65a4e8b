"""Demo Python service, using the Python SDK (`pip install ./child-sdk-python`)."""
import os
import time

import pm_child


@pm_child.on_stopping
def flush_queue():
    print("worker: stopping; flushing the queue...", flush=True)
    time.sleep(0.05)
    print("worker: clean exit", flush=True)


pm_child.ready()
print(f"worker: processing jobs (pid {os.getpid()}, supervised: {pm_child.supervised()})")
job = 0
while True:
    time.sleep(2)
    job += 1
    print(f"worker: finished job {job}")
