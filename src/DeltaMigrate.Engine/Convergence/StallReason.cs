namespace DeltaMigrate.Engine.Convergence;

/// <summary>Why <see cref="StallDetector"/> holds that pre-copy will not converge on its own.</summary>
public enum StallReason
{
    /// <summary>Not stalled.</summary>
    None,

    /// <summary>The bytes left have not shrunk by the required fraction for several rounds.</summary>
    NotShrinking,

    /// <summary>The guest dirties memory at least as fast as the link drains it: the rest can never fit the downtime limit.</summary>
    LimitUnreachable,
}
