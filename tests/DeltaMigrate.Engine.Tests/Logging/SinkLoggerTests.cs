using System.Collections.Concurrent;
using DeltaMigrate.Engine.Logging;
using Microsoft.Extensions.Logging;

namespace DeltaMigrate.Engine.Tests.Logging;

public sealed class SinkLoggerTests
{
    private sealed class RecordingSink : IEngineLogSink
    {
        public ConcurrentQueue<(EngineLogLevel Level, string Message)> Lines { get; } = new();

        public void Write(EngineLogLevel level, string message) => Lines.Enqueue((level, message));
    }

    [Theory]
    [InlineData(LogLevel.Trace, EngineLogLevel.Trace)]
    [InlineData(LogLevel.Debug, EngineLogLevel.Debug)]
    [InlineData(LogLevel.Information, EngineLogLevel.Information)]
    [InlineData(LogLevel.Warning, EngineLogLevel.Warning)]
    [InlineData(LogLevel.Error, EngineLogLevel.Error)]
    [InlineData(LogLevel.Critical, EngineLogLevel.Critical)]
    public void Hands_each_line_on_formatted_with_its_level(LogLevel level, EngineLogLevel expected)
    {
        var sink = new RecordingSink();
        var logger = SinkLogger.From(sink);

        logger.Log(level, "Migrating {VM} at {Rate} MB/s", "web1", 12);

        var line = Assert.Single(sink.Lines);
        Assert.Equal(expected, line.Level);
        Assert.Equal("Migrating web1 at 12 MB/s", line.Message);
    }

    [Fact]
    public void Drops_level_none_and_refuses_no_sink()
    {
        var sink = new RecordingSink();
        var logger = SinkLogger.From(sink);

        Assert.False(logger.IsEnabled(LogLevel.None));
        logger.Log(LogLevel.None, "never");

        Assert.Empty(sink.Lines);
        Assert.Throws<ArgumentNullException>(() => SinkLogger.From(null!));
    }
}
