using Hangfire.Logging;
using Microsoft.Extensions.Logging;
using HangfireLevel = Hangfire.Logging.LogLevel;
using MicrosoftLevel = Microsoft.Extensions.Logging.LogLevel;

namespace SurgeryService.Infrastructure.Hosting;

/// <summary>
/// Hangfire's log provider writing to the host's <see cref="ILoggerFactory"/>. Hangfire keeps its provider in a static,
/// so it can outlive the host that set it (several hosts in one process, as in the service tests); a provider whose
/// factory is gone then stays silent instead of failing Hangfire's type initialisers.
/// </summary>
internal sealed class HangfireLogging(ILoggerFactory factory) : ILogProvider
{
    public ILog GetLogger(string name)
    {
        try
        {
            return new HostLog(factory.CreateLogger(name));
        }
        catch (ObjectDisposedException)
        {
            return new HostLog(null);
        }
    }

    private sealed class HostLog(ILogger? logger) : ILog
    {
        public bool Log(HangfireLevel logLevel, Func<string>? messageFunc, Exception? exception = null)
        {
            if (logger is null) return false;
            var level = logLevel switch
            {
                HangfireLevel.Trace => MicrosoftLevel.Trace,
                HangfireLevel.Debug => MicrosoftLevel.Debug,
                HangfireLevel.Info => MicrosoftLevel.Information,
                HangfireLevel.Warn => MicrosoftLevel.Warning,
                HangfireLevel.Error => MicrosoftLevel.Error,
                _ => MicrosoftLevel.Critical,
            };
            if (messageFunc is null) return logger.IsEnabled(level);
            logger.Log(level, 0, messageFunc(), exception, static (message, _) => message);
            return true;
        }
    }
}
