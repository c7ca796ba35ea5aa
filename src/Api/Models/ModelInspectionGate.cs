using Microsoft.Extensions.Options;

namespace SurgeryService.Api.Models;

/// <summary>
/// Bounds how many model uploads are parsed at once. Parsing needs the whole file in memory (an ONNX protobuf is read
/// as one message), about 3.5 times the file at peak, so concurrent large uploads multiply that; queued uploads wait
/// with their file already stored in PostgreSQL, not in memory. Setting <c>Api:MaxConcurrentModelInspections</c>.
/// </summary>
public sealed class ModelInspectionGate(IOptions<ApiOptions> options) : IDisposable
{
    private readonly SemaphoreSlim _slots = new(options.Value.MaxConcurrentModelInspections);

    public async Task<IDisposable> EnterAsync(CancellationToken cancellationToken)
    {
        await _slots.WaitAsync(cancellationToken);
        return new Slot(_slots);
    }

    public void Dispose() => _slots.Dispose();

    private sealed class Slot(SemaphoreSlim slots) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) slots.Release();
        }
    }
}
