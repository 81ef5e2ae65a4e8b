#!/usr/bin/env bash
# `make dist`: every artefact pm ships for one platform, by default this machine's
# (x86_64-unknown-linux-gnu), into dist/ (git-ignored). docs/shipping.md describes them and the
# release plan.
#
#   dist/bin/pm-supervisor                      stripped; on Linux glibc 2.17 symbols at most
#   dist/wheels/pm_supervisor-*.whl             the binary on PATH (maturin bindings = "bin")
#   dist/wheels/pm_child-*-cp39-abi3-*.whl      the Python SDK (manylinux_2_17 on Linux)
#   dist/npm/pm-child-*.tgz                     the Node SDK and manager
#   dist/npm/pm-child-<platform>-*.tgz          bin/pm-supervisor and python/pm_child
#   dist/crates/pm-child-*.crate, pm-supervisor-*.crate
#   dist/SHA256SUMS
#
# On Linux both native builds use maturin's Zig mode (Zig from PyPI's `ziglang`, linked with
# cargo-zigbuild inside maturin) against glibc 2.17, the manylinux2014 floor: the installed Rust
# target is enough, no other toolchain or container is needed. The binary is built once, into the
# pm-supervisor wheel, and the npm package carries the same bytes.
#
# Environment: PM_DIST_TARGET, the Rust target (one of the "pm.target" values of
# npm/*/package.json; only x86_64-unknown-linux-gnu is built here, the others by
# .github/workflows/release.yml); PYTHON (default python3) makes the tools' virtualenv in
# target/dist-tools/.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target="${PM_DIST_TARGET:-x86_64-unknown-linux-gnu}"
# The npm platform package (npm/<platform>/) that ships this target.
platform="$(node -e '
  const fs = require("fs")
  const key = fs.readdirSync("npm").find((k) => JSON.parse(fs.readFileSync(`npm/${k}/package.json`)).pm.target === process.argv[1])
  if (!key) { console.error(`dist: no npm/*/package.json has "pm": {"target": "${process.argv[1]}"}`); process.exit(1) }
  console.log(key)' "$target")"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
dist="$root/dist"
tools="$root/target/dist-tools"
started=$SECONDS
case "$target" in
    *-linux-gnu) linux=1 ;;
    *) linux=0 ;;
esac

# Build tools, pinned, in a virtualenv of their own (all from PyPI). Reinstalled when the pins
# change.
pins="maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2 pytest==9.2.0"
if [ ! -x "$tools/venv/bin/python" ] || [ "$(cat "$tools/pins" 2>/dev/null)" != "$pins" ]; then
    rm -rf "$tools"
    mkdir -p "$tools"
    "${PYTHON:-python3}" -m venv "$tools/venv"
    # shellcheck disable=SC2086
    "$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check $pins
    echo "$pins" > "$tools/pins"
fi
# maturin finds Zig as `python -m ziglang` of the Python on PATH.
export PATH="$tools/venv/bin:$PATH"

rm -rf "$dist"
mkdir -p "$dist/bin" "$dist/wheels" "$dist/npm" "$dist/crates"
maturin_build() {
    if [ "$linux" = 1 ]; then
        maturin build --quiet --release --zig --compatibility manylinux2014 --target "$target" --out "$dist/wheels" "$@"
    else
        maturin build --quiet --release --target "$target" --out "$dist/wheels" "$@"
    fi
}

echo "== pm-supervisor: wheel, and the binary from it"
(cd pypi/pm-supervisor && maturin_build)
python3 - "$dist" <<'EOF'
import glob, os, sys, zipfile
dist = sys.argv[1]
[wheel] = glob.glob(f"{dist}/wheels/pm_supervisor-*.whl")
with zipfile.ZipFile(wheel) as z:
    [member] = [n for n in z.namelist() if n.endswith(".data/scripts/pm-supervisor")]
    with z.open(member) as src, open(f"{dist}/bin/pm-supervisor", "wb") as dst:
        dst.write(src.read())
os.chmod(f"{dist}/bin/pm-supervisor", 0o755)
EOF

echo "== pm-child: the Python SDK's abi3 wheel"
maturin_build -m child-sdk-python/Cargo.toml

for wheel in "$dist"/wheels/*.whl; do
    [ "$linux" = 1 ] || break
    auditwheel show "$wheel" > "$wheel.auditwheel.txt"
    if ! grep -q '"manylinux_2_17_x86_64"' "$wheel.auditwheel.txt"; then
        cat "$wheel.auditwheel.txt" >&2
        echo "dist: $wheel is not manylinux_2_17 (manylinux2014)" >&2
        exit 1
    fi
done

echo "== npm: pm-child and @pm-child/$platform"
rm -rf "$dist/python"
python3 - "$dist" <<'EOF'
import glob, sys, zipfile
dist = sys.argv[1]
[wheel] = glob.glob(f"{dist}/wheels/pm_child-*.whl")
with zipfile.ZipFile(wheel) as z:
    z.extractall(f"{dist}/python", [n for n in z.namelist() if n.startswith("pm_child/")])
EOF
node scripts/npm-pack.js --out "$dist/npm" --platform "$platform" --binary "$dist/bin/pm-supervisor" --python "$dist/python" > /dev/null

echo "== crates: pm-child, pm-supervisor"
# --allow-dirty: `make test` runs this in work trees with changes; a release runs on a clean
# checkout, and `cargo publish` checks that. --no-verify: make test-dist builds and tests the
# unpacked crates itself.
cargo package --quiet --allow-dirty --no-verify -p pm-child -p pm-supervisor 2> >(grep -v '^warning: ignoring test `\(integration\|timing\)`' >&2)
cp "target/package/pm-child-$version.crate" "target/package/pm-supervisor-$version.crate" "$dist/crates/"

python3 - "$dist" <<'EOF'
import glob, hashlib, os, sys
os.chdir(sys.argv[1])
files = sorted(glob.glob("bin/*") + glob.glob("wheels/*.whl") + glob.glob("npm/*.tgz") + glob.glob("crates/*.crate"))
with open("SHA256SUMS", "w") as out:
    for f in files:
        with open(f, "rb") as data:
            out.write(f"{hashlib.sha256(data.read()).hexdigest()}  {f}\n")
EOF

echo "== dist/ ($((SECONDS - started)) s)"
python3 - "$dist" "$target" "$platform" "$linux" <<'EOF'
import os, sys
dist, target, platform, linux = sys.argv[1:]
def tag(rel):
    name = os.path.basename(rel)
    if rel.startswith("wheels/"):
        return name[:-len(".whl")].split("-", 2)[2]
    if rel.startswith("bin/"):
        return target + (" (glibc 2.17)" if linux == "1" else "")
    if name.startswith(f"pm-child-{platform}-"):
        return f"npm os/cpu/libc: {platform}"
    return "any platform"
rows = []
for sub in ("bin", "wheels", "npm", "crates"):
    for name in sorted(os.listdir(f"{dist}/{sub}")):
        rel = f"{sub}/{name}"
        if os.path.isfile(f"{dist}/{rel}") and not name.endswith(".txt"):
            rows.append((rel, os.path.getsize(f"{dist}/{rel}"), tag(rel)))
width = max(len(r[0]) for r in rows)
for rel, size, t in rows:
    print(f"{rel:<{width}}  {size:>9} bytes ({size / 1e6:.2f} MB)  {t}")
EOF
