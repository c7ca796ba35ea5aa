# One image for both processes: `api` (default) or `worker` as the command.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Build.targets Directory.Packages.props SurgeryService.sln ./
COPY src/Domain/Domain.csproj src/Domain/
COPY src/Infrastructure/Infrastructure.csproj src/Infrastructure/
COPY src/Api/Api.csproj src/Api/
COPY src/Worker/Worker.csproj src/Worker/
RUN dotnet restore src/Api/Api.csproj && dotnet restore src/Worker/Worker.csproj
COPY src/ src/
RUN dotnet publish src/Api/Api.csproj -c Release --no-restore -o /app/api \
 && dotnet publish src/Worker/Worker.csproj -c Release --no-restore -o /app/worker

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app/api /app/api
COPY --from=build /app/worker /app/worker
COPY docker/entrypoint.sh /app/entrypoint.sh
RUN chmod +x /app/entrypoint.sh
ENV ASPNETCORE_URLS=http://0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/app/entrypoint.sh"]
CMD ["api"]
