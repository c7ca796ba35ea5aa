namespace SurgeryService.Infrastructure.Models;

/// <summary>
/// Bounds how many model uploads are parsed at once. Parsing needs the whole file in memory (an ONNX protobuf is read
/// as one message), about 3.5 times the file at peak, so concurrent large uploads multiply that; queued uploads wait
/// with their file already stored in PostgreSQL, not in memory. The Api sets the bound from <c>Api:MaxConcurrentModelInspections</c>.
/// </summary>
public sealed class ModelInspectionGate(int slots) : IDisposable
{
    private readonly SemaphoreSlim _slots = new(slots);

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
