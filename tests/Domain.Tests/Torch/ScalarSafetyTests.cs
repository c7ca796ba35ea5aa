using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Operations;
using Xunit.Abstractions;

namespace SurgeryService.Domain.Tests.Torch;

/// <summary>
/// No code in src/Domain leaves a TorchSharp Scalar to its finalizer (Domain/Torch/Scalars.cs says why: the finalizer
/// may free it while LibTorch reads it, and a long job crashes). Two sources of such Scalars are found: implicit
/// conversions to Scalar in our code, read with Roslyn's semantic model, and TorchSharp methods that make one inside
/// (<c>Tensor + Tensor</c>, <c>square()</c>, <c>leaky_relu</c>, ...), found by reading TorchSharp.dll's IL for calls of
/// Scalar's implicit conversion, directly or through other TorchSharp methods.
/// </summary>
public class ScalarSafetyTests(ITestOutputHelper output)
{
    [Fact]
    public void NoCodeInTheDomainLeavesAScalarToItsFinalizer()
    {
        var unsafeMethods = TorchSharpMethodsMakingScalars();
        Assert.Contains("Tensor.op_Addition(Tensor, Tensor)", unsafeMethods); // the scan finds what is known
        Assert.DoesNotContain("Tensor.op_Multiply(Tensor, Tensor)", unsafeMethods);

        var (compilation, trees) = CompileDomain();
        var findings = new List<string>();
        var torchCalls = 0;
        foreach (var tree in trees)
        {
            var model = compilation.GetSemanticModel(tree);
            var operations = tree.GetRoot().DescendantNodes().Select(n => model.GetOperation(n))
                .Where(o => o is { Parent: null }).SelectMany(o => o!.DescendantsAndSelf()).Distinct();
            foreach (var operation in operations)
            {
                var method = operation switch
                {
                    IInvocationOperation i => i.TargetMethod,
                    IBinaryOperation { OperatorMethod: { } m } => m,
                    _ => null,
                };
                if (method?.ContainingAssembly?.Name == "TorchSharp") torchCalls++;
                var problem = operation switch
                {
                    IConversionOperation { OperatorMethod: { } c } when c.ContainingType.Name == "Scalar" && operation.IsImplicit =>
                        $"implicit conversion of '{operation.Syntax}' to Scalar",
                    _ when method?.ContainingAssembly?.Name == "TorchSharp" && unsafeMethods.Contains(Key(method)) =>
                        $"{Key(method)} makes a Scalar inside",
                    _ => null,
                };
                if (problem is null) continue;
                var line = tree.GetLineSpan(operation.Syntax.Span).StartLinePosition.Line + 1;
                findings.Add($"{Path.GetFileName(tree.FilePath)}:{line}: {problem}");
            }
        }
        output.WriteLine($"{trees.Count} files, {torchCalls} TorchSharp calls, {unsafeMethods.Count} TorchSharp methods that make Scalars");
        Assert.True(torchCalls > 500, $"only {torchCalls} TorchSharp calls were resolved: the compilation misses references");
        Assert.True(findings.Count == 0, "use Domain/Torch/Scalars.cs instead:\n" + string.Join("\n", findings.Distinct()));
    }

    private static string Key(IMethodSymbol m) =>
        $"{m.ContainingType.Name}.{m.MetadataName}({string.Join(", ", m.Parameters.Select(p => p.Type.MetadataName))})";

