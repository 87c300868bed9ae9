#!/usr/bin/env bash
# Installs what binlog-server needs on a fresh Debian machine, only when missing:
#   - MariaDB 10.11 server, client, mariadb-backup and mydumper (the sandbox primary,
#     the tests' primaries, base backups);
#   - libclang-dev and librocksdb-dev (the RocksDB index is built against Debian's
#     librocksdb; bindgen needs libclang);
#   - PostgreSQL (Debian's postgresql: initdb, postgres, psql): the fleet's catalog in
#     the tests, started by the harness as the unprivileged postgres user;
#   - moto[server] from PyPI (pip): a real S3-compatible server for the backup tests;
#   - mysql-replication from PyPI (pip): python-mysql-replication, a client the fake
#     primary is tested with;
#   - a Rust toolchain is assumed (rustup); cargo-nextest is not required.
# Safe to run again: it does nothing when everything is present.
set -euo pipefail

need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
command -v mariadb-backup >/dev/null 2>&1 || need+=(mariadb-backup)
command -v mydumper >/dev/null 2>&1 || need+=(mydumper)
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
dpkg -s librocksdb-dev >/dev/null 2>&1 || need+=(librocksdb-dev)
dpkg -s pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi

if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import pymysqlreplication' >/dev/null 2>&1; then
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
fi

install_moto() {
  # moto's standalone S3 server: the S3-compatible store of the base-backup tests.
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "setup: installing moto[server] (pip)"
    python3 -m pip install --quiet 'moto[server]==5.2.1' \
      || python3 -m pip install --quiet --break-system-packages 'moto[server]==5.2.1'
    hash -r
  fi
}

install_pyrepl() {
  # python-mysql-replication (and PyMySQL): a stock CDC client of the clients suite.
  if ! python3 -c 'import pymysqlreplication' >/dev/null 2>&1; then
    echo "setup: installing mysql-replication (pip)"
    python3 -m pip install --quiet 'mysql-replication==1.0.17' \
      || python3 -m pip install --quiet --break-system-packages 'mysql-replication==1.0.17'
  fi
}

if [ ${#need[@]} -eq 0 ]; then
  install_moto
  install_pyrepl
  echo "setup: everything is installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to install: ${need[*]}" >&2; exit 1; }
  SUDO="sudo"
fi

echo "setup: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# The packaged service is not needed: binlog-server and its tests start their own
# mariadbd in temporary directories. A policy-rc.d that exists only for the duration of
# the install keeps the package from starting a system-wide server on port 3306.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  made_policy=1
fi
trap '[ $made_policy -eq 1 ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
install_moto
install_pyrepl
echo "setup: done"
