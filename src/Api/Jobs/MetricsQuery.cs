using Microsoft.Net.Http.Headers;

namespace SurgeryService.Api.Jobs;

/// <summary>How <c>GET /api/jobs/{id}/metrics</c> reads its request: the format asked for and the next page's cursor.</summary>
public static class MetricsQuery
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");

    /// <summary>
    /// CSV when <c>format=csv</c>, or, without a format, when the Accept header prefers <c>text/csv</c>: its quality is
    /// above zero and at least that of JSON (<c>application/json</c>, <c>application/*</c> or <c>*/*</c>). Anything else,
    /// <c>text/csv;q=0</c> included (RFC 9110: "not acceptable"), gets JSON.
    /// </summary>
    public static bool WantsCsv(HttpRequest request, string? format)
    {
        if (format is not null) return format == "csv";
        double csv = 0, json = 0;
        foreach (var accept in request.GetTypedHeaders().Accept)
        {
            var quality = accept.Quality ?? 1;
            if (accept.MediaType.Equals("text/csv", StringComparison.OrdinalIgnoreCase)) csv = Math.Max(csv, quality);
            else if (Json.IsSubsetOf(accept)) json = Math.Max(json, quality);
        }
        return csv > 0 && csv >= json;
    }

    /// <summary>
    /// Where the next page starts when this one is full, or null: none when the page is short, nor when the next
    /// iteration would lie past the largest one a job can have (the sum overflowed an int).
    /// </summary>
    public static int? NextFrom(IReadOnlyList<MetricPoint> page, int limit, int stride)
    {
        if (page.Count < limit || page.Count == 0) return null;
        var next = (long)page[^1].Iteration + stride;
        return next <= int.MaxValue ? (int)next : null;
    }
}