    private static (CSharpCompilation, IReadOnlyList<SyntaxTree>) CompileDomain()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "SurgeryService.sln"))) root = root.Parent;
        Assert.NotNull(root);
        var source = Path.Combine(root.FullName, "src", "Domain");
        var options = new CSharpParseOptions(LanguageVersion.Preview);
        var trees = Directory.GetFiles(source, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .Select(f => CSharpSyntaxTree.ParseText(File.ReadAllText(f), options, f))
            .ToList();
        // The SDK's implicit usings (Directory.Build.props enables them).
        var usings = CSharpSyntaxTree.ParseText(string.Join("\n", new[] { "System", "System.Collections.Generic", "System.IO", "System.Linq",
            "System.Net.Http", "System.Threading", "System.Threading.Tasks" }.Select(n => $"global using global::{n};")), options);
        var framework = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        var packages = Directory.GetFiles(AppContext.BaseDirectory, "*.dll").Where(f => !Path.GetFileName(f).StartsWith("SurgeryService.", StringComparison.Ordinal));
        var references = framework.Concat(packages).GroupBy(Path.GetFileName).Select(g => g.First())
            .Where(IsManaged).Select(f => MetadataReference.CreateFromFile(f)).ToList();
        var compilation = CSharpCompilation.Create("Domain", [.. trees, usings], references,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, allowUnsafe: true, nullableContextOptions: NullableContextOptions.Enable));
        return (compilation, trees);
    }

    private static bool IsManaged(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            using var pe = new PEReader(stream);
            return pe.HasMetadata;
        }
        catch (BadImageFormatException)
        {
            return false;
        }
    }

    /// <summary>TorchSharp methods whose IL calls Scalar's implicit conversion, directly or through other TorchSharp methods.</summary>
    private static HashSet<string> TorchSharpMethodsMakingScalars()
    {
        using var stream = File.OpenRead(typeof(TorchSharp.torch).Assembly.Location);
        using var pe = new PEReader(stream);
        var md = pe.GetMetadataReader();
        var calls = new Dictionary<MethodDefinitionHandle, List<MethodDefinitionHandle>>();
        var making = new HashSet<MethodDefinitionHandle>();
        foreach (var typeHandle in md.TypeDefinitions)
        {
            var type = md.GetTypeDefinition(typeHandle);
            if (md.GetString(type.Name) == "Scalar") continue;
            foreach (var methodHandle in type.GetMethods())
            {
                var method = md.GetMethodDefinition(methodHandle);
                if (method.RelativeVirtualAddress == 0) continue;
                var callees = calls[methodHandle] = [];
                foreach (var target in CallTargets(pe.GetMethodBody(method.RelativeVirtualAddress).GetILReader()))
                {
                    if (IsImplicitScalar(md, target)) making.Add(methodHandle);
                    else if (target.Kind == HandleKind.MethodDefinition) callees.Add((MethodDefinitionHandle)target);
                }
            }
        }
        for (var changed = true; changed;)
        {
            changed = false;
            foreach (var (caller, callees) in calls)
            {
                if (!making.Contains(caller) && callees.Any(making.Contains)) changed = making.Add(caller) | changed;
            }
        }
        var names = new SignatureNames(md);
        return making.Select(h =>
        {
            var m = md.GetMethodDefinition(h);
            var owner = md.GetString(md.GetTypeDefinition(m.GetDeclaringType()).Name);
            return $"{owner}.{md.GetString(m.Name)}({string.Join(", ", m.DecodeSignature(names, null).ParameterTypes)})";
        }).ToHashSet();
    }

    private static bool IsImplicitScalar(MetadataReader md, EntityHandle target)
    {
        if (target.Kind != HandleKind.MethodDefinition) return false;
        var m = md.GetMethodDefinition((MethodDefinitionHandle)target);
        var owner = md.GetString(md.GetTypeDefinition(m.GetDeclaringType()).Name);
        return owner == "Scalar" && md.GetString(m.Name) == "op_Implicit";
    }

    /// <summary>The method tokens of every call, callvirt and newobj in an IL body.</summary>
    private static IEnumerable<EntityHandle> CallTargets(BlobReader il)
    {
        var targets = new List<EntityHandle>();
        while (il.RemainingBytes > 0)
        {
            var first = il.ReadByte();
            var code = first == 0xFE ? (ILOpCode)(0xFE00 | il.ReadByte()) : (ILOpCode)first;
            if (code is ILOpCode.Call or ILOpCode.Callvirt or ILOpCode.Newobj)
            {
                targets.Add(MetadataTokens.EntityHandle(il.ReadInt32()));
                continue;
            }
            if (code == ILOpCode.Switch)
            {
                il.Offset += 4 * il.ReadInt32();
                continue;
            }
            il.Offset += OperandSize(code);
        }
        return targets;
    }

    private static int OperandSize(ILOpCode code) => code switch
    {
        ILOpCode.Ldarg_s or ILOpCode.Ldarga_s or ILOpCode.Starg_s or ILOpCode.Ldloc_s or ILOpCode.Ldloca_s or ILOpCode.Stloc_s
            or ILOpCode.Ldc_i4_s or ILOpCode.Br_s or ILOpCode.Brfalse_s or ILOpCode.Brtrue_s or ILOpCode.Beq_s or ILOpCode.Bge_s
            or ILOpCode.Bgt_s or ILOpCode.Ble_s or ILOpCode.Blt_s or ILOpCode.Bne_un_s or ILOpCode.Bge_un_s or ILOpCode.Bgt_un_s
            or ILOpCode.Ble_un_s or ILOpCode.Blt_un_s or ILOpCode.Leave_s or ILOpCode.Unaligned => 1,
        ILOpCode.Ldarg or ILOpCode.Ldarga or ILOpCode.Starg or ILOpCode.Ldloc or ILOpCode.Ldloca or ILOpCode.Stloc => 2,
        ILOpCode.Ldc_i8 or ILOpCode.Ldc_r8 => 8,
        ILOpCode.Ldc_i4 or ILOpCode.Ldc_r4 or ILOpCode.Br or ILOpCode.Brfalse or ILOpCode.Brtrue or ILOpCode.Beq or ILOpCode.Bge
            or ILOpCode.Bgt or ILOpCode.Ble or ILOpCode.Blt or ILOpCode.Bne_un or ILOpCode.Bge_un or ILOpCode.Bgt_un or ILOpCode.Ble_un
            or ILOpCode.Blt_un or ILOpCode.Leave or ILOpCode.Jmp or ILOpCode.Calli or ILOpCode.Ldstr or ILOpCode.Ldtoken or ILOpCode.Ldfld
            or ILOpCode.Ldflda or ILOpCode.Stfld or ILOpCode.Ldsfld or ILOpCode.Ldsflda or ILOpCode.Stsfld or ILOpCode.Ldftn
            or ILOpCode.Ldvirtftn or ILOpCode.Box or ILOpCode.Unbox or ILOpCode.Unbox_any or ILOpCode.Castclass or ILOpCode.Isinst
            or ILOpCode.Newarr or ILOpCode.Ldelema or ILOpCode.Ldelem or ILOpCode.Stelem or ILOpCode.Ldobj or ILOpCode.Stobj
            or ILOpCode.Cpobj or ILOpCode.Initobj or ILOpCode.Sizeof or ILOpCode.Mkrefany or ILOpCode.Refanyval or ILOpCode.Constrained => 4,
        _ => 0,
    };

    /// <summary>Parameter types by their metadata names (Tensor, Double, Nullable`1), as Roslyn's MetadataName gives them.</summary>
    private sealed class SignatureNames(MetadataReader md) : ISignatureTypeProvider<string, object?>
    {
        public string GetArrayType(string elementType, ArrayShape shape) => elementType + "[,]";
        public string GetByReferenceType(string elementType) => elementType;
        public string GetFunctionPointerType(MethodSignature<string> signature) => "fnptr";
        public string GetGenericInstantiation(string genericType, System.Collections.Immutable.ImmutableArray<string> typeArguments) => genericType;
        public string GetGenericMethodParameter(object? context, int index) => "M" + index;
        public string GetGenericTypeParameter(object? context, int index) => "T" + index;
        public string GetModifiedType(string modifier, string unmodifiedType, bool isRequired) => unmodifiedType;
        public string GetPinnedType(string elementType) => elementType;
        public string GetPointerType(string elementType) => elementType + "*";
        public string GetPrimitiveType(PrimitiveTypeCode typeCode) => typeCode switch
        {
            PrimitiveTypeCode.Boolean => "Boolean", PrimitiveTypeCode.Int32 => "Int32", PrimitiveTypeCode.Int64 => "Int64",
            PrimitiveTypeCode.Single => "Single", PrimitiveTypeCode.Double => "Double", PrimitiveTypeCode.String => "String",
            _ => typeCode.ToString(),
        };
        public string GetSZArrayType(string elementType) => elementType + "[]";
        public string GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind) => md.GetString(md.GetTypeDefinition(handle).Name);
        public string GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind) => md.GetString(md.GetTypeReference(handle).Name);
        public string GetTypeFromSpecification(MetadataReader reader, object? genericContext, TypeSpecificationHandle handle, byte rawTypeKind) => "spec";
    }
}
