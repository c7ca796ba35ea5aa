namespace SurgeryService.Domain;

/// <summary>
/// Lengths of the text columns that hold what users and the engine write, in one place: the EF configurations declare
/// the columns with them, and the validators and raw writers check or cut text to them (see <see cref="StoredText"/>).
/// </summary>
public static class ColumnLimits
{
    /// <summary>A tenant id (a configured name).</summary>
    public const int TenantId = 64;

    /// <summary>Names: of models and datasets, of uploaded files, of layers and layer patterns.</summary>
    public const int Name = 256;

    /// <summary>An uploaded file's Content-Type.</summary>
    public const int ContentType = 128;

    /// <summary>Messages: a job's error, its log events.</summary>
    public const int Message = 4000;

    /// <summary>A SHA-256 in lower-case hex.</summary>
    public const int Sha256Hex = 64;
}
