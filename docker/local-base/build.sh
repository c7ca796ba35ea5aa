#!/usr/bin/env bash
# Makes local stand-ins for the official base images, for a Docker engine that cannot pull them (no registry):
#   local/debian:bookworm       debootstrap of Debian 12 (minbase + the .NET runtime's libraries) and this machine's CA
#                               certificates, so HTTPS through a proxy with its own CA works inside builds
#   local/dotnet-sdk:10.0       this machine's .NET SDK (the folder of `dotnet` on PATH)
#   local/dotnet-aspnet:10.0    the .NET and ASP.NET Core runtimes from the same folder
#   local/postgres:15           Debian's PostgreSQL 15 with an entrypoint like the official image's
# docker-compose.local.yml points the project's images at them. An image that exists already is kept.
# Needs root (debootstrap), debootstrap, and an apt source for Debian (the machine's, or DEBIAN_MIRROR).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# The classic builder (no BuildKit here) warns that it is deprecated on every build: show its output on failure only.
build() { DOCKER_BUILDKIT=0 docker build -q "$@" > "$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }; }
has_image() { docker image inspect "$1" >/dev/null 2>&1; }

work="$(mktemp -d)"
# debootstrap mounts /proc and /sys inside the root file system while it works: never delete through them.
trap 'umount -R "$work/rootfs/proc" "$work/rootfs/sys" 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT

if ! has_image local/debian:bookworm; then
  if ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
  fi
  log "debootstrap Debian 12 (minbase) from $MIRROR"
  debootstrap --variant=minbase \
    --include=ca-certificates,libicu72,libssl3,zlib1g,tzdata,libgssapi-krb5-2 \
    bookworm "$work/rootfs" "$MIRROR" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # The machine's extra CA certificates (a proxy's own CA, for one) join the image's trust store.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
    chroot "$work/rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" -c . | docker import --change 'CMD ["bash"]' - local/debian:bookworm >/dev/null
  rm -rf --one-file-system "$work/rootfs"
  log "made local/debian:bookworm"
fi

dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
if ! has_image local/dotnet-sdk:10.0 || ! has_image local/dotnet-aspnet:10.0; then
  # Hard links: the build context costs no copy (falls back to a copy across file systems).
  mkdir -p "$work/dotnet-context"
  cp -al "$dotnet_root" "$work/dotnet-context/dotnet" 2>/dev/null || cp -a "$dotnet_root" "$work/dotnet-context/dotnet"
fi
if ! has_image local/dotnet-sdk:10.0; then
  log "building local/dotnet-sdk:10.0 from $dotnet_root"
  build -f "$HERE/sdk.Dockerfile" -t local/dotnet-sdk:10.0 "$work/dotnet-context"
fi
if ! has_image local/dotnet-aspnet:10.0; then
  log "building local/dotnet-aspnet:10.0 from $dotnet_root"
  printf 'dotnet/sdk\ndotnet/packs\ndotnet/sdk-manifests\ndotnet/templates\n' > "$work/dotnet-context/.dockerignore"
  build -f "$HERE/aspnet.Dockerfile" -t local/dotnet-aspnet:10.0 "$work/dotnet-context"
fi
if ! has_image local/postgres:15; then
  log "building local/postgres:15"
  build -f "$HERE/postgres.Dockerfile" -t local/postgres:15 "$HERE"
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^local/' >&2
