#!/usr/bin/env bash
# Installs what summon needs on a fresh Debian 12 machine (run as root): the image
# interpreter, the sandbox runtime, and summon itself with its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  python3.11      # the interpreter that goes into images (Debian's: embeds libpython)
  runc            # the sandbox target's OCI runtime
  erofs-utils     # mkfs.erofs: each image's read-only, verified root filesystem (the sandbox's root)
  slirp4netns     # user-mode networking for sandboxed apps that reach out (egress)
  iptables        # the egress allowlist summon installs in each sandbox's network namespace
  iproute2        # `ip netns` for inspecting test namespaces (summon itself uses pyroute2)
  curl            # the demo and tests fetch pages with it
  openssl         # real TLS peers for summon.tls (s_client, s_server) and `openssl verify`
  iputils-ping    # Linux's ping, pinging summon.net in the tests' namespaces
  netcat-openbsd  # Linux's nc -u, a UDP peer for summon.net in the tests' namespaces
  hyperfine       # benchmarks
  docker-registry # a real OCI distribution registry for the push/pull tests (CNCF distribution)
  skopeo          # a third-party OCI client: the tests check it reads and copies our images
  apache2-utils   # htpasswd, for the registry's basic-auth tests; ab, for benchmarks/bench_perf.py
  dnsmasq-base    # a real DHCP and DNS server for summon.net's tests, in test namespaces
  wrk             # the load generator of the direct-stack benchmark
  iperf3          # Linux's iperf3 measuring TCP into summon.net in the tests' namespaces
  qemu-system-x86 # the qemu target's microVMs
  linux-source-6.1 # the kernel source summon specializes per image
  build-essential # the kernel build: gcc, make
  bc              # the kernel build
  bison           # the kernel build (kconfig)
  flex            # the kernel build (kconfig)
  libelf-dev      # the kernel build (objtool)
  libssl-dev      # the kernel build (certificate tools)
  xz-utils        # unpacking the kernel source
  e2fsprogs       # volumes: mkfs.ext4 makes the qemu target's disks, debugfs and e2fsck read them
  podman          # tests: summon images under another engine, and `podman kube play`
  catatonit       # podman kube play's pause process (a Recommends of podman: not pulled in here)
  containerd      # tests: summon images under containerd's ctr
  chromium        # the browser target's tests and benchmark: a real headless browser
  chromium-driver # the same, for WebDriver clients (the tests speak DevTools to chromium)
  git             # the real git checks summon.kv's repositories (fsck, log, clone, bundles)
)
# The browser target: node traces an app inside Pyodide at export, and npm fetches the pinned
# Pyodide below. Only when missing: a newer Node (e.g. NodeSource's, which brings its own npm)
# must not be swapped for Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_packages+=(nodejs npm)
fi
missing=()
for p in "${apt_packages[@]%% *}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 \
  | grep -v -e "Running pip as the 'root' user" -e "is ignored: it is neither a file" || true

# The browser target's Pyodide (0.25.1: CPython 3.11, as the images), from the npm registry
# with npm's own client, checked against the pinned integrity, kept in summon's cache
# (~/.cache/summon/pyodide/0.25.1; SUMMON_PYODIDE overrides), never in the repository.
python3 -m summon.targets.browser.pyodide install >/dev/null
