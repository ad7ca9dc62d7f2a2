namespace DeltaMigrate.Engine.Migration;

/// <summary>The receiving host's view of a finished migration.</summary>
public sealed record ReceiveResult
{
    public required string VMName { get; init; }
    public required MigrationStatus Status { get; init; }
    public required string DestinationState { get; init; }
    public required TimeSpan TotalTime { get; init; }
    public long StreamBytes { get; init; }
    public long WireBytes { get; init; }

    /// <summary>The sender's id for this migration (its result carries the same).</summary>
    public Guid MigrationId { get; init; }

    /// <summary>UTC: when the sender was accepted, and when the migration ended here.</summary>
    public DateTimeOffset StartTime { get; init; }
    public DateTimeOffset EndTime { get; init; }
}
