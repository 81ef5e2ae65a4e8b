"""Benchmark child: the Python SDK with one empty stop handler."""
import time

import pm_child


@pm_child.on_stopping
def nothing():
    pass


pm_child.ready()
while True:
    time.sleep(1)
