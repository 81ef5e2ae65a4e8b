"""Demo Python service speaking the pm channel by hand (fd 3, one JSON object per line)."""
import json
import os
import socket
import sys
import threading
import time

chan = socket.socket(fileno=int(os.environ["PM_CHANNEL_FD"]))


def send(obj):
    chan.sendall((json.dumps(obj) + "\n").encode())


def listen():
    buf = b""
    while True:
        data = chan.recv(4096)
        if not data:
            print("worker: supervisor gone; cleaning up", flush=True)
            os._exit(0)
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg.get("type") == "stop":
                send({"type": "stopping"})
                print(f"worker: stop received ({msg['reason']}); flushing the queue...", flush=True)
                time.sleep(0.05)
                print("worker: clean exit", flush=True)
                os._exit(0)


send({"type": "hello", "protocol": 1, "sdk": "demo", "version": "0"})
threading.Thread(target=listen, daemon=True).start()
send({"type": "ready"})
print(f"worker: processing jobs (pid {os.getpid()})")
job = 0
while True:
    time.sleep(2)
    job += 1
    print(f"worker: finished job {job}")
