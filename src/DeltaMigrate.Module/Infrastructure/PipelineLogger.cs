using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>
/// The engine's ILogger as PowerShell streams: Information → Verbose, Debug/Trace → Debug,
/// Warning and above → Warning (failures themselves arrive as exceptions, then errors).
/// </summary>
internal sealed class PipelineLogger(EngineCmdlet cmdlet) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        var message = formatter(state, exception);
        cmdlet.Post(() =>
        {
            switch (logLevel)
            {
                case LogLevel.Trace or LogLevel.Debug:
                    cmdlet.WriteDebug(message);
                    break;
                case LogLevel.Information:
                    cmdlet.WriteVerbose(message);
                    break;
                default:
                    cmdlet.WriteWarning(message);
                    break;
            }
        });
    }
}
