namespace DeltaMigrate.Engine.Logging;

/// <summary>
/// How much a line from <see cref="IEngineLogSink"/> matters. The engine's own enum, so a host (the
/// cmdlets) can take the engine's log without binding to Microsoft.Extensions.Logging, which lives in
/// the module's isolated load context.
/// </summary>
public enum EngineLogLevel
{
    Trace,
    Debug,
    Information,
    Warning,
    Error,
    Critical,
}
