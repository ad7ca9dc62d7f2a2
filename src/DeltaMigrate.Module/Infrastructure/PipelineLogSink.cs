using DeltaMigrate.Engine.Logging;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>
/// The engine's log as PowerShell streams: Information → Verbose, Debug/Trace → Debug, Warning and
/// above → Warning (failures themselves arrive as exceptions, then errors). An engine sink rather
/// than an ILogger, so this assembly, in PowerShell's load context, never binds to
/// Microsoft.Extensions.Logging (the engine's copy lives in the module's own context).
/// </summary>
internal sealed class PipelineLogSink(EngineCmdlet cmdlet) : IEngineLogSink
{
    public void Write(EngineLogLevel level, string message) => cmdlet.Post(() =>
    {
        switch (level)
        {
            case EngineLogLevel.Trace or EngineLogLevel.Debug:
                cmdlet.WriteDebug(message);
                break;
            case EngineLogLevel.Information:
                cmdlet.WriteVerbose(message);
                break;
            default:
                cmdlet.WriteWarning(message);
                break;
        }
    });
}
