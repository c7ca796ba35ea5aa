using Microsoft.EntityFrameworkCore;

namespace SurgeryService.Infrastructure.Persistence;

/// <summary>One page of an ordered query and the number of rows the whole query has.</summary>
public sealed record PageOf<T>(IReadOnlyList<T> Items, int Total);

public static class PageQuery
{
    /// <summary><paramref name="limit"/> rows after the first <paramref name="offset"/> of an ordered query, with its total.</summary>
    public static async Task<PageOf<T>> ToPageAsync<T>(this IQueryable<T> ordered, int offset, int limit, CancellationToken cancellationToken)
    {
        var total = await ordered.CountAsync(cancellationToken);
        var items = await ordered.Skip(offset).Take(limit).ToListAsync(cancellationToken);
        return new PageOf<T>(items, total);
    }
}
