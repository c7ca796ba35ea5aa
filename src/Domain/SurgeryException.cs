namespace SurgeryService.Domain;

/// <summary>
/// A problem with the user's input or request that the service can explain: the Api answers it with a 4xx
/// ProblemDetails whose detail is <see cref="Exception.Message"/>. The status codes follow HTTP's meanings.
/// </summary>
public class SurgeryException(string title, string message, int statusCode = 400) : Exception(message)
{
    public string Title { get; } = title;
    public int StatusCode { get; } = statusCode;
}
