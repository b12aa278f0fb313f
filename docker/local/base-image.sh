#!/usr/bin/env bash
# Make a Debian base image locally, for machines that reach Debian's packages but
# no container registry (CI's). Usage:
#   docker/local/base-image.sh NAME [EXTRA_PACKAGE...]
# NAME gets a Debian bookworm minbase root filesystem (debootstrap) with Python 3.11,
# python3-venv, the CA certificates the host trusts (its own local ones included, so
# pip reaches PyPI through the same TLS path as the host) and EXTRA_PACKAGEs.
# The root filesystem is cached as a tarball under $STREAMFLOW_CACHE (default
# ~/.cache/streamflow/containers) keyed by the package list, the mirror, this script
# and the host's CA certificates: a warm run only imports it (seconds), a cold one
# takes one to four minutes (debootstrap, as fast as the mirror and the machine). An image NAME that already exists with the same key is kept.
set -euo pipefail

name=${1:?usage: base-image.sh NAME [EXTRA_PACKAGE...]}
shift
packages="python3,python3-venv,ca-certificates${*:+,$(IFS=,; echo "$*")}"
suite=bookworm
mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit} /^deb / {print $2; exit}' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
cache=${STREAMFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamflow/containers}
key=$( { echo "$suite $packages $mirror"; cat "$0"; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true; } \
    | sha256sum | cut -c1-16)
slug=$(printf '%s' "$name" | tr -c 'A-Za-z0-9.-' '_')
tarball="$cache/$slug-$key.tar"

if [ "$(podman image inspect --format '{{index .Labels "streamflow.base.key"}}' "$name" 2>/dev/null)" = "$key" ]; then
    echo "base image $name is up to date ($key)"
    exit 0
fi

if [ ! -s "$tarball" ]; then
    mkdir -p "$cache"
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    echo "debootstrap $suite ($packages) from $mirror"
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log"; exit 1; }
    rm -f "$rootfs.log"
    # The host's local CA certificates, so HTTPS from inside behaves as on the host.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        # (a Java keystore hook may fail inside the chroot: the PEM bundle is what is used)
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || true
        for crt in /usr/local/share/ca-certificates/*.crt; do
            grep -qF "$(sed -n 2p "$crt")" "$rootfs/etc/ssl/certs/ca-certificates.crt" \
                || { echo "$crt is missing from the image's CA bundle"; exit 1; }
        done
    fi
    # What a slim image does not keep: apt lists, docs, man pages, locales but C.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
    tar -C "$rootfs" -cf "$tarball.part" .
    rm -f "$cache/$slug"-*.tar   # an older key's
    mv "$tarball.part" "$tarball"
fi

# The CA bundle for pip and Python's ssl; the key, to tell an up-to-date image.
podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL streamflow.base.key=$key" \
    --change 'CMD ["python3"]' \
    "$tarball" "$name" >"$cache/import.log" 2>&1 || { cat "$cache/import.log"; exit 1; }
echo "base image $name imported ($key)"
