# Stand-in for mcr.microsoft.com/dotnet/aspnet:10.0: the .NET and ASP.NET Core runtimes of the machine that builds
# it (no SDK), on local/debian.
FROM local/debian:bookworm
COPY dotnet/dotnet /usr/share/dotnet/dotnet
COPY dotnet/host/ /usr/share/dotnet/host/
COPY dotnet/shared/ /usr/share/dotnet/shared/
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet
ENV DOTNET_RUNNING_IN_CONTAINER=true APP_UID=1654
