using System.Diagnostics;
using SurgeryService.Domain.Torch;

namespace SurgeryService.Api.Models;

/// <summary>
/// Loads LibTorch when the Api starts, in the background, instead of during the first model upload, whose inspection
/// runs the graph once to measure its activations per sample (<c>ModelFormats.Inspect</c>). Loading it takes about
/// 135 MB of resident memory that stays for the life of the process (its code and thread pools); loaded at start, that
/// memory is part of the Api's steady state from its first minute, an upload adds only what the inspection itself
/// takes, and the first upload does not wait for the load (docs/operations.md#job-memory).
/// </summary>
public sealed class LibTorchPreload(ILogger<LibTorchPreload> logger) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Run(() =>
    {
        var clock = Stopwatch.StartNew();
        try
        {
            var convolutions = ConvolutionCheck.Describe(ConvolutionCheck.Ensure());
            logger.LogInformation("LibTorch loaded in {Seconds:F1} s, for measuring uploaded models; convolutions: {Convolutions}",
                clock.Elapsed.TotalSeconds, convolutions);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Not fatal here: an upload that needs LibTorch then fails with the same error, named in its answer.
            logger.LogError(e, "LibTorch could not be loaded; model uploads will fail to be inspected");
        }
    }, stoppingToken);
}
