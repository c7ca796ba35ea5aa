namespace SurgeryService.Domain;

/// <summary>What kind of problem a <see cref="SurgeryException"/> reports; a host maps kinds to its own answers.</summary>
public enum ErrorKind
{
    /// <summary>The request is malformed or incomplete (a field missing, a body that cannot be read).</summary>
    Malformed,

    /// <summary>The model, data set or settings are readable as a request but cannot be used (a corrupt file, a bad value).</summary>
    BadInput,

    /// <summary>The input is valid but uses something the service cannot do (an operator, an element type, a device).</summary>
    Unsupported,

    /// <summary>Something the request names does not exist (any more).</summary>
    NotFound,

    /// <summary>The request contradicts the current state (a finished job, a model still in use).</summary>
    Conflict,

    /// <summary>The input is over a configured size limit.</summary>
    TooLarge,
}

/// <summary>
/// A problem with the user's input or request that the service can explain to them: the Api answers it with a
/// ProblemDetails whose title is <see cref="Title"/> and whose detail is <see cref="Exception.Message"/>, and picks the
/// status code from <see cref="Kind"/>.
/// </summary>
public class SurgeryException : Exception
{
    public SurgeryException(string title, string message, ErrorKind kind = ErrorKind.BadInput) : base(message)
    {
        Title = title;
        Kind = kind;
    }

    /// <summary>
    /// The former shape, which took an HTTP status code. Only src/Domain/Surgery still calls it (it is being rewritten
    /// on another branch); new code passes an <see cref="ErrorKind"/>.
    /// </summary>
    public SurgeryException(string title, string message, int statusCode) : this(title, message, statusCode switch
    {
        400 => ErrorKind.Malformed,
        404 => ErrorKind.NotFound,
        409 => ErrorKind.Conflict,
        413 => ErrorKind.TooLarge,
        422 => ErrorKind.BadInput,
        _ => throw new ArgumentOutOfRangeException(nameof(statusCode), statusCode, "no error kind answers with this status"),
    })
    {
    }

    public string Title { get; }
    public ErrorKind Kind { get; }

    /// <summary>
    /// The former status code, from <see cref="Kind"/>; only tests/Domain.Tests/Surgery still reads it (it is being
    /// rewritten on another branch). The Api maps kinds itself.
    /// </summary>
    public int StatusCode => Kind switch
    {
        ErrorKind.Malformed => 400,
        ErrorKind.NotFound => 404,
        ErrorKind.Conflict => 409,
        ErrorKind.TooLarge => 413,
        _ => 422,
    };
}
