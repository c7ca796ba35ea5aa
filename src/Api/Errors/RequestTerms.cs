using System.Text.Json;
using System.Text.RegularExpressions;

namespace SurgeryService.Api.Errors;

/// <summary>
/// Why a request could not be read, in the request's own terms: JSON member paths and JSON kinds of value ("a whole
/// number", "one of 'dns', 'magnitude'"), query parameter names. The framework's messages name .NET types
/// (<c>System.Nullable`1[System.Guid]</c>, <c>int page</c>), which mean nothing to a client and describe the code.
/// </summary>
public static partial class RequestTerms
{
    /// <summary>The problem with a JSON body: the member it concerns ("" for the body itself) and what is wrong with it.</summary>
    public static (string Member, string Problem) OfJson(JsonException json)
    {
        var member = json.Path is null ? "" : json.Path.TrimStart('$').TrimStart('.');
        if (ConvertedTo().Match(json.Message) is { Success: true } converted)
        {
            return (member, "must be " + Expected(converted.Groups["type"].Value));
        }
        if (Duplicate().Match(json.Message) is { Success: true } duplicate)
        {
            var name = duplicate.Groups["name"].Value;
            var path = member.Length == 0 ? name : member.EndsWith(name, StringComparison.Ordinal) ? member : member + "." + name;
            return (path, "is given more than once; give each member once");
        }
        // The reader's own messages ("'N' is an invalid start of a value.") say where, not which type.
        var message = json.Message;
        var at = message.IndexOf(" Path: ", StringComparison.Ordinal);
        if (at < 0) at = message.IndexOf(" LineNumber: ", StringComparison.Ordinal);
        if (at >= 0) message = message[..at];
        return (member, TypeName().Replace(message, "this value").TrimEnd('.', ' '));
    }

    /// <summary>The problem with a request the framework could not bind (a query value, a missing body), or null.</summary>
    public static (string? Parameter, string Problem)? OfBinding(string message)
    {
        if (BindFailed().Match(message) is { Success: true } failed)
        {
            var value = failed.Groups["value"].Value;
            if (value.Length > 40) value = value[..40] + "...";
            return (failed.Groups["name"].Value, $"must be {Expected(failed.Groups["type"].Value)}, not '{value}'");
        }
        if (MissingBody().IsMatch(message)) return (null, "the request needs a JSON body");
        if (Required().Match(message) is { Success: true } required) return (required.Groups["name"].Value, "is required");
        return null;
    }

    /// <summary>A .NET type's values as JSON or a query string writes them.</summary>
    private static string Expected(string type)
    {
        type = type.TrimEnd('?');
        if (NullableOf().Match(type) is { Success: true } nullable) type = nullable.Groups["type"].Value;
        return type switch
        {
            "System.Guid" or "Guid" => "a GUID such as 0193a0c2-4f7e-7d2a-9a51-3c8f2b7e1d40",
            "System.Int32" or "int" => $"a whole number between {int.MinValue} and {int.MaxValue}",
            "System.Int64" or "long" => $"a whole number between {long.MinValue} and {long.MaxValue}",
            "System.Double" or "double" or "System.Single" or "float" or "System.Decimal" or "decimal" => "a number",
            "System.String" or "string" => "a string",
            "System.Boolean" or "bool" => "true or false",
            _ when type.EndsWith("[]", StringComparison.Ordinal) || type.Contains("List`1", StringComparison.Ordinal) => "an array",
            _ => FindEnum(type) is { } e
                ? "one of " + string.Join(", ", Enum.GetNames(e).Select(n => $"'{JsonNamingPolicy.CamelCase.ConvertName(n)}'"))
                : "an object",
        };
    }

    private static Type? FindEnum(string fullName) => AppDomain.CurrentDomain.GetAssemblies()
        .Where(a => a.GetName().Name?.StartsWith("SurgeryService", StringComparison.Ordinal) == true)
        .Select(a => a.GetType(fullName, throwOnError: false))
        .FirstOrDefault(t => t is { IsEnum: true });

    [GeneratedRegex(@"could not be converted to (?<type>\S+?)\.? Path:")]
    private static partial Regex ConvertedTo();

    [GeneratedRegex(@"[Dd]uplicate property '(?<name>[^']*)'")]
    private static partial Regex Duplicate();

    [GeneratedRegex(@"^System\.Nullable`1\[(?<type>.+)\]$")]
    private static partial Regex NullableOf();

    [GeneratedRegex(@"'?\b(?:SurgeryService|System|Microsoft)\.[\w.`+]+(?:\[[^\]\s]*\]+)?'?")]
    private static partial Regex TypeName();

    [GeneratedRegex(@"^Failed to bind parameter ""(?<type>.+) (?<name>\w+)"" from ""(?<value>.*)""\.?$", RegexOptions.Singleline)]
    private static partial Regex BindFailed();

    [GeneratedRegex(@"(?:^Implicit body inferred for parameter|^Required parameter "".+"" was not provided from body)")]
    private static partial Regex MissingBody();

    [GeneratedRegex(@"^Required parameter "".+ (?<name>\w+)"" was not provided")]
    private static partial Regex Required();
}
