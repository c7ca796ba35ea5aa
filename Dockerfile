# One image for both processes: `api` (default) or `worker` as the command.
# Build arguments (defaults: the official images and the CPU build of TorchSharp):
#   SDK_IMAGE, RUNTIME_IMAGE   base images (docker-compose.local.yml sets locally made stand-ins)
#   TORCHSHARP_PACKAGE         TorchSharp-cpu, or TorchSharp-cuda-linux for a GPU worker image
ARG SDK_IMAGE=mcr.microsoft.com/dotnet/sdk:10.0
ARG RUNTIME_IMAGE=mcr.microsoft.com/dotnet/aspnet:10.0

# Only the project files, so the restore layer below stays cached until a project or package changes.
# Copying src/ and deleting everything else keeps every project, including ones added later.
FROM ${SDK_IMAGE} AS projects
WORKDIR /src
COPY src/ src/
RUN find src -type f ! -name '*.csproj' -delete && find src -type d -empty -delete

FROM ${SDK_IMAGE} AS build
ARG TORCHSHARP_PACKAGE=TorchSharp-cpu
WORKDIR /src
COPY global.json Directory.Build.props Directory.Build.targets Directory.Packages.props ./
COPY --from=projects /src/src/ src/
RUN dotnet restore src/Api/Api.csproj -p:TorchSharpPackage=${TORCHSHARP_PACKAGE} \
 && dotnet restore src/Worker/Worker.csproj -p:TorchSharpPackage=${TORCHSHARP_PACKAGE}
COPY src/ src/
RUN dotnet publish src/Api/Api.csproj -c Release --no-restore -p:TorchSharpPackage=${TORCHSHARP_PACKAGE} -o /app/api \
 && dotnet publish src/Worker/Worker.csproj -c Release --no-restore -p:TorchSharpPackage=${TORCHSHARP_PACKAGE} -o /app/worker
# Both processes carry LibTorch and ONNX Runtime (about 1 GB). The Worker's files that equal the Api's become
# symbolic links to them, so the image holds them once (COPY does not keep hard links).
RUN cd /app/worker && find . -type f -exec sh -c \
      'for f; do if cmp -s "$f" "/app/api/$f"; then ln -sf "/app/api/${f#./}" "$f"; fi; done' sh {} + \
 && test -L /app/worker/runtimes/linux-x64/native/libLibTorchSharp.so

FROM ${RUNTIME_IMAGE} AS runtime
WORKDIR /app
COPY docker/entrypoint.sh docker/healthcheck.sh /app/
RUN chmod +x /app/entrypoint.sh /app/healthcheck.sh
COPY --from=build /app/ /app/
ENV ASPNETCORE_URLS=http://0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/app/entrypoint.sh"]
CMD ["api"]
