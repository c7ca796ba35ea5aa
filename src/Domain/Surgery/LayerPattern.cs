namespace SurgeryService.Domain.Surgery;

/// <summary>
/// The glob of <see cref="LayerSettings.Pattern"/>: <c>*</c> stands for any run of characters, everything else for
/// itself (ordinal, case-sensitive). Matched without backtracking: the literal pieces between the stars are found
/// left to right, each at its first place, so a match costs at most |pattern| x |name| character comparisons whatever a
/// tenant writes (a regex built from the glob backtracked exponentially on patterns such as <c>*a*a*a*a!</c>).
/// </summary>
public static class LayerPattern
{
    public static bool IsMatch(string pattern, string name)
    {
        var pieces = pattern.Split('*');
        if (pieces.Length == 1) return string.Equals(pattern, name, StringComparison.Ordinal);

        var head = pieces[0];
        var tail = pieces[^1];
        if (head.Length + tail.Length > name.Length
            || !name.StartsWith(head, StringComparison.Ordinal) || !name.EndsWith(tail, StringComparison.Ordinal))
        {
            return false;
        }
        // Between the fixed head and tail, taking each middle piece at its leftmost place leaves the most room for the
        // rest: if any placement matches, this one does.
        var at = head.Length;
        var end = name.Length - tail.Length;
        for (var i = 1; i < pieces.Length - 1; i++)
        {
            var piece = pieces[i];
            if (piece.Length == 0) continue;
            var found = name.AsSpan(at, end - at).IndexOf(piece, StringComparison.Ordinal);
            if (found < 0) return false;
            at += found + piece.Length;
        }
        return true;
    }
}
