namespace SurgeryService.Api;

/// <summary>Enum values in query strings, by member name only, as the JSON bodies take them.</summary>
public static class EnumNames
{
    /// <summary>
    /// The member named <paramref name="text"/> (any case). A number is no name: <see cref="Enum.TryParse{TEnum}(string, bool, out TEnum)"/>
    /// would take <c>1</c> for whichever member has that value.
    /// </summary>
    public static bool TryParse<T>(string text, out T value) where T : struct, Enum
    {
        foreach (var name in Enum.GetNames<T>())
        {
            if (string.Equals(name, text, StringComparison.OrdinalIgnoreCase))
            {
                value = Enum.Parse<T>(name);
                return true;
            }
        }
        value = default;
        return false;
    }
}
