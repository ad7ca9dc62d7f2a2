using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Logging;

/// <summary>The engine's ILogger over a host's <see cref="IEngineLogSink"/>: each line formatted, then handed on.</summary>
internal sealed class SinkLogger(IEngineLogSink sink) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (logLevel == LogLevel.None)
        {
            return;
        }

        ArgumentNullException.ThrowIfNull(formatter);
        sink.Write(ToEngineLevel(logLevel), formatter(state, exception));
    }

    internal static ILogger From(IEngineLogSink sink)
    {
        ArgumentNullException.ThrowIfNull(sink);
        return new SinkLogger(sink);
    }

    private static EngineLogLevel ToEngineLevel(LogLevel level) => level switch
    {
        LogLevel.Trace => EngineLogLevel.Trace,
        LogLevel.Debug => EngineLogLevel.Debug,
        LogLevel.Information => EngineLogLevel.Information,
        LogLevel.Warning => EngineLogLevel.Warning,
        LogLevel.Error => EngineLogLevel.Error,
        _ => EngineLogLevel.Critical,
    };
}
