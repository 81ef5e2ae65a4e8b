"""The app's Python service: does some work every two seconds until it is stopped (SIGTERM:
it does not speak pm's channel; see child-sdk-python for the SDK that does)."""
import signal
import sys
import time


def stop(*_):
    print("worker: stopping", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
n = 0
while True:
    n += 1
    print(f"worker: job {n} done", flush=True)
    time.sleep(2)
