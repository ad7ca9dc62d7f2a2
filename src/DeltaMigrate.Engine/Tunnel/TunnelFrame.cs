using DeltaMigrate.Engine.Transport;

namespace DeltaMigrate.Engine.Tunnel;

/// <summary>The tunnel's control frames, as the migration layer names them.</summary>
public enum TunnelFrame : byte
{
    End = FrameType.End,
    Loaded = FrameType.Loaded,
    Prepare = FrameType.Prepare,
    Prepared = FrameType.Prepared,
    Commit = FrameType.Commit,
    Running = FrameType.Running,
}
