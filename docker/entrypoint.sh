#!/bin/sh
# Chooses the process this container runs: `api` or `worker`.
set -e
case "${1:-api}" in
  api)    cd /app/api && exec dotnet SurgeryService.Api.dll ;;
  worker) cd /app/worker && exec dotnet SurgeryService.Worker.dll ;;
  *)      exec "$@" ;;
esac
