namespace SurgeryService.Domain;

/// <summary>
/// Checks for text a client sends that ends up in a PostgreSQL column or jsonb document: PostgreSQL refuses NUL
/// characters (22021, 22P05) and a varchar refuses what is longer than its limit, so both are refused here first, with
/// the field named, instead of surfacing as a database error.
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
                i++;
                continue;
            }
            if (char.IsSurrogate(c)) return "is not valid Unicode (it holds half of a surrogate pair)";
        }
        return null;
    }

    /// <summary>The first <paramref name="maxLength"/> characters at most, never cutting a surrogate pair in two.</summary>
    public static string Truncate(string value, int maxLength)
    {
        if (value.Length <= maxLength) return value;
        var length = char.IsHighSurrogate(value[maxLength - 1]) ? maxLength - 1 : maxLength;
        return value[..length];
    }
}
