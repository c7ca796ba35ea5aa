namespace SurgeryService.Api;

/// <summary>The <c>page</c> and <c>pageSize</c> query parameters of every list endpoint.</summary>
public static class Paging
{
    public const int MaxPageSize = 200;

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

    /// <summary>Lists that stay JSON arrays tell the total in a header, so a client knows there is a next page.</summary>
    public const string TotalCountHeader = "X-Total-Count";
}
