namespace SurgeryService.Infrastructure.Models;

/// <summary>
/// Bounds how many model uploads are parsed at once. An ONNX graph is read without its large weights, but TorchSharp
/// weights are read whole and built into a module, several times the file at peak, and every inspection runs one
/// sample through the model, so concurrent uploads multiply that; queued uploads wait with their file already stored
/// in PostgreSQL, not in memory. The Api sets the bound from <c>Api:MaxConcurrentModelInspections</c>.
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
