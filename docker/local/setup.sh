#!/usr/bin/env bash
# Containers on a Debian machine that reaches Debian's packages but no container
# registry (CI's): podman from Debian, run through docker/local/containers.conf,
# and the local base image the tests build docker/Dockerfile on.
#   bash docker/local/setup.sh          # then: CONTAINERS_CONF=$PWD/docker/local/containers.conf podman ...
# Cold (packages + debootstrap): about 2 minutes; warm (all installed, base cached): seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."

# dnsname: containers of one compose project find each other by service name (kafka:9092)
packages=(podman runc catatonit debootstrap fuse-overlayfs slirp4netns uidmap
          golang-github-containernetworking-plugin-dnsname)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/local/containers.conf}
podman --version
podman info --format 'runtime {{.Host.OCIRuntime.Name}}, storage {{.Store.GraphDriverName}}, cgroups {{.Host.CgroupsVersion}}'
docker/local/base-image.sh localhost/streamflow-base:bookworm
