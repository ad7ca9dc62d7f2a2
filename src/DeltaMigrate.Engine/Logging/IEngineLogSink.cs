namespace DeltaMigrate.Engine.Logging;

/// <summary>
/// Where a host receives the engine's log lines, already formatted. Entry points that take one
/// build the engine's ILogger from it, so the host never names a logging type itself. Called from
/// any thread.
/// </summary>
public interface IEngineLogSink
{
    void Write(EngineLogLevel level, string message);
}
