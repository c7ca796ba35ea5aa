#!/bin/bash
# Container health check of the Api: GET /health/ready (database reachable, migrations applied) must answer 200.
# Plain bash (/dev/tcp), since the .NET runtime images ship neither curl nor wget.
set -eu
port="${HEALTHCHECK_PORT:-8080}"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
read -r -t 5 _ status _ <&3
[ "$status" = 200 ]
