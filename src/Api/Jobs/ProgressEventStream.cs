using System.Net.ServerSentEvents;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace SurgeryService.Api.Jobs;

/// <summary>
/// A Server-Sent Events stream of a job's progress in which a null item becomes a <c>: keep-alive</c> comment: a queued
/// job can be silent for minutes, and proxies cut a connection that is idle that long. EventSource clients ignore
/// comments.
/// </summary>
public sealed class ProgressEventStream(IAsyncEnumerable<SseItem<JobProgressEvent>?> items) : IResult
{
    public async Task ExecuteAsync(HttpContext http)
    {
        var response = http.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache,no-store";
        http.Features.GetRequiredFeature<IHttpResponseBodyFeature>().DisableBuffering();
        var json = http.RequestServices.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions;
        try
        {
            await foreach (var item in items.WithCancellation(http.RequestAborted))
            {
                // The data is one line of JSON (never indented), so one data: field carries it.
                var text = item is { } e
                    ? $"event: {e.EventType}\nid: {e.EventId}\ndata: {JsonSerializer.Serialize(e.Data, json)}\n\n"
                    : ": keep-alive\n\n";
                await response.WriteAsync(text, http.RequestAborted);
                await response.Body.FlushAsync(http.RequestAborted);
            }
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away: nothing to answer.
        }
    }
}
