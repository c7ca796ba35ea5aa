using System.Globalization;

namespace SurgeryService.Domain;

/// <summary>
/// Checks for text a client sends that ends up in a PostgreSQL column or jsonb document: PostgreSQL refuses NUL
/// characters (22021, 22P05) and a varchar refuses what is longer than its limit, so both are refused here first, with
/// the field named, instead of surfacing as a database error. Invisible formatting characters (Unicode category Cf:
/// bidirectional overrides such as U+202E, zero-width spaces and joiners, the byte order mark) are refused too: stored
/// names reach other people's screens and download file names, where they can make <c>model\u202Exnpm.onnx</c> read
/// as another name.
/// </summary>
public static class StoredText
{
    /// <summary>What is wrong with <paramref name="value"/> as stored text, or null when nothing is.</summary>
    public static string? Problem(string value, int maxLength)
    {
        if (value.Length > maxLength) return $"is longer than {maxLength} characters";
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsControl(c)) return $"contains the control character U+{(int)c:X4}";
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                var pair = char.ConvertToUtf32(c, value[i + 1]);
                if (CharUnicodeInfo.GetUnicodeCategory(pair) == UnicodeCategory.Format) return Invisible(pair);
                i++;
                continue;
            }
            if (char.IsSurrogate(c)) return "is not valid Unicode (it holds half of a surrogate pair)";
            if (char.GetUnicodeCategory(c) == UnicodeCategory.Format) return Invisible(c);
        }
        return null;
    }

    private static string Invisible(int codePoint) =>
        $"contains the invisible formatting character U+{codePoint:X4} (text direction overrides, zero-width and other invisible characters are refused)";

    /// <summary>The first <paramref name="maxLength"/> characters at most, never cutting a surrogate pair in two.</summary>
    public static string Truncate(string value, int maxLength)
    {
        if (value.Length <= maxLength) return value;
        var length = char.IsHighSurrogate(value[maxLength - 1]) ? maxLength - 1 : maxLength;
        return value[..length];
    }
}
