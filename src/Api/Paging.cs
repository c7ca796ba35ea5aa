using Microsoft.AspNetCore.Http.HttpResults;
using SurgeryService.Infrastructure.Persistence;

namespace SurgeryService.Api;

/// <summary>
/// One page of a list: the answer of <c>GET /api/models</c>, <c>/api/datasets</c> and <c>/api/jobs</c>. Ask for the next
/// page with <c>page</c> + 1 while <c>page * pageSize &lt; totalCount</c>.
/// </summary>
public sealed record ListPage<T>
{
    /// <summary>The rows of this page in the list's order: at most <c>pageSize</c>, fewer on the last page, none past it.</summary>
    public required IReadOnlyList<T> Items { get; init; }

    /// <summary>The number of this page, from 1 (query parameter <c>page</c>, default 1).</summary>
    public required int Page { get; init; }

    /// <summary>Rows per page, 1 to 200 (query parameter <c>pageSize</c>, default 20).</summary>
    public required int PageSize { get; init; }

    /// <summary>Rows in the whole list (with the filters of the request), on every page.</summary>
    public required int TotalCount { get; init; }
}

/// <summary>The <c>page</c> and <c>pageSize</c> query parameters of every list endpoint.</summary>
public static class Paging
{
    public const int DefaultPageSize = 20, MaxPageSize = 200;

    /// <summary>Parameter name -> problem; empty when the page can be fetched (its offset fits an int).</summary>
    public static Dictionary<string, string[]> Errors(int page, int pageSize)
    {
        var errors = new Dictionary<string, string[]>();
        if (page < 1) errors["page"] = ["must be >= 1"];
        if (pageSize is < 1 or > MaxPageSize) errors["pageSize"] = [$"must be between 1 and {MaxPageSize}"];
        else if ((long)(page - 1) * pageSize > int.MaxValue) errors["page"] = [$"must be at most {int.MaxValue / pageSize + 1} with pageSize {pageSize}"];
        return errors;
    }

    public static int Skip(int page, int pageSize) => (page - 1) * pageSize;

    /// <summary>The response of a list endpoint: <paramref name="rows"/> mapped to their response records.</summary>
    public static Ok<ListPage<TResponse>> Ok<TEntry, TResponse>(PageOf<TEntry> rows, Func<TEntry, TResponse> map, int page, int pageSize) =>
        TypedResults.Ok(new ListPage<TResponse>
        {
            Items = rows.Items.Select(map).ToList(), Page = page, PageSize = pageSize, TotalCount = rows.Total,
        });
}
