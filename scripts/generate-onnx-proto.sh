#!/usr/bin/env bash
# Regenerates src/Domain/Onnx/Proto/OnnxSubset.cs from onnx_subset.proto with protoc from the Google.Protobuf.Tools
# NuGet package (same version as the Google.Protobuf runtime pinned in Directory.Packages.props).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/.*"Google.Protobuf" Version="\([^"]*\)".*/\1/p' Directory.Packages.props)
tools="${NUGET_PACKAGES:-$HOME/.nuget/packages}/google.protobuf.tools/$version/tools"
if [ ! -x "$tools/linux_x64/protoc" ]; then
    scratch=$(mktemp -d)
    cat > "$scratch/p.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><TargetFramework>net10.0</TargetFramework><ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally></PropertyGroup>
  <ItemGroup><PackageReference Include="Google.Protobuf.Tools" Version="$version" /></ItemGroup>
</Project>
XML
    dotnet restore "$scratch/p.csproj" >/dev/null
    rm -rf "$scratch"
fi
chmod +x "$tools/linux_x64/protoc"
"$tools/linux_x64/protoc" --proto_path=src/Domain/Onnx/Proto --csharp_out=src/Domain/Onnx/Proto onnx_subset.proto
