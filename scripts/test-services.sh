#!/usr/bin/env bash
# Make sure the services the test suite talks to are installed and running: PostgreSQL, Redis,
# virtlogd and libvirtd (with QEMU and the network filters every server's interface is bound to:
# libvirt-daemon-config-nwfilter's clean-traffic, enforced with iptables' ebtables-nft), a PowerDNS
# authoritative server (sqlite3 backend, its HTTP API on) that the reverse DNS tests publish PTR records
# to, plus the tools the tests use (virt-xml-validate, qemu-img, gettext, Debian's chromium, dig, curl,
# socat: the second libvirtd of the migration tests reaches the system daemon through it, tests/second_libvirtd.py).
# Installs with apt (as root) what is missing and starts what is stopped.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing packages for the tests: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
  echo "Installing: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install postgresql redis-server libvirt-daemon-system libvirt-daemon-config-nwfilter libvirt-clients \
  qemu-system-x86 qemu-utils dnsmasq-base iptables chromium fonts-dejavu-core openssh-client openssh-server \
  debootstrap e2fsprogs dosfstools mtools libxml2-utils gettext \
  pdns-server pdns-backend-sqlite3 sqlite3 bind9-dnsutils curl socat

# PostgreSQL on 127.0.0.1:5432, with the password the test URL uses.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" || true
fi
pg_isready -h 127.0.0.1 -p 5432

# Redis on 127.0.0.1:6379.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
echo "redis: $(redis-cli -h 127.0.0.1 -p 6379 ping)"

# PowerDNS (authoritative) for the reverse DNS tests (tests/powerdns_server.py): its own config and sqlite3
# database under $pdns_dir, DNS on 127.0.0.1:5354, the HTTP API on 127.0.0.1:8089 with a fixed test key.
# Debian's own pdns service (port 53, /etc/powerdns) is left as it is: nothing here uses it.
pdns_dir=/var/lib/vpspanel-test-pdns
pdns_key=vpspanel-test-pdns-key
pdns_up() {
  curl -fsS -o /dev/null -m 2 -H "X-API-Key: $pdns_key" http://127.0.0.1:8089/api/v1/servers/localhost 2>/dev/null
}
if ! pdns_up; then
  mkdir -p "$pdns_dir"
  if [ ! -s "$pdns_dir/pdns.sqlite3" ]; then
    schema=$(ls /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql \
      /usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql 2>/dev/null | head -n 1)
    sqlite3 "$pdns_dir/pdns.sqlite3.new" < "$schema"
    mv "$pdns_dir/pdns.sqlite3.new" "$pdns_dir/pdns.sqlite3"
  fi
  # No caches: a test reads back over DNS what it has just changed through the API.
  cat > "$pdns_dir/pdns.conf" <<EOF
launch=gsqlite3
gsqlite3-database=$pdns_dir/pdns.sqlite3
local-address=127.0.0.1
local-port=5354
api=yes
api-key=$pdns_key
webserver=yes
webserver-address=127.0.0.1
webserver-port=8089
webserver-allow-from=127.0.0.0/8
socket-dir=$pdns_dir
setuid=pdns
setgid=pdns
cache-ttl=0
negquery-cache-ttl=0
query-cache-ttl=0
zone-cache-refresh-interval=0
security-poll-suffix=
disable-syslog=yes
EOF
  chown -R pdns:pdns "$pdns_dir"
  pdns_server --config-dir="$pdns_dir" --daemon=yes --guardian=no >>"$pdns_dir/pdns.log" 2>&1 || true
  for _ in $(seq 30); do pdns_up && break; sleep 0.5; done
fi
if pdns_up; then echo "powerdns: up"; else echo "powerdns: not answering (see $pdns_dir/pdns.log)" >&2; exit 1; fi

# /dev/kvm as Debian's udev rule leaves it (root:kvm 0660). Without udev (containers, microVMs) it can stay
# root-only: QEMU, running as libvirt-qemu, then cannot use it, and libvirtd re-probes QEMU's capabilities
# (about 40 s) on every define because its cache says KVM was there when probed as root.
if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G /dev/kvm)" != kvm ] && [ "$(id -u)" -eq 0 ]; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

# virtlogd and libvirtd (no systemd needed).
pgrep -x virtlogd >/dev/null || virtlogd -d
if ! virsh -q -c qemu:///system version >/dev/null 2>&1; then
  pgrep -x libvirtd >/dev/null || libvirtd -d
  for _ in $(seq 30); do virsh -q -c qemu:///system version >/dev/null 2>&1 && break; sleep 1; done
fi
virsh -c qemu:///system version | tail -n 1

# The `default` storage pool of the real-libvirtd tests, as a fresh host has it: made once here, so that tests
# running side by side (make test's processes) never make or remove it under each other.
if ! virsh -q -c qemu:///system pool-info default >/dev/null 2>&1; then
  virsh -q -c qemu:///system pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
  virsh -q -c qemu:///system pool-build default >/dev/null
fi
pool_info=$(virsh -q -c qemu:///system pool-info default)
if ! grep -q '^State: *running' <<<"$pool_info"; then
  virsh -q -c qemu:///system pool-start default >/dev/null
fi
