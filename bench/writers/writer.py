"""Log benchmark child: the Python twin of writer.js (same lines, one write per line)."""
import sys

n, name, done = int(sys.argv[1]), sys.argv[2], sys.argv[3]
letters = "abcdefghijklmnopqrstuvwxyz"


def fnv(data, h=0x811C9DC5):
    for c in data:
        h = ((h ^ c) * 0x01000193) & 0xFFFFFFFF
    return h


# The payload repeats every 26 lines: hash it once, then only the writer name and number.
payloads = []
for k in range(26):
    p = ((letters[k:] + letters[:k]) * 3)[:70]
    payloads.append((p, fnv(p.encode())))
out = sys.stdout
for i in range(n):
    p, h = payloads[i % 26]
    tail = f" {name} {i:07d}"
    out.write(f"{p}{tail} {fnv(tail.encode(), h):08x}\n")
    out.flush()
with open(done, "w") as f:
    f.write("done")
